package snapshot

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestDirNames: a save within the same second gets the next suffix, and
// the listing orders by time, then suffix (lexically "-2.db" sorts before
// ".db"), leaving other files out.
func TestDirNames(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 30, 23, 59, 59, 900e6, time.FixedZone("CET", 3600))
	var got []string
	for range 3 {
		p, err := reserve(dir, at.UTC())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(p))
	}
	p, err := reserve(dir, at.Add(time.Second).UTC())
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, filepath.Base(p))
	want := []string{"etcd-snapshot-20261130T225959Z.db", "etcd-snapshot-20261130T225959Z-2.db", "etcd-snapshot-20261130T225959Z-3.db", "etcd-snapshot-20261130T230000Z.db"}
	if !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	for _, other := range []string{"etcd-snapshot-latest.db", "notes.txt", "etcd-snapshot-20261130T225959Z.db.bak"} {
		if err := os.WriteFile(filepath.Join(dir, other), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "etcd-snapshot-20991231T000000Z.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := listSnapshots(dir)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, f := range files {
		listed = append(listed, f.name)
	}
	slices.Reverse(want)
	if !slices.Equal(listed, want) {
		t.Errorf("listed %v, want newest first %v", listed, want)
	}
	// --keep removed the second's first snapshot: the next one still
	// sorts after the rest of that second.
	if err := os.Remove(filepath.Join(dir, "etcd-snapshot-20261130T225959Z.db")); err != nil {
		t.Fatal(err)
	}
	if p, err := reserve(dir, at.UTC()); err != nil || filepath.Base(p) != "etcd-snapshot-20261130T225959Z-4.db" {
		t.Errorf("after the first of the second was removed: %q (%v), want etcd-snapshot-20261130T225959Z-4.db", p, err)
	}
	if err := CheckDir(filepath.Join(dir, "notes.txt"), 3); err == nil {
		t.Error("a file as --dir was accepted")
	}
	if err := CheckDir(dir, -1); err == nil {
		t.Error("a negative --keep was accepted")
	}
}
