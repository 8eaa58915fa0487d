package etcdops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// CompactResult is what Compact did.
type CompactResult struct {
	// Revision is the cluster's current revision when it was read.
	Revision int64
	// CompactedTo is the revision compacted to: every older version of a
	// key is gone. 0 when there was nothing to compact.
	CompactedTo int64
	// Already is set when etcd had compacted to CompactedTo or beyond
	// before: nothing changed.
	Already bool
	Took    time.Duration
}

// Compact drops the history of every key older than keep revisions behind
// the current one (keep 0: all history; the current value of every key
// stays). It waits until the compaction is physically applied, so that a
// defragmentation right after it gives the freed pages back to the
// filesystem. The read of the revision and the compaction together are
// bounded by the target's timeout.
func Compact(ctx context.Context, t *Target, keep int64) (CompactResult, error) {
	var res CompactResult
	if keep < 0 {
		return res, &badinput.Error{What: "--keep-revisions", Value: fmt.Sprint(keep), Err: errors.New("must not be negative")}
	}
	// Every member is asked for the revision at once, and the compaction
	// goes through the first to answer: a silent member costs nothing.
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	type answer struct {
		endpoint string
		cli      *clientv3.Client
		resp     *clientv3.GetResponse
		err      error
	}
	answers := make(chan answer, len(t.Endpoints))
	for _, ep := range t.Endpoints {
		go func() {
			cli, err := t.Client(ep)
			if err != nil {
				answers <- answer{endpoint: ep, err: err}
				return
			}
			ex := t.explainer(ctx, ep)
			defer ex.stop()
			// Any key will do: the header carries the store's revision.
			resp, err := cli.Get(ctx, "compact", clientv3.WithCountOnly())
			if err != nil {
				cli.Close()
				answers <- answer{endpoint: ep, err: fmt.Errorf("%s: %w", ep, ex.explain(err))}
				return
			}
			answers <- answer{endpoint: ep, cli: cli, resp: resp}
		}()
	}
	var first *answer
	var errs []string
	for range t.Endpoints {
		a := <-answers
		switch {
		case a.err != nil:
			errs = append(errs, a.err.Error())
		case first == nil:
			first = &a
		default:
			a.cli.Close()
		}
		if first != nil {
			break
		}
	}
	if first == nil {
		return res, fmt.Errorf("read the current revision: %s", strings.Join(errs, "; "))
	}
	// The answers still to come close their own clients.
	go func(n int) {
		for range n {
			if a := <-answers; a.cli != nil {
				a.cli.Close()
			}
		}
	}(len(t.Endpoints) - len(errs) - 1)
	cli, resp := first.cli, first.resp
	defer cli.Close()
	res.Revision = resp.Header.Revision
	target := res.Revision - keep
	if target <= 0 {
		return res, nil
	}
	res.CompactedTo = target
	ex := t.explainer(ctx, first.endpoint)
	defer ex.stop()
	start := time.Now()
	_, err := cli.Compact(ctx, target, clientv3.WithCompactPhysical())
	res.Took = time.Since(start)
	if isEtcdError(err, rpctypes.ErrGRPCCompacted) {
		res.Already = true
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("compact to revision %d through %s: %w", target, first.endpoint, ex.explain(err))
	}
	return res, nil
}
