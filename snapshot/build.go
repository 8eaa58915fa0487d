package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/etcdserver/cindex"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// folder is one member's data folder while it is built: a temp folder
// beside where it goes, with the database copied in.
type folder struct {
	m   RestoredMember
	tmp string
	db  *os.File
	// created are the parent folders made for it, to remove on failure.
	created []string
	// committed is set once tmp has been renamed to m.Written.
	committed bool
}

func (f *folder) dbPath() string { return filepath.Join(f.tmp, "member", "snap", "db") }

// discard removes what was made for the folder.
func (f *folder) discard() {
	if f.db != nil {
		_ = f.db.Close()
	}
	if f.tmp != "" {
		_ = os.RemoveAll(f.tmp)
	}
	if f.committed {
		_ = os.RemoveAll(f.m.Written)
	}
	for _, d := range slices.Backward(f.created) {
		_ = os.Remove(d)
	}
}

// removeStaleRestores removes the temp folders a killed restore left
// beside the data folder (of any token): whole copies of the data. The
// caller holds the folder's lock, so no running restore owns them.
func removeStaleRestores(written string) {
	base, _, _ := strings.Cut(filepath.Base(written), layout.RestoreSuffix)
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(written), "."+base+layout.RestoreSuffix+"*.tmp-*"))
	for _, d := range stale {
		if atomicfile.IsTemp(filepath.Base(d)) {
			_ = os.RemoveAll(d)
		}
	}
}

func newFolder(m RestoredMember) (*folder, error) {
	f := &folder{m: m}
	var err error
	f.created, err = atomicfile.MkdirAll(filepath.Dir(m.Written), 0o755)
	if err == nil {
		removeStaleRestores(m.Written)
		f.tmp, err = atomicfile.TempDir(m.Written)
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(f.dbPath()), 0o700)
	}
	if err == nil {
		f.db, err = os.OpenFile(f.dbPath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		f.discard()
		return nil, fmt.Errorf("restore %s: %w", m.Name, err)
	}
	return f, nil
}

