package harness

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Writer is a client workload for day-2 operations: it puts sequential
// keys without pause for long, each with a short deadline, retrying a
// failed put with the same key and value, and reads every acknowledged
// key back with a linearizable read. It records every request, so that a
// test can tell whether an operation lost an acknowledged write and how
// long the cluster stopped serving.
type Writer struct {
	cli    *clientv3.Client
	prefix string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	ops     []writerOp
	acked   map[string]string
	stopped time.Time
	report  *Report
}

// writerOp is one request and how it ended.
type writerOp struct {
	read       bool
	start, end time.Time
	err        error
	// stale is a read that did not return the acknowledged value.
	stale string
}

// Request deadlines and pauses of the writer: short enough that an
// outage shows as failures within a second or two, and a pace that
// leaves the CPU to the cluster under the race detector.
const (
	writerTimeout    = 2 * time.Second
	writerPause      = 10 * time.Millisecond
	writerRetryPause = 100 * time.Millisecond
)

// Report sums up a writer's run.
type Report struct {
	// Acked counts acknowledged puts, Reads successful linearizable reads.
	Acked, Reads int
	// Failed counts failed requests, puts and reads.
	Failed int
	// LongestOutage is the longest time from the start of a failed request
	// to the end of the next successful one; an outage still open at Stop
	// counts until Stop. LongestOutageFrom is when it began.
	LongestOutage     time.Duration
	LongestOutageFrom time.Time
	// Outages counts runs of failed requests.
	Outages int
	// Open is set when the last requests before Stop failed.
	Open bool
	// Stale lists reads that returned something other than the value an
	// acknowledged put wrote: a lost or reordered write.
	Stale []string
	// Errors are the first distinct request errors.
	Errors []string
	// Duration is the writer's running time.
	Duration time.Duration
}

func (r Report) String() string {
	s := fmt.Sprintf("%d acknowledged puts, %d linearizable reads, %d failed requests in %d outages over %s; longest outage %s",
		r.Acked, r.Reads, r.Failed, r.Outages, r.Duration.Round(time.Millisecond), r.LongestOutage.Round(time.Millisecond))
	if r.Open {
		s += " (still open at stop)"
	}
	if len(r.Stale) > 0 {
		s += fmt.Sprintf("; %d stale reads", len(r.Stale))
	}
	if len(r.Errors) > 0 {
		s += "; errors: " + strings.Join(r.Errors, "; ")
	}
	return s
}

// StartWriter starts writing keys under prefix (prefix/00000001, ...)
// until ctx ends or Stop is called.
func StartWriter(ctx context.Context, cli *clientv3.Client, prefix string) *Writer {
	ctx, cancel := context.WithCancel(ctx)
	w := &Writer{cli: cli, prefix: strings.TrimSuffix(prefix, "/"), cancel: cancel, done: make(chan struct{}), acked: map[string]string{}}
	go w.run(ctx)
	return w
}

func (w *Writer) run(ctx context.Context) {
	defer close(w.done)
	seq := 1
	for ctx.Err() == nil {
		key, value := fmt.Sprintf("%s/%08d", w.prefix, seq), fmt.Sprintf("%d written at %s", seq, time.Now().Format(time.RFC3339Nano))
		op := writerOp{start: time.Now()}
		attempt, cancel := context.WithTimeout(ctx, writerTimeout)
		_, op.err = w.cli.Put(attempt, key, value)
		cancel()
		op.end = time.Now()
		if ctx.Err() != nil {
			return // cut short by Stop: neither failed nor acknowledged
		}
		w.record(op, key, value)
		if op.err != nil {
			// The same key and value again: a put that timed out may still
			// land, and landing twice changes nothing.
			pause(ctx, writerRetryPause)
			continue
		}
		seq++

		op = writerOp{read: true, start: time.Now()}
		attempt, cancel = context.WithTimeout(ctx, writerTimeout)
		resp, err := w.cli.Get(attempt, key)
		cancel()
		op.end, op.err = time.Now(), err
		if ctx.Err() != nil {
			return
		}
		if err == nil && (len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != value) {
			op.stale = fmt.Sprintf("%s: read %v, want the acknowledged %q", key, resp.Kvs, value)
		}
		w.record(op, "", "")
		pause(ctx, writerPause)
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (w *Writer) record(op writerOp, key, value string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops = append(w.ops, op)
	if !op.read && op.err == nil {
		w.acked[key] = value
	}
}

// Stop ends the writer and sums up its run; later calls return the same.
func (w *Writer) Stop() Report {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.report == nil {
		w.stopped = time.Now()
		r := summarize(w.ops, w.stopped)
		w.report = &r
	}
	return *w.report
}

// maxErrors bounds Report.Errors.
const maxErrors = 5

// summarize computes the report of ops, ordered as they ran (the writer
// makes one request at a time), for a writer stopped at stop.
func summarize(ops []writerOp, stop time.Time) Report {
	var r Report
	if len(ops) == 0 {
		return r
	}
	r.Duration = stop.Sub(ops[0].start)
	var failedFrom time.Time
	outage := func(from, to time.Time) {
		r.Outages++
		if d := to.Sub(from); d > r.LongestOutage {
			r.LongestOutage, r.LongestOutageFrom = d, from
		}
	}
	seen := map[string]bool{}
	for _, op := range ops {
		if op.err != nil {
			r.Failed++
			if failedFrom.IsZero() {
				failedFrom = op.start
			}
			if msg := op.err.Error(); !seen[msg] && len(r.Errors) < maxErrors {
				seen[msg] = true
				r.Errors = append(r.Errors, msg)
			}
			continue
		}
		switch {
		case op.read && op.stale != "":
			r.Stale = append(r.Stale, op.stale)
		case op.read:
			r.Reads++
		default:
			r.Acked++
		}
		if !failedFrom.IsZero() {
			outage(failedFrom, op.end)
			failedFrom = time.Time{}
		}
	}
	if !failedFrom.IsZero() {
		outage(failedFrom, stop)
		r.Open = true
	}
	return r
}

// verifyPage is how many keys one read of Verify returns.
const verifyPage = 1000

// Verify reads every key under the writer's prefix and checks that each
// acknowledged put is there with its value. Call it after Stop.
func (w *Writer) Verify(ctx context.Context, cli *clientv3.Client) error {
	w.mu.Lock()
	want := maps.Clone(w.acked)
	w.mu.Unlock()

	got := map[string]string{}
	end := clientv3.GetPrefixRangeEnd(w.prefix + "/")
	from := w.prefix + "/"
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(verifyPage), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return fmt.Errorf("read back %s/: %w", w.prefix, err)
		}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	var lost []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			lost = append(lost, k+" is missing")
		} else if g != v {
			lost = append(lost, fmt.Sprintf("%s holds %q, want %q", k, g, v))
		}
	}
	if n := len(lost); n > 0 {
		slices.Sort(lost)
		if n > maxErrors {
			lost = append(lost[:maxErrors], "...")
		}
		return fmt.Errorf("%d of %d acknowledged writes lost: %s", n, len(want), strings.Join(lost, "; "))
	}
	return nil
}

// AckedKeys counts the acknowledged puts so far.
func (w *Writer) AckedKeys() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}
