package etcdops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
// filesystem. The read of the revision and the compaction are each
// bounded by the target's timeout.
func Compact(ctx context.Context, t *Target, keep int64) (CompactResult, error) {
	var res CompactResult
	if keep < 0 {
		return res, &InputError{What: "--keep-revisions", Value: fmt.Sprint(keep), Err: errors.New("must not be negative")}
	}
	cli, err := t.Client()
	if err != nil {
		return res, err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	// Any key will do: the header carries the store's revision.
	resp, err := cli.Get(rctx, "compact", clientv3.WithCountOnly())
	if err != nil {
		return res, fmt.Errorf("read the current revision from %s: %w", strings.Join(t.Endpoints, ","), cleanError(err, t.Timeout))
	}
	res.Revision = resp.Header.Revision
	target := res.Revision - keep
	if target <= 0 {
		return res, nil
	}
	res.CompactedTo = target
	cctx, ccancel := context.WithTimeout(ctx, t.Timeout)
	defer ccancel()
	start := time.Now()
	_, err = cli.Compact(cctx, target, clientv3.WithCompactPhysical())
	res.Took = time.Since(start)
	if isEtcdError(err, rpctypes.ErrGRPCCompacted) {
		res.Already = true
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("compact to revision %d: %w", target, cleanError(err, t.Timeout))
	}
	return res, nil
}