// restoreAll builds every member's data folder from the snapshot file in
// one read of it: the data is hashed as it is read and written to the
// members' databases, the digest must match, then bbolt's check of every
// page runs on the first copy (the same bytes) before anything else is
// done with them. The database is the same for every member (the
// membership it holds is the whole new cluster), so it is finished once,
// as etcdutl's restore finishes one, and the other members' databases are
// made equal to it: where the filesystem shares blocks between files, they
// are clones of it and only the first is written as the data arrives;
// elsewhere every copy is written as the data arrives, so that the disk is
// busy from the start, and only the pages the finishing changed are
// copied into the others. Each member gets its own WAL and raft snapshot,
// all at once, and its folder is put in place. Any failure, or the
// context's end at any point, removes everything this run wrote.
func restoreAll(o RestoreOptions, res *RestoreResult) error {
	bad := func(err error) error { return &badinput.Error{What: "snapshot file", Value: o.Snapshot, Err: err} }
	// A named pipe must not hang the open.
	src, fi, err := safefile.Open(o.Snapshot)
	var se *safefile.Error
	if errors.As(err, &se) {
		return bad(errors.New(se.Reason))
	}
	if err != nil {
		return bad(safefile.Reason(err))
	}
	defer src.Close()
	if !hasTrailer(fi.Size()) {
		return bad(fmt.Errorf("%d bytes: no SHA-256 digest at the end, so not a snapshot as etcd streams it (a copied member/snap/db file has none)", fi.Size()))
	}

	folders := make([]*folder, 0, len(res.Members))
	discard := func() {
		for _, f := range folders {
			f.discard()
		}
	}
	for _, m := range res.Members {
		f, err := newFolder(m)
		if err != nil {
			discard()
			return err
		}
		folders = append(folders, f)
	}
	ctx := o.Context
	first := folders[0]
	var tr *trailerCheck
	var flushed []*sync.WaitGroup
	// On the snapshot's own filesystem, where files can share blocks, the
	// first database is a clone of the snapshot file: read once, to hash
	// it, and not written at all.
	shared := unix.IoctlFileClone(int(first.db.Fd()), int(src.Fd())) == nil
	if shared {
		tr, err = hashClone(ctx, first.dbPath(), fi.Size())
		if err == nil {
			err = first.db.Truncate(fi.Size() - trailerSize)
		}
	} else {
		shared = len(folders) > 1 && canClone(folders[1].db, first.db)
		dsts := []*os.File{first.db}
		if !shared {
			dsts = dsts[:0]
			for _, f := range folders {
				dsts = append(dsts, f.db)
			}
		}
		tr, flushed, err = copyToAll(ctx, src, fi.Size(), dsts)
	}
	if err := interrupted(ctx); err != nil {
		discard()
		return err
	}
	if err != nil {
		discard()
		return fmt.Errorf("restore from %s: %w", o.Snapshot, err)
	}
	if err := tr.check(); err != nil {
		discard()
		return bad(err)
	}
	st, err := dbStatus(first.dbPath(), nil)
	if err != nil {
		discard()
		return bad(err)
	}
	res.Snapshot = Info{Path: o.Snapshot, Size: fi.Size(), SHA256: tr.fileSum()}
	res.Snapshot.setStatus(st)
	if o.RevisionBump > uint64(math.MaxInt64-res.Snapshot.Revision) {
		discard()
		return inputErr("--bump-revision", strconv.FormatUint(o.RevisionBump, 10), "added to the snapshot's revision %d it exceeds etcd's largest revision %d", res.Snapshot.Revision, int64(math.MaxInt64))
	}

	// The first copy is finished in place: its own handle is no longer
	// needed once its disk writes are under way.
	if flushed != nil {
		flushed[0].Wait()
	}
	err = first.db.Close()
	first.db = nil
	if err != nil {
		discard()
		return fmt.Errorf("restore %s: %w", first.m.Name, err)
	}

	if o.WriteDelay > 0 {
		t := time.NewTimer(o.WriteDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	err = interrupted(ctx)
	if err == nil {
		if err = buildDB(first.dbPath(), res.Token, res.InitialCluster, o.RevisionBump); err != nil {
			err = fmt.Errorf("restore %s into %s: %w", first.m.Name, first.m.Written, oneLine(err))
		}
	}
	// The others read the finished database through a handle of their
	// own, opened before the first member's folder is renamed.
	var built *os.File
	if err == nil {
		built, err = os.Open(first.dbPath())
	}
	if err == nil {
		defer built.Close()
	}
	var changed []span
	if err == nil && !shared && len(folders) > 1 {
		changed, err = changedPages(built, folders[1].dbPath())
	}
	if err != nil {
		discard()
		return err
	}

	// The members' steps wait on the disk more than on the processor: all
	// at once.
	errs := make([]error, len(folders))
	var wg sync.WaitGroup
	for i, f := range folders {
		var same func() error
		switch {
		case i == 0:
			same = func() error { return syncData(built) }
		case shared:
			same = func() error { return cloneInto(f.db, built) }
		default:
			same = func() error {
				flushed[i].Wait()
				return patch(f.db, built, changed)
			}
		}
		wg.Go(func() { errs[i] = finish(ctx, res, f, same) })
	}
	wg.Wait()
	// Called off at any point, even once every folder is in place: the
	// folders are new, so removing them leaves the host folders as they
	// were.
	err = interrupted(ctx)
	if err == nil {
		err = errors.Join(errs...)
	}
	if err != nil {
		discard()
		return err
	}
	return nil
}

// interrupted is the error of a restore called off, nil while it is not.
func interrupted(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	return fmt.Errorf("%w: the restore is called off; the folders it was writing are removed", context.Cause(ctx))
}

// copyToAll reads size bytes from src, hashing them, and writes all but
// the digest at their end to every file in dsts, each from a goroutine of
// its own. The disk writes are started as it goes by a goroutine per file
// that may wait on the disk without holding up the copy, and that goes on
// after copyToAll returns: the page checks and the finishing that follow
// run while the disk takes the data. The files are left open; wait for
// file i's flusher (flushed[i].Wait) before closing it.
func copyToAll(ctx context.Context, src io.Reader, size int64, dsts []*os.File) (tr *trailerCheck, flushed []*sync.WaitGroup, err error) {
	type part struct {
		data []byte
		done *sync.WaitGroup
	}
	const buffers = 4
	free := make(chan []byte, buffers)
	for range buffers {
		free <- make([]byte, chunkSize)
	}
	parts := make([]chan part, len(dsts))
	errs := make([]error, len(dsts))
	flushed = make([]*sync.WaitGroup, len(dsts))
	var writers sync.WaitGroup
	for i, d := range dsts {
		parts[i] = make(chan part, buffers)
		// Never full: a range for every writebackSize of the file.
		ranges := make(chan [2]int64, size/writebackSize+2)
		flushed[i] = &sync.WaitGroup{}
		startWriteback := writeback(d)
		flushed[i].Go(func() {
			for r := range ranges {
				startWriteback(r[0], r[1])
			}
		})
		writers.Go(func() {
			defer close(ranges)
			var written, queued int64
			for p := range parts[i] {
				if errs[i] == nil {
					n, err := d.Write(p.data)
					written += int64(n)
					errs[i] = err
					if written-queued >= writebackSize {
						ranges <- [2]int64{queued, written - queued}
						queued = written
					}
				}
				p.done.Done()
			}
			if written > queued {
				ranges <- [2]int64{queued, written - queued}
			}
		})
	}
	// The digest is computed in a goroutine of its own too, so that
	// reading waits for neither.
	tr = newTrailerCheck()
	hashed := make(chan part, buffers)
	var hasher sync.WaitGroup
	hasher.Go(func() {
		for p := range hashed {
			tr.Write(p.data)
			p.done.Done()
		}
	})
	dbLen := size - trailerSize
	var read int64
	var readErr error
	for {
		if err := interrupted(ctx); err != nil {
			readErr = err
			break
		}
		buf := <-free
		n, err := io.ReadFull(src, buf)
		done := &sync.WaitGroup{}
		done.Add(1)
		hashed <- part{buf[:n], done}
		// The members' databases end where the digest starts.
		if db := min(int64(n), max(0, dbLen-read)); db > 0 {
			done.Add(len(dsts))
			for _, c := range parts {
				c <- part{buf[:db], done}
			}
		}
		read += int64(n)
		go func() {
			done.Wait()
			free <- buf
		}()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	close(hashed)
	for _, c := range parts {
		close(c)
	}
	hasher.Wait()
	writers.Wait()
	if readErr != nil {
		return nil, flushed, fmt.Errorf("read: %w", readErr)
	}
	if tr.n != size {
		return nil, flushed, fmt.Errorf("the file changed while it was read: %d bytes, then %d", size, tr.n)
	}
	return tr, flushed, errors.Join(errs...)
}

// finish completes a member's folder: its database made the same as the
// finished one and synced by same (the folder that holds it: synced), the
// member's own WAL and raft snapshot; then the folder is made private and
// renamed into place.
func finish(ctx context.Context, res *RestoreResult, f *folder, same func() error) error {
	err := interrupted(ctx)
	if err == nil && same != nil {
		err = same()
		f.db = nil
	}
	if err == nil {
		err = memberFiles(f.tmp, f.m.Name, res.Token, res.InitialCluster)
	}
	if err == nil {
		// etcd wants its data folder private.
		err = os.Chmod(f.tmp, 0o700)
	}
	if err == nil {
		err = interrupted(ctx)
	}
	if err == nil {
		err = atomicfile.CommitDir(f.tmp, f.m.Written)
	}
	if err != nil {
		return fmt.Errorf("restore %s into %s: %w", f.m.Name, f.m.Written, oneLine(err))
	}
	f.tmp, f.committed = "", true
	return nil
}

// hashClone reads the clone of the snapshot file at path, size bytes,
// into the digest check.
func hashClone(ctx context.Context, path string, size int64) (*trailerCheck, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := newTrailerCheck()
	buf := make([]byte, chunkSize)
	for {
		if err := interrupted(ctx); err != nil {
			return nil, err
		}
		n, err := f.Read(buf)
		tr.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
	}
	if tr.n != size {
		return nil, fmt.Errorf("the file changed while it was read: %d bytes, then %d", size, tr.n)
	}
	return tr, nil
}

// syncData makes the finished database durable before its folder is put
// in place.
func syncData(f *os.File) error {
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("sync the database: %w", err)
	}
	return nil
}

// canClone reports whether the filesystem lets dst share src's blocks
// (FICLONE: Btrfs, XFS with reflink), tried on the two empty files.
func canClone(dst, src *os.File) bool {
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil
}

// cloneInto makes dst, an empty file, a clone of src sharing its blocks,
// syncs it and closes it: no data is written.
func cloneInto(dst, src *os.File) error {
	err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
	if err == nil {
		err = unix.Fdatasync(int(dst.Fd()))
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("clone the database: %w", err)
	}
	return nil
}

// span is a byte range of a file.
type span struct{ off, n int64 }

// pageSize is the unit compared: bbolt's page, the system's page size.
const pageSize = 4096

// changedPages lists the ranges, in whole pages, where the finished
// database built differs from the raw copy at raw, and past raw's end:
// what finishing changed. Both are mapped from the page cache, where they
// were just written, and compared in place on every core.
func changedPages(built *os.File, raw string) ([]span, error) {
	r, err := os.Open(raw)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	a, err := mapFile(built)
	if err != nil {
		return nil, fmt.Errorf("compare the databases: %w", err)
	}
	defer unmap(a)
	b, err := mapFile(r)
	if err != nil {
		return nil, fmt.Errorf("compare the databases: %w", err)
	}
	defer unmap(b)
	size := int64(len(a))
	pages := (size + pageSize - 1) / pageSize
	workers := int64(runtime.GOMAXPROCS(0))
	found := make([][]span, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for pg := pages * w / workers; pg < pages*(w+1)/workers; pg++ {
				p, q := pg*pageSize, min((pg+1)*pageSize, size)
				if q <= int64(len(b)) && bytes.Equal(a[p:q], b[p:q]) {
					continue
				}
				if k := len(found[w]) - 1; k >= 0 && found[w][k].off+found[w][k].n == p {
					found[w][k].n += q - p
				} else {
					found[w] = append(found[w], span{p, q - p})
				}
			}
		})
	}
	wg.Wait()
	var spans []span
	for _, f := range found {
		for _, s := range f {
			if k := len(spans) - 1; k >= 0 && spans[k].off+spans[k].n == s.off {
				spans[k].n += s.n
			} else {
				spans = append(spans, s)
			}
		}
	}
	return spans, nil
}

