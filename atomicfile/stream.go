package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFileFrom replaces one file atomically with everything read from r,
// for data too large to hold in memory such as an etcd snapshot. The data
// goes to a temp file in the same folder (named as WriteFiles names its
// temp files, so IsTemp recognises it) with exactly perm whatever the umask;
// once r reports io.EOF the temp file is synced, renamed over path and the
// folder synced. An error from r, like any other, leaves path as it was and
// no temp file behind, so a reader can refuse its data by failing at the
// end.
func WriteFileFrom(path string, r io.Reader, perm os.FileMode) error {
	return WriteFileFromChecked(path, r, perm, nil)
}

// WriteFileFromChecked is WriteFileFrom with a last look at the data:
// once r reports io.EOF, check reads the temp file by its name (while it is
// being synced) and an error from it, as from r, leaves path as it was and
// no temp file behind. A nil check checks nothing.
func WriteFileFromChecked(path string, r io.Reader, perm os.FileMode, check func(tmp string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+tempInfix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		_ = tmp.Close()
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Set the mode before any data lands, so a key or snapshot is never
	// readable by others, not even half written.
	if err := tmp.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(tmp, r); err != nil {
		return fail(err)
	}
	// The check reads what the sync writes out: both at once.
	checked := make(chan error, 1)
	go func() {
		if check == nil {
			checked <- nil
			return
		}
		checked <- check(name)
	}()
	err = tmp.Sync()
	if cerr := <-checked; cerr != nil {
		return fail(cerr)
	}
	if err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// TempDir makes an empty folder with mode 0700 beside path, named as the
// temp files are so that IsTemp recognises it, to be filled and then put
// in place with CommitDir.
func TempDir(path string) (string, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), "."+filepath.Base(path)+tempInfix+"*")
	if err != nil {
		return "", fmt.Errorf("mkdir %s: %w", path, err)
	}
	return dir, nil
}

// CommitDir renames the filled temp folder tmp to path, which must not
// exist, and syncs the parent folder, so that a crash leaves either no
// folder at path or the whole one.
func CommitDir(tmp, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("rename %s: %w", path, os.ErrExist)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}
