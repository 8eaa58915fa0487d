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
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// FileMode is the mode of a saved snapshot: it holds every secret the
// cluster stores.
const FileMode = 0o600

// minIdle is the least time a snapshot stream may go without data before
// it is abandoned; a large database takes a while to start streaming.
const minIdle = 30 * time.Second

// inputErr is bad input: the flag or argument, its value and what is
// wrong. Nothing has been written when it is returned.
func inputErr(what, value, format string, args ...any) error {
	return badinput.New(what, value, format, args...)
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
	// ChooseBy, when set, is when the members must have answered: a member
	// silent by then is passed over. The transfer that follows is bounded
	// by ctx and by its own inactivity limit, not by ChooseBy.
	ChooseBy time.Time
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
		return inputErr("snapshot file", path, "folder %s: %w", dir, safefile.Reason(err))
	}
	if !fi.IsDir() {
		return inputErr("snapshot file", path, "%s is not a folder", dir)
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return inputErr("snapshot file", path, "exists and is not a regular file")
	}
	return nil
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
	for _, c := range all[1:] {
		if !c.answered() {
			notes = append(notes, fmt.Sprintf("passed over %s: %s", c.Endpoint, c.Error))
		}
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
// matches the data and bbolt's consistency check has passed on every page
// of the temp file, so a broken or damaged transfer leaves o.Path as it
// was and no temp file behind. The digest is computed as the data arrives
// and the structural check reads the pages the stream just wrote, from the
// page cache, while they are synced to disk.
func Save(ctx context.Context, o SaveOptions) (*SaveResult, error) {
	if o.Target == nil {
		return nil, errors.New("save snapshot: no cluster")
	}
	if err := CheckPath(o.Path); err != nil {
		return nil, err
	}
	cctx := ctx
	if !o.ChooseBy.IsZero() {
		var cancel context.CancelFunc
		cctx, cancel = context.WithDeadline(ctx, o.ChooseBy)
		defer cancel()
	}
	src, all, notes, err := Choose(cctx, o.Target, o.Endpoint)
	if err != nil {
		return nil, err
	}
	res := &SaveResult{Source: src, Candidates: all, Notes: notes}

	cli, err := streamClient(o.Target, src.Endpoint)
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
	// The stream itself rather than clientv3's Snapshot, which passes the
	// data through a pipe, one copy and two goroutine switches a message.
	stream, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, streamErr(ctx, err))
	}
	total := int64(0)
	if src.DBSize > 0 {
		total = src.DBSize + trailerSize
	}
	sr := &streamReader{
		next: func() ([]byte, error) {
			resp, err := stream.Recv()
			if err != nil {
				return nil, err
			}
			if res.EtcdStorageVersion == "" {
				res.EtcdStorageVersion = resp.Version
			}
			return resp.Blob, nil
		},
		abort:    func() { cancel(errAborted) },
		check:    newTrailerCheck(),
		progress: o.Progress,
		total:    total,
		last:     &last,
	}
	var st etcdutl.Status
	if err := atomicfile.WriteFileFromChecked(o.Path, sr, FileMode, structure(&st)); err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, errAborted) {
			return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, context.Cause(ctx))
		}
		var ie *IntegrityError
		if errors.As(err, &ie) {
			return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, ie.Err)
		}
		return nil, fmt.Errorf("snapshot from %s: %w", src.Endpoint, oneLine(err))
	}
	res.Took = time.Since(start)
	res.Info = Info{Path: o.Path, Size: sr.check.n, SHA256: sr.check.fileSum()}
	res.setStatus(st)
	return res, nil
}

// structure is bbolt's check of every page of a streamed file, which
// comes only after its digest matched, and the walk that fills st.
func structure(st *etcdutl.Status) func(tmp string) error {
	return func(tmp string) error {
		var err error
		if *st, err = dbStatus(tmp, nil); err != nil {
			return &IntegrityError{Path: "stream", Err: err}
		}
		return nil
	}
}

// streamClient is a client for one snapshot stream. gRPC joins each of
// etcd's 32 KiB snapshot messages, which arrive in several frames, into a
// buffer from its default pool, whose next size is 1 MiB and which clears
// the whole buffer first: a third of the CPU a save took went to clearing
// 30 times the data. A pool with a tier just above the message size, for
// the frames and for joining them, spares that.
func streamClient(t *etcdops.Target, ep string) (*clientv3.Client, error) {
	pool := mem.NewTieredBufferPool(256, 4<<10, 16<<10, 32<<10, 64<<10, 1<<20)
	cfg := t.Config(ep)
	cfg.DialOptions = append(cfg.DialOptions,
		experimental.WithBufferPool(pool),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(pooledCodec{CodecV2: encoding.GetCodecV2(gproto.Name), pool: pool})))
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", ep, err)
	}
	return cli, nil
}

