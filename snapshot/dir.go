package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// DirFilePrefix and DirTimeFormat make the names of the snapshots
// SaveToDir writes: etcd-snapshot-20261130T101500Z.db, in UTC to the
// second, with -2, -3, ... before .db for a second save within the same
// second.
const (
	DirFilePrefix = "etcd-snapshot-"
	DirTimeFormat = "20060102T150405Z"
)

var dirFileRe = regexp.MustCompile(`^` + DirFilePrefix + `([0-9]{8}T[0-9]{6}Z)(?:-([0-9]+))?\.db$`)

// DirOptions say where a scheduled snapshot goes and how many are kept.
type DirOptions struct {
	// SaveOptions without Path: the file is named in Dir.
	SaveOptions
	// Dir is the folder the snapshots are kept in; it must exist.
	Dir string
	// Keep is how many snapshots SaveToDir leaves in Dir, the new one
	// included; 0 keeps every one.
	Keep int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DirResult is a saved and verified snapshot in Dir and the retention
// applied after it.
type DirResult struct {
	*SaveResult
	// Kept are the snapshots left in Dir, newest first, the new one
	// included.
	Kept []string
	// Removed are the snapshots removed, oldest first.
	Removed []string
}

// dirFile is a snapshot file in Dir, by its name.
type dirFile struct {
	name   string
	stamp  string
	suffix int
}

// CheckDir rejects a folder that is missing or not a folder, and a
// negative keep, before any data is fetched.
func CheckDir(dir string, keep int) error {
	if keep < 0 {
		return inputErr("--keep", strconv.Itoa(keep), "must not be negative")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return inputErr("--dir", dir, "%w", safefile.Reason(err))
	}
	if !fi.IsDir() {
		return inputErr("--dir", dir, "not a folder")
	}
	return nil
}

// SaveToDir saves a snapshot as Dir/etcd-snapshot-YYYYMMDDTHHMMSSZ.db,
// as Save does (atomically, then read back and verified), and only then
// removes the oldest snapshots of that pattern beyond Keep. Other files in
// Dir are never touched. A save that fails removes nothing and leaves no
// new file.
func SaveToDir(ctx context.Context, o DirOptions) (*DirResult, error) {
	if err := CheckDir(o.Dir, o.Keep); err != nil {
		return nil, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	path, err := reserve(o.Dir, now().UTC())
	if err != nil {
		return nil, err
	}
	o.Path = path
	saved, err := Save(ctx, o.SaveOptions)
	if err != nil {
		// The reserved name, or a file that failed verification.
		_ = os.Remove(path)
		return nil, err
	}
	res := &DirResult{SaveResult: saved}
	files, err := listSnapshots(o.Dir)
	if err != nil {
		return res, err
	}
	for i, f := range files {
		full := filepath.Join(o.Dir, f.name)
		if o.Keep == 0 || i < o.Keep || full == path {
			res.Kept = append(res.Kept, full)
			continue
		}
		if err := os.Remove(full); err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, fmt.Errorf("remove the old snapshot %s: %w", full, err)
		}
		res.Removed = append(res.Removed, full)
	}
	slices.Reverse(res.Removed)
	return res, nil
}

// reserve creates the empty file the snapshot will replace, so that two
// saves in the same second never pick the same name. The suffix follows
// the highest of that second still in dir, never a name --keep freed, so
// that the newest snapshot always sorts newest.
func reserve(dir string, at time.Time) (string, error) {
	stamp := at.Format(DirTimeFormat)
	files, err := listSnapshots(dir)
	if err != nil {
		return "", err
	}
	first := 1
	for _, f := range files {
		if f.stamp == stamp && f.suffix >= first {
			first = f.suffix + 1
		}
	}
	for n := first; n < first+1000; n++ {
		name := DirFilePrefix + stamp + ".db"
		if n > 1 {
			name = fmt.Sprintf("%s%s-%d.db", DirFilePrefix, stamp, n)
		}
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("snapshot file in %s: %w", dir, err)
		}
		if err := f.Close(); err != nil {
			_ = os.Remove(path)
			return "", fmt.Errorf("snapshot file %s: %w", path, err)
		}
		return path, nil
	}
	return "", fmt.Errorf("snapshot file in %s: every name for %s is taken", dir, stamp)
}

// listSnapshots lists the snapshots in dir that SaveToDir names, newest first.
func listSnapshots(dir string) ([]dirFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list the snapshots in %s: %w", dir, err)
	}
	var out []dirFile
	for _, e := range entries {
		m := dirFileRe.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		f := dirFile{name: e.Name(), stamp: m[1], suffix: 1}
		if m[2] != "" {
			f.suffix, _ = strconv.Atoi(m[2])
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b dirFile) int {
		return cmp.Or(cmp.Compare(b.stamp, a.stamp), cmp.Compare(b.suffix, a.suffix))
	})
	return out, nil
}