// mapFile maps the whole of f read-only, its pages mapped at once; an
// empty file is an empty slice.
func mapFile(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil, err
	}
	return unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
}

func unmap(b []byte) {
	if b != nil {
		_ = unix.Munmap(b)
	}
}

// patch makes dst, the raw copy, equal to the finished database src: the
// changed ranges copied by the kernel (copy_file_range), the size set,
// then synced; dst is closed.
func patch(dst, src *os.File, changed []span) error {
	fi, err := src.Stat()
	for _, s := range changed {
		if err != nil {
			break
		}
		for off, left := s.off, s.n; left > 0 && err == nil; {
			in, out := off, off
			var n int
			n, err = unix.CopyFileRange(int(src.Fd()), &in, int(dst.Fd()), &out, int(left), 0)
			if err == nil && n == 0 {
				err = io.ErrUnexpectedEOF
			}
			off, left = off+int64(n), left-int64(n)
		}
	}
	if err == nil {
		err = dst.Truncate(fi.Size())
	}
	if err == nil {
		err = unix.Fdatasync(int(dst.Fd()))
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy the finished database's changes: %w", err)
	}
	return nil
}

// buildDB does etcdutl's restore steps on the database at path, the
// snapshot's: the old membership is taken out, the revision bumped when
// asked, the new members written in, and the consistent index set to the
// entries memberFiles writes. The result is the same as etcdutl's but for
// where bbolt put the pages it changed, and the same for every member.
func buildDB(path, token, initialCluster string, bump uint64) error {
	lg := zap.NewNop()
	cl, err := newCluster(lg, token, initialCluster)
	if err != nil {
		return err
	}
	// One backend for every step where etcdutl opens one for each: opening
	// one rebuilds bbolt's free list by walking the whole database. Its
	// commits are not synced: the folder is put in place only after the
	// whole file is (see syncData), so nothing waits on the disk here
	// while the other copies are still being written.
	noSync := func(c *backend.BackendConfig) { c.UnsafeNoFsync = true }
	be := backend.NewDefaultBackend(lg, path, backend.WithMmapSize(0), noSync)
	err = schema.NewMembershipBackend(lg, be).TrimMembershipFromBackend()
	if err == nil && bump > 0 {
		err = bumpRevision(be, bump)
	}
	if err == nil {
		cl.SetBackend(schema.NewMembershipBackend(lg, be))
		for _, m := range cl.Members() {
			cl.AddMember(m, true)
		}
		commit, term := startEntries(cl)
		cindex.UpdateConsistentIndexForce(be.BatchTx(), commit, term)
	}
	// Closing commits.
	if cerr := be.Close(); err == nil {
		err = cerr
	}
	return err
}