// pooledCodec is gRPC's proto codec joining a message's buffers from pool.
type pooledCodec struct {
	encoding.CodecV2
	pool mem.BufferPool
}

func (c pooledCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if len(data) > 1 {
		buf := data.MaterializeToBuffer(c.pool)
		defer buf.Free()
		// One buffer is used as it is.
		data = mem.BufferSlice{buf}
	}
	return c.CodecV2.Unmarshal(data, v)
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

// errAborted cancels a stream whose data is no longer wanted.
var errAborted = errors.New("snapshot stream abandoned")

// streamReader passes the snapshot stream through, hashing it, reporting
// progress, and, at its end, checking the digest: a mismatch is returned
// in place of io.EOF, so the file is never put in place.
type streamReader struct {
	// next returns the stream's next piece, io.EOF at its end.
	next func() ([]byte, error)
	// abort, when set, makes a pending next return.
	abort    func()
	check    *trailerCheck
	progress func(done, total int64)
	total    int64
	last     *atomic.Int64
	received int64
	pending  []byte
}

// readerStream reads r in pieces of the size etcd sends.
func readerStream(r io.Reader) func() ([]byte, error) {
	var failed error
	return func() ([]byte, error) {
		buf := make([]byte, 32<<10)
		for failed == nil {
			n, err := r.Read(buf)
			failed = err
			if n > 0 {
				return buf[:n], nil
			}
		}
		return nil, failed
	}
}

func (s *streamReader) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		data, err := s.receive()
		if errors.Is(err, io.EOF) {
			return 0, s.end()
		}
		if err != nil {
			return 0, err
		}
		s.check.Write(data)
		s.pending = data
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// receive takes the next piece of the stream and reports it.
func (s *streamReader) receive() ([]byte, error) {
	data, err := s.next()
	if len(data) > 0 {
		s.last.Store(time.Now().UnixNano())
		s.received += int64(len(data))
		if s.progress != nil {
			s.progress(s.received, s.total)
		}
	}
	return data, err
}

// end is io.EOF when the data ends in its digest.
func (s *streamReader) end() error {
	if err := s.check.check(); err != nil {
		return &IntegrityError{Path: "stream", Err: err}
	}
	return io.EOF
}

// writebackSize is how much is written before it is sent to disk.
const writebackSize = 8 << 20

// writeback starts writing a range of w to disk, when w is a file, without
// waiting: the sync before the rename then finds little left to write,
// where it took up to half a second for a 170 MB snapshot.
func writeback(w io.Writer) func(off, n int64) {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return func(int64, int64) {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func(int64, int64) {}
	}
	return func(off, n int64) {
		// Only a hint: the sync before the rename is what counts.
		_ = raw.Control(func(fd uintptr) {
			_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
		})
	}
}

// piece is one message of the stream on its way to the file.
type piece struct {
	data []byte
	err  error
}

// WriteTo is what io.Copy uses: one goroutine receives the stream while
// this one hashes and writes what came before, so the two overlap.
func (s *streamReader) WriteTo(w io.Writer) (int64, error) {
	// About a megabyte of 32 KiB messages in flight.
	pieces := make(chan piece, 32)
	stop := make(chan struct{})
	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			data, err := s.receive()
			select {
			case pieces <- piece{data, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// The receiver must be gone before the caller carries on, so that no
	// progress is reported after: a pending receive is aborted.
	defer func() {
		close(stop)
		select {
		case <-received:
		default:
			if s.abort != nil {
				s.abort()
			}
			<-received
		}
	}()
	var written, flushed int64
	startWriteback := writeback(w)
	for p := range pieces {
		if len(p.data) > 0 {
			s.check.Write(p.data)
			n, err := w.Write(p.data)
			written += int64(n)
			if err != nil {
				return written, err
			}
			if written-flushed >= writebackSize {
				startWriteback(flushed, written-flushed)
				flushed = written
			}
		}
		switch {
		case errors.Is(p.err, io.EOF):
			if err := s.end(); !errors.Is(err, io.EOF) {
				return written, err
			}
			return written, nil
		case p.err != nil:
			return written, p.err
		}
	}
	return written, nil
}
