package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func touch(t *testing.T, root string, names ...string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(root, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestRemoveTemps: every temp file and temp folder under the folder goes,
// and nothing else.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	keep := []string{"pki/etcd/ca.key", "pki/etcd/ca.crt", "etcd01/etc/kubernetes/pki/etcd/peer.key", ".etcd-staticpod.lock", ".hidden", "a.tmp-1"}
	stale := []string{".SHA256SUMS.tmp-1", "pki/etcd/.ca.key.tmp-77", "etcd01/etc/kubernetes/pki/etcd/.peer.key.tmp-9", "etcd01/var/lib/.etcd.restore-ab.tmp-5/member/snap/db"}
	touch(t, dir, keep...)
	touch(t, dir, stale...)
	removed, err := RemoveTemps(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(stale) {
		t.Errorf("removed %v", removed)
	}
	for _, n := range keep {
		if !exists(filepath.Join(dir, n)) {
			t.Errorf("%s was removed", n)
		}
	}
	for _, n := range stale {
		if exists(filepath.Join(dir, n)) {
			t.Errorf("%s is left", n)
		}
	}
	if exists(filepath.Join(dir, "etcd01/var/lib/.etcd.restore-ab.tmp-5")) {
		t.Error("the temp folder is left")
	}
	if _, err := RemoveTemps(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("a missing folder: %v", err)
	}
}

// TestRemoveTempsOf: beside the files a run writes, only their own temp
// files go; other programs' files in a node's folders stay.
func TestRemoveTempsOf(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir, "manifests/.etcd.yaml.tmp-1", "manifests/.kube-apiserver.yaml.tmp-2", "pki/.ca.key.tmp-3", "pki/.server.key.tmp-4", "pki/server.key")
	removed, err := RemoveTempsOf([]string{filepath.Join(dir, "manifests/etcd.yaml"), filepath.Join(dir, "pki/server.key"), filepath.Join(dir, "none/x")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "manifests/.etcd.yaml.tmp-1"), filepath.Join(dir, "pki/.server.key.tmp-4")}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, n := range []string{"manifests/.kube-apiserver.yaml.tmp-2", "pki/.ca.key.tmp-3", "pki/server.key"} {
		if !exists(filepath.Join(dir, n)) {
			t.Errorf("%s was removed", n)
		}
	}
}
