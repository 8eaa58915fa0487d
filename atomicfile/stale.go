package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// tempTarget is the file name a temp file stands for: ".ca.key.tmp-123"
// is "ca.key".
func tempTarget(name string) string {
	base, _, _ := strings.Cut(strings.TrimPrefix(name, "."), tempInfix)
	return base
}

// RemoveTemps removes every temp file and temp folder (see IsTemp) under
// dir, which a killed run left behind: they may hold part of a key. Only a
// run that holds the folder's lock may call it, since a running writer's
// temp files look the same. It returns what it removed; a missing dir is
// not an error.
func RemoveTemps(dir string) ([]string, error) {
	var removed []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if path == dir || !IsTemp(d.Name()) {
			return nil
		}
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("remove the stale temp file %s: %w", path, err)
		}
		removed = append(removed, path)
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	return removed, err
}

// RemoveTempsOf removes the temp files a killed run left for the given
// files: ".NAME.tmp-*" beside each path. It is how a run cleans up after
// itself in a folder that is not its own (a node's /etc/kubernetes), where
// other temp files are none of its business. Same caveat as RemoveTemps.
func RemoveTempsOf(paths []string) ([]string, error) {
	byDir := map[string][]string{}
	for _, p := range paths {
		dir := filepath.Dir(p)
		byDir[dir] = append(byDir[dir], filepath.Base(p))
	}
	var removed []string
	for _, dir := range slices.Sorted(maps.Keys(byDir)) {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("look for stale temp files in %s: %w", dir, err)
		}
		for _, e := range ents {
			if !IsTemp(e.Name()) || !slices.Contains(byDir[dir], tempTarget(e.Name())) {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if err := os.RemoveAll(path); err != nil {
				return removed, fmt.Errorf("remove the stale temp file %s: %w", path, err)
			}
			removed = append(removed, path)
		}
	}
	return removed, nil
}
