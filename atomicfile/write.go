// Package atomicfile writes files and folders so that a reader, or a machine
// that crashed, sees each one old or new, never part of one, with exactly the
// mode asked for whatever the umask; and finds the temp files a killed run
// left behind.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

const tempInfix = ".tmp-"

// IsTemp reports whether a file name is one of WriteFiles' temp files, which
// a killed process can leave behind.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempInfix)
}

// File is one file to write atomically.
type File struct {
	Path string
	Data []byte
	Mode os.FileMode
}

// WriteFile replaces one file atomically; see WriteFiles.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFiles([]File{{Path: path, Data: data, Mode: perm}})
}

// WriteFiles replaces each file atomically: its data goes to a temp file in
// the same folder with the exact mode (whatever the umask), and only when
// every temp file is on disk are they renamed over their targets, in order,
// and the renames made durable. A reader, or a machine that crashed, sees each
// file old or new, never part of one; as renames happen in order, a crash
// leaves a prefix of the list replaced. On failure no temp file is left.
//
// One file is synced on its own (the file, then its folder). A batch is
// flushed with one syncfs(2) per filesystem before the renames and one after:
// a run writes a hundred small files, and a hundred fsyncs cost more than
// the whole rest of the run.
func WriteFiles(files []File) error {
	s, err := Stage(files)
	if err != nil {
		return err
	}
	return s.Commit()
}

// Staged is a batch whose temp files are on disk and not yet renamed into
// place: the point up to which a run can still be called off (Discard)
// with every target as it was.
type Staged struct {
	files []File
	temps []string
}

// Stage writes the temp files of a WriteFiles batch and, for a batch of
// more than one, makes them durable. On failure no temp file is left.
func Stage(files []File) (*Staged, error) {
	single := len(files) == 1
	s := &Staged{files: files, temps: make([]string, len(files))}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, f := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s.temps[i], errs[i] = writeTemp(f, single)
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		s.Discard()
		return nil, err
	}
	if !single {
		if err := syncFilesystems(files); err != nil {
			s.Discard()
			return nil, err
		}
	}
	return s, nil
}

// Discard removes the temp files of a batch not committed.
func (s *Staged) Discard() { s.discard(0) }

func (s *Staged) discard(from int) {
	for _, t := range s.temps[from:] {
		if t != "" {
			_ = os.Remove(t)
		}
	}
}

// Commit renames the temp files over their targets, in order, and makes
// the renames durable.
func (s *Staged) Commit() error {
	for i, f := range s.files {
		if err := os.Rename(s.temps[i], f.Path); err != nil {
			s.discard(i)
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	if len(s.files) == 1 {
		return syncDir(filepath.Dir(s.files[0].Path))
	}
	return syncFilesystems(s.files)
}

// firstError is the first of errs, saying how many more files failed: a
// full or read-only disk fails every file the same way, and one line says it.
func firstError(errs []error) error {
	var first error
	more := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case first == nil:
			first = err
		default:
			more++
		}
	}
	if more > 0 {
		return fmt.Errorf("%w (and %d more files)", first, more)
	}
	return first
}

// syncFilesystems flushes every filesystem the files live on.
func syncFilesystems(files []File) error {
	dirs := map[string]bool{}
	devs := map[uint64]bool{}
	for _, f := range files {
		dir := filepath.Dir(f.Path)
		if dirs[dir] {
			continue
		}
		dirs[dir] = true
		if err := syncfsOnce(dir, devs); err != nil {
			return err
		}
	}
	return nil
}

// syncfsOnce calls syncfs(2) on dir's filesystem unless devs has it already.
func syncfsOnce(dir string, devs map[uint64]bool) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	if devs[st.Dev] {
		return nil
	}
	devs[st.Dev] = true
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func writeTemp(f File, sync bool) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), "."+filepath.Base(f.Path)+tempInfix+"*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	name := tmp.Name()
	fail := func(err error) (string, error) {
		_ = tmp.Close()
		_ = os.Remove(name)
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := tmp.Chmod(f.Mode); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(f.Data); err != nil {
		return fail(err)
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	return name, nil
}

// MkdirAll creates path and any missing parents with exactly perm (the umask
// does not apply); folders that already exist keep their mode. It returns
// the folders it created, outermost first.
func MkdirAll(path string, perm os.FileMode) ([]string, error) {
	fi, err := os.Stat(path)
	if err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("mkdir %s: exists and is not a folder", path)
		}
		return nil, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("mkdir %s: %w", path, err)
	}
	var created []string
	if parent := filepath.Dir(path); parent != path {
		if created, err = MkdirAll(parent, perm); err != nil {
			return created, err
		}
	}
	if err := os.Mkdir(path, perm); err != nil {
		if errors.Is(err, os.ErrExist) {
			return created, nil
		}
		return created, fmt.Errorf("mkdir %s: %w", path, err)
	}
	created = append(created, path)
	if err := os.Chmod(path, perm); err != nil {
		return created, fmt.Errorf("chmod %s: %w", path, err)
	}
	return created, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