func newCluster(lg *zap.Logger, token, initialCluster string) (*membership.RaftCluster, error) {
	ics, err := types.NewURLsMap(initialCluster)
	if err != nil {
		return nil, err
	}
	return membership.NewClusterFromURLsMap(lg, token, ics)
}

// startEntries are the commit index and term a new cluster starts from:
// one entry per member, added at term 1.
func startEntries(cl *membership.RaftCluster) (commit, term uint64) {
	return uint64(len(cl.MemberIDs())), 1
}

// bumpRevision raises the latest revision by bump and marks it compacted,
// so that watchers see no revision go backwards.
func bumpRevision(be backend.Backend, bump uint64) error {
	tx := be.BatchTx()
	tx.LockOutsideApply()
	var latest mvcc.Revision
	err := tx.UnsafeForEach(schema.Key, func(k, _ []byte) error {
		if rev := mvcc.BytesToRev(k); rev.GreaterThan(latest) {
			latest = rev
		}
		return nil
	})
	if err == nil && bump > uint64(math.MaxInt64-latest.Main) {
		// Restore checked this against the snapshot's revision already.
		err = fmt.Errorf("revision %d raised by %d passes etcd's largest revision", latest.Main, bump)
	}
	if err == nil {
		latest.Main += int64(bump)
		latest.Sub = 0
		tx.UnsafePut(schema.Key, mvcc.RevToBytes(latest, mvcc.NewRevBytes()), []byte{})
		mvcc.UnsafeSetScheduledCompact(tx, latest.Main)
	}
	tx.Unlock()
	return err
}

