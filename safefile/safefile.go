// Package safefile opens the files the tool reads and checks the folders it
// writes into, so that a special file, a huge file or a symbolic link cannot
// make a run hang, exhaust memory or write outside the tree it writes into.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
)

// MaxInput bounds what is read of a spec, a patch, a certificate, a key or
// a manifest: the biggest real one is a few kilobytes.
const MaxInput = 1 << 20

// Error is a file the tool refuses to read or to write through. It is bad
// input: the command exits 2.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string { return e.Path + ": " + e.Reason }

// Unwrap marks the refusal as bad input.
func (e *Error) Unwrap() error { return &badinput.Error{Err: errors.New(e.Reason)} }

// Open opens path for reading and checks that it is a regular file. The
// open does not block (a named pipe with no writer would hang it forever),
// and the check is made on the opened file, so that what is read is what
// was checked.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, &Error{Path: path, Reason: "not a regular file"}
	}
	return f, fi, nil
}

// ReadFile reads a regular file of at most limit bytes. A missing file is
// an error that satisfies errors.Is(err, fs.ErrNotExist), as with
// os.ReadFile.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tooBig := &Error{Path: path, Reason: "larger than " + size(limit) + ", more than this kind of file ever holds"}
	if fi.Size() > limit {
		return nil, tooBig
	}
	// The size can change under us, and some files (in /proc) say 0: read
	// one byte past the limit to tell.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.Unwrap(err)}
	}
	if int64(len(b)) > limit {
		return nil, tooBig
	}
	return b, nil
}

// Reason is what went wrong in err without the operation and path an
// *fs.PathError repeats, for a message that names the path its own way.
func Reason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Read reads an input file of at most MaxInput bytes; see ReadFile.
func Read(path string) ([]byte, error) { return ReadFile(path, MaxInput) }

func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Beneath checks that each of dirs, resolved as the kernel resolves it
// when a file is written there, stays inside root; see Tree.Check.
func Beneath(root string, dirs ...string) error {
	t := NewTree(root)
	for _, dir := range dirs {
		if err := t.Check(dir); err != nil {
			return err
		}
	}
	return nil
}

// Tree checks the folders a run writes into below one root. It remembers
// the folders it found sound, for the many files that share them: use one
// Tree for one run, whose own folders it creates as real folders.
type Tree struct {
	root string
	// realRoot is root with every link resolved; "" until root exists.
	realRoot string
	checked  map[string]bool
}

// NewTree checks folders below root.
func NewTree(root string) *Tree { return &Tree{root: root, checked: map[string]bool{}} }

// Check refuses dir when, resolved as the kernel resolves it when a file
// is written there, it lies outside the tree: some folder on the way is a
// symbolic link that leads out of root, or leads nowhere. Links that stay
// inside root are fine (on a node, /var/run -> /run with root /), and so is
// root itself being a link. Folders that do not exist yet are fine: what
// creates them makes real folders. dir must lie lexically inside root.
func (t *Tree) Check(dir string) error {
	if t.checked[dir] {
		return nil
	}
	absRoot, err := filepath.Abs(t.root)
	if err != nil {
		return fmt.Errorf("%s: %w", t.root, err)
	}
	if t.realRoot == "" {
		real, err := filepath.EvalSymlinks(absRoot)
		if fi, lerr := os.Lstat(absRoot); errors.Is(err, fs.ErrNotExist) && lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(absRoot)
			return &Error{Path: t.root, Reason: fmt.Sprintf("a symbolic link to %s, which does not resolve", target)}
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nothing inside root exists yet
		}
		if err != nil {
			return err
		}
		t.realRoot = real
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	rel, err := filepath.Rel(absRoot, abs)
	if err == nil && rel == "." {
		return nil
	}
	if err != nil || !filepath.IsLocal(rel) {
		return fmt.Errorf("%s is not inside %s", dir, t.root)
	}
	cur := t.root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		if t.checked[cur] {
			continue
		}
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if err := linkInside(cur, t.root, t.realRoot); err != nil {
				return err
			}
		} else if !fi.IsDir() {
			return nil // not a folder: writing there fails and says so
		}
		t.checked[cur] = true
	}
	return nil
}

// linkInside refuses the link at path unless it resolves to a place inside
// realRoot.
func linkInside(path, root, realRoot string) error {
	target, err := os.Readlink(path)
	if err != nil {
		return err
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return &Error{Path: path, Reason: fmt.Sprintf("a symbolic link to %s, which does not resolve; refusing to write through it", target)}
	}
	if rel, err := filepath.Rel(realRoot, resolved); err != nil || !(rel == "." || filepath.IsLocal(rel)) {
		return &Error{Path: path, Reason: fmt.Sprintf("a symbolic link to %s, outside %s; refusing to write through it", target, root)}
	}
	return nil
}
