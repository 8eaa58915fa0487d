package workflow

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

// TestStagedView: the folder as the run will leave it, before anything is
// written: disk files, files queued over them, and folders planned for the
// queued files with the modes flush will give them. Writing the queue must
// then produce exactly that view.
func TestStagedView(t *testing.T) {
	root := filepath.Join(t.TempDir(), "host")
	for _, d := range []string{"etc/kubernetes/pki", "var/lib/etcd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		"etc/kubernetes/pki/old.crt":      "disk only",
		"etc/kubernetes/pki/shadowed.crt": "old",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := NewQueue(QueueOptions{Out: filepath.Dir(root)})
	queue := []struct {
		name          string
		data          string
		mode, dirMode os.FileMode
	}{
		{"etc/kubernetes/pki/shadowed.crt", "new", 0o600, 0o755},
		{"etc/kubernetes/manifests/etcd.yaml", "pod", 0o600, 0o700},
		{"etc/kubernetes/manifests/other.yaml", "second", 0o644, 0o755}, // the folder keeps 0700
		{"etc/systemd/system/kubelet.service.d/a.conf", "[Service]", 0o644, 0o755},
		{"etc/kubernetes/pki/shadowed.crt", "newest", 0o600, 0o755}, // the last one queued lands
	}
	for _, q := range queue {
		if err := r.WriteFile(filepath.Join(root, q.name), []byte(q.data), q.mode, q.dirMode); err != nil {
			t.Fatal(err)
		}
	}
	staged, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	view := staged.Dir(root)
	want := map[string]struct {
		data string
		mode fs.FileMode
	}{
		"etc/kubernetes/pki/old.crt":                  {"disk only", 0o644},
		"etc/kubernetes/pki/shadowed.crt":             {"newest", 0o600},
		"etc/kubernetes/manifests":                    {"", fs.ModeDir | 0o700},
		"etc/kubernetes/manifests/etcd.yaml":          {"pod", 0o600},
		"etc/kubernetes/manifests/other.yaml":         {"second", 0o644},
		"etc/systemd":                                 {"", fs.ModeDir | 0o755},
		"etc/systemd/system/kubelet.service.d":        {"", fs.ModeDir | 0o755},
		"etc/systemd/system/kubelet.service.d/a.conf": {"[Service]", 0o644},
		"var/lib/etcd":                                {"", fs.ModeDir | 0o755},
	}
	check := func(t *testing.T, fsys fs.FS) {
		t.Helper()
		var names []string
		for name, w := range want {
			names = append(names, name)
			fi, err := fs.Stat(fsys, name)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if fi.Mode() != w.mode {
				t.Errorf("%s: mode %v, want %v", name, fi.Mode(), w.mode)
			}
			if !fi.IsDir() {
				if b, err := fs.ReadFile(fsys, name); err != nil || string(b) != w.data {
					t.Errorf("%s: %q %v, want %q", name, b, err, w.data)
				}
			}
		}
		if err := fstest.TestFS(fsys, names...); err != nil {
			t.Error(err)
		}
	}
	t.Run("before", func(t *testing.T) { check(t, view) })
	if _, err := os.Stat(filepath.Join(root, "etc/systemd")); !os.IsNotExist(err) {
		t.Fatalf("the view wrote to disk: %v", err)
	}
	if err := r.commit(); err != nil {
		t.Fatal(err)
	}
	t.Run("written", func(t *testing.T) { check(t, os.DirFS(root)) })
}

// TestStagedViewOfNewFolder: a folder nothing on disk holds yet is all
// staged; one that neither exists nor is planned does not exist.
func TestStagedViewOfNewFolder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := NewQueue(QueueOptions{Out: out})
	if err := r.WriteFile(filepath.Join(out, "etcd01", "etc/a"), []byte("a"), 0o600, 0o755); err != nil {
		t.Fatal(err)
	}
	view, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(view.Dir(filepath.Join(out, "etcd01")), "etc/a"); err != nil {
		t.Error(err)
	}
	if _, err := fs.Stat(view.Dir(filepath.Join(out, "etcd02")), "."); !os.IsNotExist(err) {
		t.Errorf("a folder nobody makes: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the view wrote to disk: %v", err)
	}
}
