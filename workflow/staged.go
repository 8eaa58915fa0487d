package workflow

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// dirPlan is the folders flush must create before it writes the queued
// files, in creation order (parents first), each with the mode it gets.
type dirPlan struct {
	order []string
	mode  map[string]os.FileMode
	// onDisk caches what Lstat said of a path: a run asks about the same
	// few parents for every file.
	onDisk map[string]bool
}

// planDirs works out, without touching the disk, the folders flush creates:
// a file's missing folder gets the file's folder mode, and missing folders
// above it 0755, as the first file queued under them asks.
func (q *Queue) planDirs() (*dirPlan, error) {
	p := &dirPlan{mode: map[string]os.FileMode{}, onDisk: map[string]bool{}}
	for _, f := range q.pending {
		dir := filepath.Dir(f.Path)
		if err := p.ensure(filepath.Dir(dir), layout.ModeDir); err != nil {
			return nil, err
		}
		if err := p.ensure(dir, f.DirMode); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ensure plans path and its missing parents with mode.
func (p *dirPlan) ensure(path string, mode os.FileMode) error {
	if _, planned := p.mode[path]; planned {
		return nil
	}
	exists, known := p.onDisk[path]
	if !known {
		fi, err := os.Lstat(path)
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			// A link to a folder is that folder (OUT may be one); where
			// it leads was checked when the file was queued.
			fi, err = os.Stat(path)
		}
		switch {
		case err == nil && !fi.IsDir():
			return badinput.Errorf("mkdir %s: exists and is not a folder", path)
		case err == nil:
			exists = true
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("mkdir %s: %w", path, err)
		}
		p.onDisk[path] = exists
	}
	if exists {
		return nil
	}
	if parent := filepath.Dir(path); parent != path {
		if err := p.ensure(parent, mode); err != nil {
			return err
		}
	}
	p.mode[path] = mode
	p.order = append(p.order, path)
	return nil
}

// isNew reports whether path lies in a folder the plan creates, so that
// nothing can be there yet.
func (p *dirPlan) isNew(path string) bool {
	_, ok := p.mode[filepath.Dir(path)]
	return ok
}

// View is the disk as it will be once the queued files are written.
type View struct {
	q    *Queue
	plan *dirPlan
}

// View returns the disk as the run will leave it. Phases that pack what
// earlier phases made read it instead of the disk, so that a whole run
// still writes once, at the end. It holds for the files queued so far.
func (q *Queue) View() (*View, error) {
	plan, err := q.planDirs()
	if err != nil {
		return nil, err
	}
	return &View{q: q, plan: plan}, nil
}

// Dir returns the folder root as it will be: the disk, overlaid with the
// queued files and the folders planned for them.
func (v *View) Dir(root string) fs.FS {
	plan := v.plan
	s := &stagedFS{
		root:  root,
		files: map[string]*File{},
		dirs:  map[string]os.FileMode{},
		kids:  map[string]map[string]bool{},
	}
	add := func(rel string) {
		for rel != "." {
			parent, name := path.Dir(rel), path.Base(rel)
			if s.kids[parent] == nil {
				s.kids[parent] = map[string]bool{}
			}
			s.kids[parent][name] = true
			rel = parent
		}
	}
	inside := func(p string) (string, bool) {
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || !filepath.IsLocal(rel) {
			return "", false
		}
		return filepath.ToSlash(rel), true
	}
	for _, dir := range plan.order {
		if dir == root {
			s.rootMode, s.rootPlanned = plan.mode[dir], true
			continue
		}
		if rel, ok := inside(dir); ok {
			s.dirs[rel] = plan.mode[dir]
			add(rel)
		}
	}
	for i := range v.q.pending {
		f := &v.q.pending[i]
		if rel, ok := inside(f.Path); ok {
			s.files[rel] = f // the last queued for a path is what lands
			add(rel)
		}
	}
	return s
}

// stagedFS is the fs.FS staged returns. Names are slash paths relative to
// root; what is queued or planned hides whatever the disk holds there.
type stagedFS struct {
	root        string
	files       map[string]*File
	dirs        map[string]os.FileMode
	rootMode    os.FileMode
	rootPlanned bool
	// kids are the queued files' and planned folders' names in each folder.
	kids map[string]map[string]bool
}

func (s *stagedFS) disk(name string) string {
	return filepath.Join(s.root, filepath.FromSlash(name))
}

func (s *stagedFS) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	if f, ok := s.files[name]; ok {
		return stagedInfo{name: path.Base(name), size: int64(len(f.Data)), mode: f.Mode}, nil
	}
	if mode, ok := s.dirs[name]; ok {
		return stagedInfo{name: path.Base(name), mode: fs.ModeDir | mode}, nil
	}
	if name == "." && s.rootPlanned {
		return stagedInfo{name: ".", mode: fs.ModeDir | s.rootMode}, nil
	}
	fi, err := os.Lstat(s.disk(name))
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: errors.Unwrap(err)}
	}
	return fi, nil
}

