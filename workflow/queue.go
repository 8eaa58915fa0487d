package workflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// QueueOptions say where a run writes and how it reports.
type QueueOptions struct {
	// Out is the folder the run writes into.
	Out string
	// Root, when set, is a node's filesystem root that receives its files
	// instead of Out.
	Root   string
	DryRun bool
	// Log receives the progress lines of a run that succeeded: a run that
	// fails prints only its error.
	Log io.Writer
	// Warn receives warnings at once.
	Warn io.Writer
	// Context calls a run off (SIGINT, SIGTERM): before its files are put
	// in place the run rolls back and returns the context's cause; once the
	// renames have begun they finish.
	Context context.Context
	// WriteDelay holds the run with its temp files on disk, just before
	// they are put in place: tests use it to widen that window.
	WriteDelay time.Duration
}

// File is one queued file.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode
	// DirMode is the mode of the file's folder if the run creates it.
	DirMode os.FileMode
}

// Queue is a run's files: phases queue them, and the run commits them all
// at once at its end, so that a run that fails before the end has written
// nothing and one pair of syncs covers every file. It also holds the run's
// progress lines until the run has succeeded.
type Queue struct {
	opts    QueueOptions
	pending []File
	// created lists what this run made, oldest first.
	created []string
	// trees check that writes stay inside Out or Root, by root.
	trees map[string]*safefile.Tree
	// progress holds the lines Logf printed during a run, until it succeeds.
	progress *bytes.Buffer
}

