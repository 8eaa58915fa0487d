// Package dirlock keeps two runs from writing into one folder at once. A
// run holds flock(2) on a file in the folder for as long as it writes, with
// its PID in the file so that a refused run can say who is writing; the
// holder removes the file when it is done, so a finished run leaves nothing.
// The kernel drops the lock of a killed process, so a stale file never
// blocks anyone.
package dirlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"golang.org/x/sys/unix"
)

// Options say how to lock.
type Options struct {
	// Wait is how long to wait for the holder to finish; 0 refuses at once.
	Wait time.Duration
	// Shared takes a shared lock, for a run that only reads: it waits for
	// (or refuses) a writer, lets other readers in, and never creates
	// anything, so there is no lock at all when there is no lock file.
	Shared bool
	// Poll is how often a waiting run tries again (default 20ms).
	Poll time.Duration
}

// BusyError is the refusal when another process holds the lock.
type BusyError struct {
	Path string
	// PID is the holder's process ID, 0 when it could not be read.
	PID int
	// Waited is how long the run waited before giving up.
	Waited time.Duration
}

func (e *BusyError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "PID " + strconv.Itoa(e.PID)
	}
	if e.Waited > 0 {
		return fmt.Sprintf("%s is still held by %s (another etcd-staticpod run writing there) after waiting %s", e.Path, who, e.Waited)
	}
	return fmt.Sprintf("%s is held by %s (another etcd-staticpod run writing there); wait for it to end, or give --wait-lock DURATION to wait", e.Path, who)
}

// Lock is a held lock; Release lets it go.
type Lock struct {
	f      *os.File
	path   string
	shared bool
	// created are the folders Acquire made to hold the lock file,
	// outermost first; Release removes those left empty.
	created []string
}

// Path is the lock file.
func (l *Lock) Path() string {
	if l == nil {
		return ""
	}
	return l.path
}

// Acquire locks dir: exclusively, creating dir and the lock file when
// missing, or with Options.Shared for reading. It refuses with a
// *BusyError when another process holds a conflicting lock after
// Options.Wait, and gives up when ctx ends. A shared request on a folder
// with no lock file returns a nil *Lock, which Release accepts.
func Acquire(ctx context.Context, dir string, o Options) (*Lock, error) {
	if o.Poll <= 0 {
		o.Poll = 20 * time.Millisecond
	}
	path := filepath.Join(dir, layout.LockFile)
	start := time.Now()
	l := &Lock{path: path, shared: o.Shared}
	for {
		f, err := l.open(dir)
		if err != nil {
			l.undoDirs()
			return nil, err
		}
		if f == nil {
			return nil, nil // shared, and nobody writes here
		}
		how := unix.LOCK_EX
		if o.Shared {
			how = unix.LOCK_SH
		}
		err = flock(f, how|unix.LOCK_NB)
		if err == nil {
			// The holder before us removes the file before it unlocks:
			// a lock on a file no longer at the path guards nothing.
			if !stillThere(f, path) {
				_ = f.Close()
				continue
			}
			l.f = f
			if !o.Shared {
				if err := writePID(f); err != nil {
					_ = l.Release()
					return nil, fmt.Errorf("lock %s: %w", path, err)
				}
			}
			return l, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			_ = f.Close()
			l.undoDirs()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		pid := readPID(f)
		_ = f.Close()
		waited := time.Since(start)
		if waited >= o.Wait {
			l.undoDirs()
			busy := &BusyError{Path: path, PID: pid}
			if o.Wait > 0 {
				busy.Waited = o.Wait
			}
			return nil, busy
		}
		t := time.NewTimer(min(o.Poll, o.Wait-waited))
		select {
		case <-ctx.Done():
			t.Stop()
			l.undoDirs()
			return nil, fmt.Errorf("waiting for %s (held by PID %d): %w", path, pid, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// open opens the lock file, creating it (and dir) for an exclusive lock.
// For a shared lock it returns nil, nil when there is no lock file.
func (l *Lock) open(dir string) (*os.File, error) {
	if l.shared {
		f, err := os.OpenFile(l.path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", l.path, err)
		}
		return f, nil
	}
	created, err := atomicfile.MkdirAll(dir, layout.ModeDir)
	for _, d := range created {
		if !slices.Contains(l.created, d) {
			l.created = append(l.created, d)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// 0644: anyone may read who holds it; O_NOFOLLOW: a link planted in
	// its place is refused, not followed.
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.path, err)
	}
	return f, nil
}

// Release removes the lock file (an exclusive holder only) and unlocks,
// then removes the folders Acquire created if they are empty. A nil Lock
// is fine.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	var err error
	if !l.shared {
		// Removed while still locked: whoever waits on this file sees it
		// gone and locks a new one.
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("unlock %s: %w", l.path, rerr)
		}
	}
	if cerr := l.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("unlock %s: %w", l.path, cerr)
	}
	l.f = nil
	l.undoDirs()
	return err
}

// undoDirs removes the folders made for the lock, innermost first, where
// nothing else has been put in them.
func (l *Lock) undoDirs() {
	for _, d := range slices.Backward(l.created) {
		_ = os.Remove(d)
	}
	l.created = nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// stillThere reports whether the open file f is the one at path.
func stillThere(f *os.File, path string) bool {
	open, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Lstat(path)
	return err == nil && os.SameFile(open, now)
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// readPID reads the holder's PID, giving a holder that has just locked a
// moment to write it.
func readPID(f *os.File) int {
	buf := make([]byte, 32)
	for range 10 {
		n, _ := f.ReadAt(buf, 0)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}