func (s *stagedFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	if f, ok := s.files[name]; ok {
		return slices.Clone(f.Data), nil
	}
	if _, ok := s.dirs[name]; ok || (name == "." && s.rootPlanned) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	b, err := safefile.ReadFile(s.disk(name), archive.MaxFile)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.Unwrap(err)}
	}
	return b, nil
}

// ReadDir merges the folder's entries on disk with those staged in it,
// sorted by name.
func (s *stagedFS) ReadDir(name string) ([]fs.DirEntry, error) {
	fi, err := s.Stat(name)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.Unwrap(err)}
	}
	if !fi.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	var out []fs.DirEntry
	staged := s.kids[name]
	_, planned := s.dirs[name]
	if !planned && !(name == "." && s.rootPlanned) {
		ents, err := os.ReadDir(s.disk(name))
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.Unwrap(err)}
		}
		for _, e := range ents {
			if !staged[e.Name()] {
				out = append(out, e)
			}
		}
	}
	for kid := range staged {
		info, err := s.Stat(path.Join(name, kid))
		if err != nil {
			return nil, err
		}
		out = append(out, fs.FileInfoToDirEntry(info))
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func (s *stagedFS) Open(name string) (fs.File, error) {
	fi, err := s.Stat(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.Unwrap(err)}
	}
	if fi.IsDir() {
		ents, err := s.ReadDir(name)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: errors.Unwrap(err)}
		}
		return &stagedDir{info: fi, ents: ents}, nil
	}
	if f, ok := s.files[name]; ok {
		return &stagedFile{info: fi, Reader: bytes.NewReader(f.Data)}, nil
	}
	f, _, err := safefile.Open(s.disk(name))
	return f, err
}

// stagedInfo describes a queued file or planned folder.
type stagedInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (i stagedInfo) Name() string       { return i.name }
func (i stagedInfo) Size() int64        { return i.size }
func (i stagedInfo) Mode() fs.FileMode  { return i.mode }
func (i stagedInfo) ModTime() time.Time { return time.Time{} }
func (i stagedInfo) IsDir() bool        { return i.mode.IsDir() }
func (i stagedInfo) Sys() any           { return nil }

type stagedFile struct {
	info fs.FileInfo
	*bytes.Reader
}

func (f *stagedFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *stagedFile) Close() error               { return nil }

type stagedDir struct {
	info fs.FileInfo
	ents []fs.DirEntry
}

func (d *stagedDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *stagedDir) Close() error               { return nil }
func (d *stagedDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.Name(), Err: errors.New("is a directory")}
}

// ReadDir follows fs.ReadDirFile: n <= 0 returns the rest at once.
func (d *stagedDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if n <= 0 {
		rest := d.ents
		d.ents = nil
		return rest, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.ents))
	out := d.ents[:n:n]
	d.ents = d.ents[n:]
	return out, nil
}

// Without returns tree less the names hidden reports, and what is below
// them.
func Without(tree fs.FS, hidden func(name string) bool) fs.FS {
	return &filteredFS{tree: tree, hidden: hidden}
}

// filteredFS is tree without the names hidden reports (nor what is below
// them).
type filteredFS struct {
	tree   fs.FS
	hidden func(name string) bool
}

func (f *filteredFS) check(op, name string) error {
	if !fs.ValidPath(name) {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name != "." && f.hidden(name) {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return nil
}

func (f *filteredFS) Stat(name string) (fs.FileInfo, error) {
	if err := f.check("stat", name); err != nil {
		return nil, err
	}
	return fs.Stat(f.tree, name)
}

func (f *filteredFS) ReadFile(name string) ([]byte, error) {
	if err := f.check("read", name); err != nil {
		return nil, err
	}
	return fs.ReadFile(f.tree, name)
}

func (f *filteredFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := f.check("readdir", name); err != nil {
		return nil, err
	}
	ents, err := fs.ReadDir(f.tree, name)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ents, func(e fs.DirEntry) bool { return f.hidden(path.Join(name, e.Name())) }), nil
}

func (f *filteredFS) Open(name string) (fs.File, error) {
	if err := f.check("open", name); err != nil {
		return nil, err
	}
	file, err := f.tree.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := file.Stat()
	if err != nil || !fi.IsDir() {
		return file, err
	}
	_ = file.Close()
	ents, err := f.ReadDir(name)
	if err != nil {
		return nil, err
	}
	return &stagedDir{info: fi, ents: ents}, nil
}