// NewQueue returns an empty queue; nil writers discard.
func NewQueue(o QueueOptions) *Queue {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Warn == nil {
		o.Warn = o.Log
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	return &Queue{opts: o}
}

// queue lets a run's data that embeds *Queue satisfy Data.
func (q *Queue) queue() *Queue { return q }

// DryRun reports whether the run only says what it would write.
func (q *Queue) DryRun() bool { return q.opts.DryRun }

// Logf prints a progress line (once the run has succeeded).
func (q *Queue) Logf(format string, args ...any) {
	w := q.opts.Log
	if q.progress != nil {
		w = q.progress
	}
	fmt.Fprintf(w, format+"\n", args...)
}

// Warnf prints a warning line at once.
func (q *Queue) Warnf(format string, args ...any) {
	fmt.Fprintf(q.opts.Warn, "warning: "+format+"\n", args...)
}

// WriteFile queues one output file (or, with --dry-run, says it would write
// it). Queued files are written together, atomically and in order, at the
// end of the run. Missing parents are created 0755 and the file's own folder
// with dirMode.
func (q *Queue) WriteFile(path string, data []byte, mode, dirMode os.FileMode) error {
	if err := q.checkBeneath(filepath.Dir(path)); err != nil {
		return err
	}
	if q.opts.DryRun {
		q.Logf("[dry-run] would write %s (%04o, %d bytes)", path, mode, len(data))
		return nil
	}
	q.pending = append(q.pending, File{Path: path, Data: data, Mode: mode, DirMode: dirMode})
	return nil
}

// MkdirAll creates a folder (or, with --dry-run, says it would).
func (q *Queue) MkdirAll(path string, mode os.FileMode) error {
	if err := q.checkBeneath(path); err != nil {
		return err
	}
	if q.opts.DryRun {
		if _, err := os.Stat(path); err != nil {
			q.Logf("[dry-run] would create folder %s (%04o)", path, mode)
		}
		return nil
	}
	if err := q.mkdirs(filepath.Dir(path), layout.ModeDir); err != nil {
		return err
	}
	return q.mkdirs(path, mode)
}

// Pending are the files queued so far, in order.
func (q *Queue) Pending() []File { return q.pending }

// Queued returns the data last queued for path.
func (q *Queue) Queued(path string) ([]byte, bool) {
	for i := len(q.pending) - 1; i >= 0; i-- {
		if q.pending[i].Path == path {
			return q.pending[i].Data, true
		}
	}
	return nil, false
}

// ReadFile reads what a phase sees at path: the data queued for it, or the
// file on disk.
func (q *Queue) ReadFile(path string) ([]byte, error) {
	if b, ok := q.Queued(path); ok {
		return b, nil
	}
	return safefile.Read(path)
}

// Exists reports whether path is on disk or queued to be written.
func (q *Queue) Exists(path string) bool {
	if _, ok := q.Queued(path); ok {
		return true
	}
	_, err := os.Stat(path)
	return err == nil
}

// interrupted is the error of a run called off, nil while it is not.
func (q *Queue) interrupted() error {
	if q.opts.Context.Err() == nil {
		return nil
	}
	return fmt.Errorf("%w: stopped before putting any file in place; what the run had made is removed", context.Cause(q.opts.Context))
}

// commit writes the queued files, noting what did not exist before so that
// a failed run can take it back.
func (q *Queue) commit() error {
	plan, err := q.planDirs()
	if err != nil {
		return err
	}
	for _, dir := range plan.order {
		mode := plan.mode[dir]
		if err := os.Mkdir(dir, mode); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		q.created = append(q.created, dir)
		// The exact mode, whatever the umask.
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	files := make([]atomicfile.File, 0, len(q.pending))
	paths := make([]string, 0, len(q.pending))
	for _, f := range q.pending {
		if plan.isNew(f.Path) || !exists(f.Path) {
			q.created = append(q.created, f.Path)
		}
		files = append(files, atomicfile.File{Path: f.Path, Data: f.Data, Mode: f.Mode})
		paths = append(paths, f.Path)
	}
	q.pending = nil
	// Temp files a killed run left beside ours; the caller holds the lock,
	// so no running writer owns them.
	removed, err := atomicfile.RemoveTempsOf(paths)
	if err != nil {
		return err
	}
	for _, p := range removed {
		q.Logf("[cleanup] Removed %s, left by an interrupted run", p)
	}
	staged, err := atomicfile.Stage(files)
	if err != nil {
		return err
	}
	if q.opts.WriteDelay > 0 {
		t := time.NewTimer(q.opts.WriteDelay)
		select {
		case <-t.C:
		case <-q.opts.Context.Done():
			t.Stop()
		}
	}
	// The last moment to call the run off with every target as it was.
	if err := q.interrupted(); err != nil {
		staged.Discard()
		return err
	}
	return staged.Commit()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (q *Queue) mkdirs(path string, mode os.FileMode) error {
	created, err := atomicfile.MkdirAll(path, mode)
	q.created = append(q.created, created...)
	return err
}

// rollback drops the queue and removes, newest first, every file and
// folder this run created. Files it replaced stay replaced: each is a
// complete new version.
func (q *Queue) rollback() {
	q.pending = nil
	for i := len(q.created) - 1; i >= 0; i-- {
		_ = os.Remove(q.created[i])
	}
	q.created = nil
}

// checkBeneath refuses a folder to write into that a symbolic link takes
// out of the tree it belongs to: Root for a node's files, else Out. A link
// that stays inside the tree is followed as usual.
func (q *Queue) checkBeneath(dir string) error {
	root := q.opts.Out
	if q.opts.Root != "" && inside(q.opts.Root, dir) {
		root = q.opts.Root
	}
	if !inside(root, dir) {
		return nil // not a folder of ours, such as where --ca-cert is: never written
	}
	if q.trees == nil {
		q.trees = map[string]*safefile.Tree{}
	}
	t := q.trees[root]
	if t == nil {
		t = safefile.NewTree(root)
		q.trees[root] = t
	}
	return t.Check(dir)
}

// inside reports whether path lies lexically in root or is root.
func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// checkDestination refuses, before any check reads what is there, a
// destination that cannot hold the run's files.
func (q *Queue) checkDestination() error {
	if q.opts.Root != "" {
		return CheckDestination("--root", q.opts.Root, q.opts.DryRun)
	}
	return CheckDestination("--out", q.opts.Out, q.opts.DryRun)
}

// CheckDestination refuses, as bad input given as flag, a folder dir that
// cannot hold a run's files: a path through a file, or (unless dryRun) a
// folder this process cannot write or create.
func CheckDestination(flag, dir string, dryRun bool) error {
	existing := dir
	for {
		fi, err := os.Stat(existing)
		if err == nil {
			if !fi.IsDir() {
				if existing == dir {
					return badinput.New(flag, dir, "not a folder")
				}
				return badinput.New(flag, dir, "%s is not a folder", existing)
			}
			break
		}
		if errors.Is(err, syscall.ENOTDIR) {
			// Some parent is a file: name it.
			for p := filepath.Dir(existing); p != filepath.Dir(p); p = filepath.Dir(p) {
				if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
					return badinput.New(flag, dir, "%s is not a folder", p)
				}
			}
			return badinput.New(flag, dir, "a parent is not a folder")
		}
		if !errors.Is(err, os.ErrNotExist) {
			return badinput.New(flag, dir, "%v", safefile.Reason(err))
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	if dryRun {
		return nil
	}
	// access(2) answers for the filesystem too: EROFS on a read-only mount.
	if err := unix.Access(existing, unix.W_OK); err != nil {
		if existing == dir {
			return badinput.New(flag, dir, "cannot write here: %v", err)
		}
		return badinput.New(flag, dir, "cannot create it in %s: %v", existing, err)
	}
	return nil
}
