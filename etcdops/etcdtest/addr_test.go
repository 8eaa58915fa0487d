package etcdtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackagesHaveOwnRanges: every package of this checkout whose tests
// start clusters serves on a loopback range of its own.
func TestPackagesHaveOwnRanges(t *testing.T) {
	root := ModuleRoot(t)
	owner := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), "etcdtest.") {
			return err
		}
		dir := filepath.Dir(path)
		prefix := strings.TrimSuffix(addrIn(dir, 0), ".0")
		if other, ok := owner[prefix]; ok && other != dir {
			t.Errorf("%s and %s share %s.x", other, dir, prefix)
		}
		owner[prefix] = dir
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(owner) < 5 {
		t.Errorf("only %d packages start clusters: %v", len(owner), owner)
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Hosts(2), "etcd01="+addrIn(here, 11)+",etcd02="+addrIn(here, 12); got != want {
		t.Errorf("Hosts(2) = %s, want %s", got, want)
	}
}