// memberFiles writes, in dataDir, the WAL and raft snapshot a new cluster
// starts from for member name: every member added at term 1.
func memberFiles(dataDir, name, token, initialCluster string) error {
	lg := zap.NewNop()
	cl, err := newCluster(lg, token, initialCluster)
	if err != nil {
		return err
	}
	snapDir := filepath.Join(dataDir, "member", "snap")
	walDir := filepath.Join(dataDir, "member", "wal")
	self := cl.MemberByName(name)
	if self == nil {
		return fmt.Errorf("member %s is not in the initial cluster", name)
	}
	md, err := (&pb.Metadata{NodeID: uint64(self.ID), ClusterID: uint64(cl.ID())}).Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return err
	}
	w, err := wal.Create(lg, walDir, md)
	if err != nil {
		return err
	}
	defer w.Close()

	ids := cl.MemberIDs()
	ents := make([]raftpb.Entry, len(ids))
	voters := make([]uint64, len(ids))
	peers := make([]raft.Peer, len(ids))
	for i, id := range ids {
		ctx, err := json.Marshal(cl.Member(id))
		if err != nil {
			return err
		}
		peers[i] = raft.Peer{ID: uint64(id), Context: ctx}
		cc := raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: uint64(id), Context: ctx}
		d, err := cc.Marshal()
		if err != nil {
			return err
		}
		ents[i] = raftpb.Entry{Type: raftpb.EntryConfChange, Term: 1, Index: uint64(i + 1), Data: d}
		voters[i] = uint64(id)
	}
	commit, term := startEntries(cl)
	if err := w.Save(raftpb.HardState{Term: term, Vote: peers[0].ID, Commit: commit}, ents); err != nil {
		return err
	}
	cs := raftpb.ConfState{Voters: voters}
	err = snap.New(lg, snapDir).SaveSnap(raftpb.Snapshot{
		Data:     etcdserver.GetMembershipInfoInV2Format(lg, cl),
		Metadata: raftpb.SnapshotMetadata{Index: commit, Term: term, ConfState: cs},
	})
	if err != nil {
		return err
	}
	return w.SaveSnapshot(walpb.Snapshot{Index: commit, Term: term, ConfState: &cs})
}
