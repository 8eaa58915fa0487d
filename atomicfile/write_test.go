package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// names lists a folder's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestWriteFilesModeAndContent: every file has its data and exactly its
// mode whatever the umask, replaces what was there, and no temp file stays.
func TestWriteFilesModeAndContent(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.crt"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Path: filepath.Join(dir, "a.crt"), Data: []byte("cert"), Mode: 0o644},
		{Path: filepath.Join(dir, "a.key"), Data: []byte("key"), Mode: 0o600},
		{Path: filepath.Join(dir, "run.sh"), Data: []byte("#!/bin/sh"), Mode: 0o755},
	}
	if err := WriteFiles(files); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s: %q, want %q", f.Path, got, f.Data)
		}
		if m := mode(t, f.Path); m != f.Mode {
			t.Errorf("%s: mode %o, want %o", f.Path, m, f.Mode)
		}
	}
	if got, want := names(t, dir), []string{"a.crt", "a.key", "run.sh"}; !slices.Equal(got, want) {
		t.Errorf("folder holds %v, want %v", got, want)
	}
	// One file goes its own way (synced alone).
	one := filepath.Join(dir, "one")
	if err := WriteFile(one, []byte("1"), 0o640); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, one); m != 0o640 {
		t.Errorf("one: mode %o, want 640", m)
	}
}

// TestWriteFilesFailureLeavesNothing: a batch with a file that cannot be
// written renames nothing and leaves no temp file in the folders that could.
func TestWriteFilesFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFiles([]File{
		{Path: good, Data: []byte("new"), Mode: 0o644},
		{Path: filepath.Join(dir, "missing", "bad"), Data: []byte("x"), Mode: 0o644},
	})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "missing", "bad")) {
		t.Fatalf("err = %v, want one naming the file that failed", err)
	}
	if b, _ := os.ReadFile(good); string(b) != "old" {
		t.Errorf("good = %q, want it untouched", b)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"good"}) {
		t.Errorf("folder holds %v, want only good", got)
	}
}

// TestFirstErrorCounts: a disk that fails every file says so in one line.
func TestFirstErrorCounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	err := WriteFiles([]File{
		{Path: filepath.Join(dir, "a"), Mode: 0o644},
		{Path: filepath.Join(dir, "b"), Mode: 0o644},
		{Path: filepath.Join(dir, "c"), Mode: 0o644},
	})
	if err == nil || !strings.Contains(err.Error(), "(and 2 more files)") {
		t.Fatalf("err = %v, want the count of the other failures", err)
	}
}

// TestStageDiscard: staged temp files are recognised by IsTemp and go with
// Discard, leaving the targets as they were; Commit puts them in place.
func TestStageDiscard(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "ca.key")
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []File{{Path: target, Data: []byte("new"), Mode: 0o600}, {Path: filepath.Join(dir, "x"), Mode: 0o644}}
	s, err := Stage(files)
	if err != nil {
		t.Fatal(err)
	}
	temps := 0
	for _, n := range names(t, dir) {
		if IsTemp(n) {
			temps++
		}
	}
	if temps != 2 {
		t.Fatalf("%d temp files staged, want 2: %v", temps, names(t, dir))
	}
	s.Discard()
	if got := names(t, dir); !slices.Equal(got, []string{"ca.key"}) {
		t.Errorf("after Discard the folder holds %v", got)
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Errorf("ca.key = %q after Discard", b)
	}
	s, err = Stage(files)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Errorf("ca.key = %q after Commit", b)
	}
}

// TestIsTemp: the names WriteFiles uses are temp files, others are not.
func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".ca.key.tmp-123": true,
		".etcd.yaml.tmp-": true,
		"ca.key.tmp-1":    false,
		".hidden":         false,
		"ca.key":          false,
	} {
		if got := IsTemp(name); got != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestMkdirAll: new folders get exactly the mode whatever the umask and are
// returned outermost first; existing ones keep theirs; a file is refused.
func TestMkdirAll(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	root := t.TempDir()
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(root, "a", "b", "c")
	created, err := MkdirAll(deep, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b"), deep}
	if !slices.Equal(created, want) {
		t.Errorf("created %v, want %v", created, want)
	}
	for _, d := range want {
		if m := mode(t, d); m != 0o755 {
			t.Errorf("%s: mode %o, want 755", d, m)
		}
	}
	if m := mode(t, root); m != 0o711 {
		t.Errorf("existing folder's mode changed to %o", m)
	}
	if created, err := MkdirAll(deep, 0o700); err != nil || created != nil {
		t.Errorf("again: %v, %v; want nothing created", created, err)
	}
	file := filepath.Join(root, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MkdirAll(filepath.Join(file, "x"), 0o755); err == nil {
		t.Error("a folder under a file was made")
	}
}

// TestWriteFileFromChecked: a refused check or a failing reader leaves the
// target as it was and no temp file; an accepted one writes it with its mode.
func TestWriteFileFromChecked(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "snap.db")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("damaged")
	var seen string
	err := WriteFileFromChecked(dst, strings.NewReader("new data"), 0o600, func(tmp string) error {
		b, err := os.ReadFile(tmp)
		if err != nil {
			return err
		}
		seen = string(b)
		return refuse
	})
	if !errors.Is(err, refuse) {
		t.Fatalf("err = %v, want the check's", err)
	}
	if seen != "new data" {
		t.Errorf("the check read %q, want the whole data", seen)
	}
	failing := io.MultiReader(strings.NewReader("part"), iotestErr{})
	if err := WriteFileFrom(dst, failing, 0o600); err == nil {
		t.Fatal("a failing reader was accepted")
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Errorf("dst = %q, want it untouched", b)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"snap.db"}) {
		t.Errorf("folder holds %v", got)
	}
	if err := WriteFileFromChecked(dst, strings.NewReader("new"), 0o640, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "new" {
		t.Errorf("dst = %q", b)
	}
	if m := mode(t, dst); m != 0o640 {
		t.Errorf("mode %o, want 640", m)
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("read failed") }

// TestCommitDir: a filled temp folder is put in place whole; an existing
// target is refused and left alone.
func TestCommitDir(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "member")
	tmp, err := TempDir(target)
	if err != nil {
		t.Fatal(err)
	}
	if !IsTemp(filepath.Base(tmp)) {
		t.Errorf("%s is not named as a temp folder", tmp)
	}
	if m := mode(t, tmp); m != 0o700 {
		t.Errorf("temp folder mode %o, want 700", m)
	}
	if err := os.WriteFile(filepath.Join(tmp, "db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CommitDir(tmp, target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "db")); err != nil {
		t.Error(err)
	}
	tmp2, err := TempDir(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := CommitDir(tmp2, target); !errors.Is(err, os.ErrExist) {
		t.Errorf("err = %v, want ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(target, "db")); err != nil {
		t.Error("the existing folder was touched:", err)
	}
}
