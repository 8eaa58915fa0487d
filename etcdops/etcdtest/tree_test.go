package etcdtest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestDiffTree: a changed mode, changed content, an added and a removed
// file are each reported; prefixes narrow the report.
func TestDiffTree(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("a/same", "x", 0o644)
	write("a/content", "x", 0o644)
	write("a/mode", "x", 0o644)
	write("b/removed", "x", 0o644)
	before := Tree(t, dir)
	if d := DiffTree(before, Tree(t, dir)); len(d) != 0 {
		t.Fatalf("no change, yet %v", d)
	}
	write("a/content", "y", 0o644)
	write("a/mode", "x", 0o600)
	write("b/added", "x", 0o644)
	if err := os.Remove(filepath.Join(dir, "b/removed")); err != nil {
		t.Fatal(err)
	}
	after := Tree(t, dir)
	if d, want := DiffTree(before, after), []string{"a/content", "a/mode", "b/added", "b/removed"}; !slices.Equal(d, want) {
		t.Errorf("DiffTree = %v, want %v", d, want)
	}
	if d, want := DiffTree(before, after, "a"), []string{"a/content", "a/mode"}; !slices.Equal(d, want) {
		t.Errorf("DiffTree under a = %v, want %v", d, want)
	}
}
