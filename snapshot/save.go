// Package snapshot saves a point-in-time copy of a running cluster's data
// to a file and restores such a file as the data folders of a new cluster
// of the same hosts, one per member.
package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

// FileMode is the mode of a saved snapshot: it holds every secret the
// cluster stores.
const FileMode = 0o600

// minIdle is the least time a snapshot stream may go without data before
// it is abandoned; a large database takes a while to start streaming.
const minIdle = 30 * time.Second

// InputError is bad input: a flag or argument, its value and what is
// wrong. Nothing has been written when it is returned.
type InputError struct {
	// What names the input, such as "--endpoint" or "snapshot file".
	What  string
	Value string
	Err   error
}

func (e *InputError) Error() string { return fmt.Sprintf("%s %q: %v", e.What, e.Value, e.Err) }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(what, value, format string, args ...any) error {
	return &InputError{What: what, Value: value, Err: fmt.Errorf(format, args...)}
}

// Candidate is one endpoint considered as the snapshot's source.
type Candidate struct {
	Endpoint string `json:"endpoint"`
	// Name is the member's name from the member list, when known.
	Name         string `json:"name"`
	MemberID     uint64 `json:"-"`
	Healthy      bool   `json:"healthy"`
	IsLeader     bool   `json:"isLeader"`
	AppliedIndex uint64 `json:"raftAppliedIndex"`
	// DBSize is the member's database size, which the snapshot will have.
	DBSize  int64  `json:"dbSize"`
	Version string `json:"version"`
	// Error says why the endpoint is unhealthy or gave no status.
	Error string `json:"error,omitempty"`
	// gaveStatus is whether the endpoint answered the status request.
	gaveStatus bool
}

// answered reports whether the endpoint gave its status.
func (c Candidate) answered() bool { return c.gaveStatus }

// SaveOptions say where the snapshot comes from and goes to.
type SaveOptions struct {
	// Target is the resolved cluster.
	Target *etcdops.Target
	// Endpoint, when set, is the one endpoint to save from; it must be one
	// of the target's endpoints. Otherwise the healthiest is chosen.
	Endpoint string
	// Path is the file to write; it is replaced atomically.
	Path string
	// Progress, when set, is called as data arrives with the bytes so far
	// and the expected total (0 when unknown).
	Progress func(done, total int64)
}

// SaveResult is a saved and verified snapshot.
type SaveResult struct {
	Info
	// Source is the endpoint the snapshot came from.
	Source Candidate
	// Candidates are every endpoint considered, best first.
	Candidates []Candidate
	// EtcdStorageVersion is the storage version the server reported with
	// the stream (empty before etcd v3.6).
	EtcdStorageVersion string
	// Took is the time the transfer took.
	Took time.Duration
	// Notes are things worth telling the user, such as a fallback taken.
	Notes []string
}

// CheckPath rejects a snapshot path whose folder is missing or that names
// something other than a file, before any data is fetched.
func CheckPath(path string) error {
	if strings.TrimSpace(path) == "" {
		return inputErr("snapshot file", path, "must not be empty")
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return inputErr("snapshot file", path, "folder %s: %w", dir, unwrapPath(err))
	}
	if !fi.IsDir() {
		return inputErr("snapshot file", path, "%s is not a folder", dir)
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return inputErr("snapshot file", path, "exists and is not a regular file")
	}
	return nil
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Choose picks the endpoint to save from. A named endpoint is used as it
// is (a note says when it is unhealthy: saving from a member that lost its
// quorum is how a cluster beyond repair is rescued). Otherwise every
// endpoint is asked at once for its health and status, and the first of
// these orders wins: healthy, then the highest raft applied index (the
// most recent data), then a follower, which spares the leader the extra
// disk and network load, then the endpoints' order.
func Choose(ctx context.Context, t *etcdops.Target, endpoint string) (best Candidate, all []Candidate, notes []string, err error) {
	endpoints := t.Endpoints
	if endpoint != "" {
		if !slices.Contains(t.Endpoints, endpoint) {
			return best, nil, nil, inputErr("--endpoint", endpoint, "not one of the cluster's client URLs: %s", strings.Join(t.Endpoints, ", "))
		}
		endpoints = []string{endpoint}
	}
	if len(endpoints) == 0 {
		return best, nil, nil, errors.New("no endpoint to save from")
	}
	names := map[uint64]string{}
	for _, m := range t.Members {
		names[m.ID] = m.Name
	}
	all = make([]Candidate, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() { all[i] = candidate(ctx, t, ep, names) })
	}
	wg.Wait()
	order := make(map[string]int, len(endpoints))
	for i, ep := range endpoints {
		order[ep] = i
	}
	slices.SortStableFunc(all, func(a, b Candidate) int {
		return cmp.Or(
			compareTrueFirst(a.answered(), b.answered()),
			compareTrueFirst(a.Healthy, b.Healthy),
			cmp.Compare(b.AppliedIndex, a.AppliedIndex),
			compareTrueFirst(!a.IsLeader, !b.IsLeader),
			cmp.Compare(order[a.Endpoint], order[b.Endpoint]),
		)
	})
	best = all[0]
	if !best.answered() {
		var errs []string
		for _, c := range all {
			errs = append(errs, c.Endpoint+": "+c.Error)
		}
		return best, all, nil, fmt.Errorf("no member gave its status: %s", strings.Join(errs, "; "))
	}
	switch {
	case best.Healthy:
	case endpoint != "":
		notes = append(notes, fmt.Sprintf("%s is not healthy (%s); saving from it as asked", endpoint, best.Error))
	default:
		notes = append(notes, fmt.Sprintf("no member is healthy; saving from %s, the member with the most recent data that answered (raft applied index %d): %s", best.Endpoint, best.AppliedIndex, best.Error))
	}
	return best, all, notes, nil
}

func compareTrueFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

func candidate(ctx context.Context, t *etcdops.Target, ep string, names map[uint64]string) Candidate {
	c := Candidate{Endpoint: ep}
	var h etcdops.EndpointHealth
	var s etcdops.EndpointStatus
	var wg sync.WaitGroup
	wg.Go(func() { h = etcdops.CheckHealth(ctx, t, ep) })
	wg.Go(func() { s = etcdops.EndpointStatusOf(ctx, t, ep) })
	wg.Wait()
	if s.Error != "" {
		c.Error = s.Error
		return c
	}
	c.gaveStatus = true
	c.Name = names[s.MemberID]
	c.MemberID, c.IsLeader, c.AppliedIndex = s.MemberID, s.IsLeader, s.RaftAppliedIndex
	c.DBSize, c.Version = s.DBSize, s.Version
	c.Healthy, c.Error = h.Healthy, h.Error
	return c
}

// Save streams a snapshot from the chosen endpoint into o.Path and
// verifies it. The file is written atomically with mode 0600: its temp
// file becomes o.Path only once the stream has ended with a digest that
// matches the data, so a broken or damaged transfer leaves o.Path as it was
// and no temp file behind. The file on disk is then read back and checked
// as a restore would check it.
func Save(ctx context.Context, o SaveOptions) (*SaveResult, error) {
	if o.Target == nil {
		return nil, errors.New("save snapshot: no cluster")
	}
	if err := CheckPath(o.Path); err != nil {
		return nil, err
	}
	src, all, notes, err := Choose(ctx, o.Target, o.Endpoint)
	if err != nil {
		return nil, err
	}
	res := &SaveResult{Source: src, Candidates: all, Notes: notes}

	cli, err := o.Target.Client(src.Endpoint)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := max(minIdle, o.Target.Timeout)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	go watchIdle(ctx, cancel, &last, idle, src.Endpoint)

	start := time.Now()
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, streamErr(ctx, err))
	}
	defer resp.Snapshot.Close()
	res.EtcdStorageVersion = resp.Version
	total := int64(0)
	if src.DBSize > 0 {
		total = src.DBSize + trailerSize
	}
	sr := &streamReader{r: resp.Snapshot, check: newTrailerCheck(), progress: o.Progress, total: total, last: &last}
	if err := certs.WriteFileFrom(o.Path, sr, FileMode); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, context.Cause(ctx))
		}
		var ie *IntegrityError
		if errors.As(err, &ie) {
			return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, ie.Err)
		}
		return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, oneLine(err))
	}
	res.Took = time.Since(start)

	info, err := Verify(o.Path)
	if err != nil {
		return nil, err
	}
	if want := sr.check.fileSum(); info.SHA256 != want {
		return nil, &IntegrityError{Path: o.Path, Err: fmt.Errorf("the file reads back with SHA-256 %s, but %s was written: the disk changed it", info.SHA256, want)}
	}
	res.Info = *info
	return res, nil
}

// watchIdle cancels a stream that delivers nothing for idle.
func watchIdle(ctx context.Context, cancel context.CancelCauseFunc, last *atomic.Int64, idle time.Duration, ep string) {
	tick := time.NewTicker(min(idle/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) > idle {
				cancel(fmt.Errorf("%s sent no data for %s", ep, idle))
				return
			}
		}
	}
}

// streamErr prefers the reason a stream was cancelled over the bare
// "context canceled".
func streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return oneLine(err)
}

// oneLine turns a gRPC status into its message and keeps any error on
// one line.
func oneLine(err error) error {
	if s, ok := status.FromError(err); ok && s.Message() != "" {
		return errors.New(strings.Join(strings.Fields(s.Message()), " "))
	}
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n") {
		return err
	}
	return errors.New(strings.Join(strings.Fields(msg), " "))
}

// streamReader passes the snapshot stream through, hashing it, reporting
// progress, and, at its end, checking the digest: a mismatch is returned
// in place of io.EOF, so the file is never put in place.
type streamReader struct {
	r        io.Reader
	check    *trailerCheck
	progress func(done, total int64)
	total    int64
	last     *atomic.Int64
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.last.Store(time.Now().UnixNano())
		s.check.Write(p[:n])
		if s.progress != nil {
			s.progress(s.check.n, s.total)
		}
	}
	if errors.Is(err, io.EOF) {
		if cerr := s.check.check(); cerr != nil {
			return n, &IntegrityError{Path: "stream", Err: cerr}
		}
		return n, io.EOF
	}
	return n, err
}
