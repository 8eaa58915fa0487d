package phases

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

// TestWithoutEtcdData: the filtered view is a consistent fs.FS without the
// data folder's content and its siblings.
func TestWithoutEtcdData(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"etc/kubernetes/manifests/etcd.yaml", "var/lib/etcd/member/snap/db", "var/lib/etcd.restore-x/member/snap/db", "var/lib/kubelet/config.yaml"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewRunner(Options{Cluster: guideCluster(t), Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	view, hidden := r.withoutEtcdData(os.DirFS(dir))
	if err := fstest.TestFS(view, "etc/kubernetes/manifests/etcd.yaml", "var/lib/etcd", "var/lib/kubelet/config.yaml"); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"var/lib/etcd/member", "var/lib/etcd/member/snap/db", "var/lib/etcd.restore-x"} {
		if !hidden(name) {
			t.Errorf("%s is not hidden", name)
		}
		if _, err := fs.Stat(view, name); !os.IsNotExist(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if ents, err := fs.ReadDir(view, "var/lib/etcd"); err != nil || len(ents) != 0 {
		t.Errorf("the data folder lists %v, %v", ents, err)
	}
}
