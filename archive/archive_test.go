package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

type node struct {
	name string // slash-separated, relative to the root
	mode fs.FileMode
	dir  bool
	data string
}

// A bundle like the ones the tool ships: public files 0644, keys 0600,
// folders 0755 and a private one 0700.
var tree = []node{
	{name: "etc", mode: 0o755, dir: true},
	{name: "etc/kubernetes", mode: 0o755, dir: true},
	{name: "etc/kubernetes/manifests", mode: 0o755, dir: true},
	{name: "etc/kubernetes/manifests/etcd.yaml", mode: 0o600, data: "apiVersion: v1\nkind: Pod\n"},
	{name: "etc/kubernetes/pki", mode: 0o755, dir: true},
	{name: "etc/kubernetes/pki/apiserver-etcd-client.crt", mode: 0o644, data: "cert\n"},
	{name: "etc/kubernetes/pki/apiserver-etcd-client.key", mode: 0o600, data: "key\n"},
	{name: "etc/kubernetes/pki/etcd", mode: 0o700, dir: true},
	{name: "etc/kubernetes/pki/etcd/ca.crt", mode: 0o644, data: "ca\n"},
	{name: "etc/kubernetes/pki/etcd/peer.key", mode: 0o600, data: "peer key\n"},
	{name: "etc/kubernetes/pki/etcd/server.crt", mode: 0o644, data: strings.Repeat("server cert\n", 500)},
	{name: "etc/kubernetes/pki/etcd-empty.crt", mode: 0o644, data: ""},
	{name: "etc/systemd", mode: 0o755, dir: true},
	{name: "etc/systemd/system", mode: 0o755, dir: true},
	{name: "etc/systemd/system/kubelet.service.d", mode: 0o755, dir: true},
	{name: "etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf", mode: 0o644, data: "[Service]\n"},
}

// By name within each folder, a folder before its content: "etcd/" and all
// it holds come before "etcd-empty.crt", although a plain sort of the full
// paths would put "etcd-" first ('-' < '/').
var wantOrder = []string{
	"etc/",
	"etc/kubernetes/",
	"etc/kubernetes/manifests/",
	"etc/kubernetes/manifests/etcd.yaml",
	"etc/kubernetes/pki/",
	"etc/kubernetes/pki/apiserver-etcd-client.crt",
	"etc/kubernetes/pki/apiserver-etcd-client.key",
	"etc/kubernetes/pki/etcd/",
	"etc/kubernetes/pki/etcd/ca.crt",
	"etc/kubernetes/pki/etcd/peer.key",
	"etc/kubernetes/pki/etcd/server.crt",
	"etc/kubernetes/pki/etcd-empty.crt",
	"etc/systemd/",
	"etc/systemd/system/",
	"etc/systemd/system/kubelet.service.d/",
	"etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf",
}

// withUmask runs f under umask m; the umask is process-wide, so these tests
// do not run in parallel.
func withUmask(t *testing.T, m int, f func()) {
	t.Helper()
	old := syscall.Umask(m)
	defer syscall.Umask(old)
	f()
}

// build creates the tree with plain os calls, so the umask applies as it
// would to any program staging the files; it returns each entry's mode as it
// ended up on disk.
func build(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	onDisk := map[string]fs.FileMode{}
	for _, n := range tree {
		p := filepath.Join(root, filepath.FromSlash(n.name))
		var err error
		if n.dir {
			err = os.Mkdir(p, n.mode)
		} else {
			err = os.WriteFile(p, []byte(n.data), n.mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range tree {
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(n.name)))
		if err != nil {
			t.Fatal(err)
		}
		onDisk[n.name] = fi.Mode().Perm()
	}
	return onDisk
}

func readArchive(t *testing.T, path string) []Entry {
	t.Helper()
	entries, err := ReadTarGz(path)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestWriteTarGz(t *testing.T) {
	for _, tc := range []struct {
		name  string
		umask int
	}{{"umask 0", 0}, {"umask 022", 0o022}, {"umask 077", 0o077}} {
		t.Run(tc.name, func(t *testing.T) {
			withUmask(t, tc.umask, func() { testWriteTarGz(t, tc.umask) })
		})
	}
}

func testWriteTarGz(t *testing.T, umask int) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "etcd02")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	onDisk := build(t, src)
	if umask == 0 || umask == 0o022 {
		// Nothing in the tree asks for a bit these masks clear.
		for _, n := range tree {
			if onDisk[n.name] != n.mode {
				t.Fatalf("%s: mode on disk %v, want %v", n.name, onDisk[n.name], n.mode)
			}
		}
	}

	dst := filepath.Join(tmp, "etcd02.tar.gz")
	if err := WriteTarGz(src, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600 whatever the umask", fi.Mode().Perm())
	}
	assertNoTemp(t, tmp)

	entries := readArchive(t, dst)
	var names []string
	for _, e := range entries {
		names = append(names, e.Header.Name)
	}
	if strings.Join(names, "\n") != strings.Join(wantOrder, "\n") {
		t.Fatalf("entries:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(wantOrder, "\n"))
	}
	byName := map[string]node{}
	for _, n := range tree {
		byName[n.name] = n
	}
	for _, e := range entries {
		h := e.Header
		n := byName[strings.TrimSuffix(h.Name, "/")]
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
			t.Errorf("%s: owner %d:%d %s:%s, want 0:0 root:root", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if got, want := fs.FileMode(h.Mode), onDisk[n.name]; got != want {
			t.Errorf("%s: mode %v, want %v as on disk", h.Name, got, want)
		}
		if !h.ModTime.Equal(time.Unix(modTimeUnix, 0)) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
		if n.dir {
			if h.Typeflag != tar.TypeDir || !strings.HasSuffix(h.Name, "/") {
				t.Errorf("%s: type %q, want a folder", h.Name, h.Typeflag)
			}
		} else {
			if h.Typeflag != tar.TypeReg {
				t.Errorf("%s: type %q, want a regular file", h.Name, h.Typeflag)
			}
			if string(e.Data) != n.data {
				t.Errorf("%s: content %q, want %q", h.Name, e.Data, n.data)
			}
		}
	}
}

func TestWriteTarGzReproducible(t *testing.T) {
	tmp := t.TempDir()
	a := filepath.Join(tmp, "a")
	b := filepath.Join(tmp, "b", "other-name")
	for _, d := range []string{a, b} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		build(t, d)
	}
	// Different time stamps on disk must not matter.
	old := time.Date(2011, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(b, "etc", "kubernetes", "pki", "etcd", "ca.crt"), old, old); err != nil {
		t.Fatal(err)
	}
	out := func(src, name string) []byte {
		t.Helper()
		dst := filepath.Join(tmp, name)
		if err := WriteTarGz(src, dst); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	first := out(a, "1.tar.gz")
	if second := out(a, "2.tar.gz"); !bytes.Equal(first, second) {
		t.Error("two runs over the same tree differ")
	}
	if third := out(b, "3.tar.gz"); !bytes.Equal(first, third) {
		t.Error("the same tree at another path with other time stamps differs")
	}
	// Overwriting an existing archive works and stays identical.
	if again := out(a, "1.tar.gz"); !bytes.Equal(first, again) {
		t.Error("rewriting the archive changed it")
	}
}

func TestWriteTarGzSystemTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar on PATH")
	}
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	var onDisk map[string]fs.FileMode
	withUmask(t, 0, func() { onDisk = build(t, src) })
	dst := filepath.Join(tmp, "etcd02.tar.gz")
	if err := WriteTarGz(src, dst); err != nil {
		t.Fatal(err)
	}

	lister := exec.Command("tar", "-tvzf", dst)
	lister.Env = append(os.Environ(), "TZ=UTC") // tar -tv prints local time
	list, err := lister.CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tvzf: %v\n%s", err, list)
	}
	lines := strings.Split(strings.TrimSpace(string(list)), "\n")
	if len(lines) != len(wantOrder) {
		t.Fatalf("tar lists %d entries, want %d:\n%s", len(lines), len(wantOrder), list)
	}
	for i, l := range lines {
		if !strings.Contains(l, " root/root ") || !strings.HasSuffix(l, " "+wantOrder[i]) {
			t.Errorf("tar -tv line %q: want root/root and %s", l, wantOrder[i])
		}
		if !strings.Contains(l, " 2000-01-01 ") {
			t.Errorf("tar -tv line %q: want the fixed date", l)
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("extraction check needs root: tar keeps owners and exact modes only for root")
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// Extract under a restrictive umask: as root, tar must still restore the
	// recorded modes.
	cmd := exec.Command("sh", "-c", `umask 077 && exec tar -C "$1" -xzf "$2"`, "sh", out, dst)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, b)
	}
	for _, n := range tree {
		p := filepath.Join(out, filepath.FromSlash(n.name))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != onDisk[n.name] {
			t.Errorf("%s: extracted mode %v, want %v", n.name, fi.Mode().Perm(), onDisk[n.name])
		}
		if fi.IsDir() != n.dir {
			t.Errorf("%s: folder %v, want %v", n.name, fi.IsDir(), n.dir)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: owner %d:%d", n.name, st.Uid, st.Gid)
		}
		if !n.dir {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != n.data {
				t.Errorf("%s: extracted content differs", n.name)
			}
		}
	}
	// The root of the extraction is not an entry, so its mode is untouched.
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("extraction root mode changed: %v %v", fi.Mode(), err)
	}
}

func TestWriteTarGzRejects(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		make       func(t *testing.T, dir string) string // returns the bad path
	}{
		{"symlink", "a symbolic link", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "etc", "link")
			if err := os.Symlink("/etc/passwd", p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"symlink to folder", "a symbolic link", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "etc", "dirlink")
			if err := os.Symlink(dir, p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"named pipe", "a named pipe", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "etc", "fifo")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"socket", "a socket", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "etc", "sock")
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Skip(err)
			}
			t.Cleanup(func() { l.Close() })
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			src := filepath.Join(tmp, "src")
			if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			bad := tc.make(t, src)
			dst := filepath.Join(tmp, "x.tar.gz")
			err := WriteTarGz(src, dst)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s as %s", err, bad, tc.want)
			}
			if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("archive written despite the error: %v", err)
			}
			assertNoTemp(t, tmp)
		})
	}
}

func TestWriteTarGzErrors(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("missing source", func(t *testing.T) {
		err := WriteTarGz(filepath.Join(tmp, "nope"), filepath.Join(tmp, "x.tar.gz"))
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("source is a file", func(t *testing.T) {
		err := WriteTarGz(filepath.Join(src, "etc", "f"), filepath.Join(tmp, "x.tar.gz"))
		if err == nil || !strings.Contains(err.Error(), "not a folder") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("destination inside source", func(t *testing.T) {
		err := WriteTarGz(src, filepath.Join(src, "etc", "x.tar.gz"))
		if err == nil || !strings.Contains(err.Error(), "inside") {
			t.Errorf("error %v", err)
		}
		assertNoTemp(t, filepath.Join(src, "etc"))
	})
	t.Run("destination is a folder", func(t *testing.T) {
		out := filepath.Join(tmp, "out")
		dst := filepath.Join(out, "x.tar.gz")
		if err := os.MkdirAll(filepath.Join(dst, "child"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := WriteTarGz(src, dst)
		if err == nil || !strings.Contains(err.Error(), dst) {
			t.Errorf("error %v", err)
		}
		assertNoTemp(t, out)
	})
	t.Run("destination folder missing", func(t *testing.T) {
		dst := filepath.Join(tmp, "missing", "x.tar.gz")
		if err := WriteTarGz(src, dst); err == nil {
			t.Error("no error")
		}
	})
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temp file left behind: %s", filepath.Join(dir, e.Name()))
		}
	}
}

func TestWriteSHA256Sums(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"etcd02.tar.gz":   "two",
		"etcd01.tar.gz":   "one",
		"control-plane/x": "cp",
		"with space.txt":  "space",
	}
	if err := os.Mkdir(filepath.Join(dir, "control-plane"), 0o755); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n, d := range files {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(n)), []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	withUmask(t, 0o077, func() {
		if err := WriteSHA256Sums(dir, names); err != nil {
			t.Fatal(err)
		}
	})
	path := filepath.Join(dir, "SHA256SUMS")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	wantNames := []string{"control-plane/x", "etcd01.tar.gz", "etcd02.tar.gz", "with space.txt"}
	if len(lines) != len(wantNames) {
		t.Fatalf("SHA256SUMS:\n%s", got)
	}
	for i, l := range lines {
		hexPart, name, ok := strings.Cut(l, "  ")
		if !ok || len(hexPart) != 64 || name != wantNames[i] {
			t.Errorf("line %q: want <64 hex>  %s", l, wantNames[i])
		}
	}
	// sha256 of "one", a fixed point the format can be checked against.
	if !strings.Contains(string(got), "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed  etcd01.tar.gz\n") {
		t.Errorf("wrong digest for etcd01.tar.gz:\n%s", got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("SHA256SUMS mode %v, want 0644", fi.Mode().Perm())
	}
	assertNoTemp(t, dir)

	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("no sha256sum on PATH")
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
	// And it notices a change.
	if err := os.WriteFile(filepath.Join(dir, "etcd02.tar.gz"), []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("sha256sum -c passed after a change:\n%s", b)
	}
}

func TestWriteSHA256SumsErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"missing file", []string{"a", "gone.tar.gz"}, "gone.tar.gz"},
		{"twice", []string{"a", "a"}, `"a" listed twice`},
		{"empty name", []string{""}, "empty file name"},
		{"outside", []string{"../a"}, "inside the folder"},
		{"absolute", []string{"/etc/passwd"}, "inside the folder"},
		{"newline", []string{"a\nb"}, "line breaks"},
		{"backslash", []string{`a\b`}, "backslashes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteSHA256Sums(dir, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Lstat(filepath.Join(dir, "SHA256SUMS")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("SHA256SUMS written despite the error")
			}
			assertNoTemp(t, dir)
		})
	}
}

// TestWriteTarGzSkipsTempAndLockFiles: temp files (a write under way, or
// part of a key a killed run left), temp folders and the lock file never
// ship: the archive is the same as for the tree without them.
func TestWriteTarGzSkipsTempAndLockFiles(t *testing.T) {
	tmp := t.TempDir()
	clean, dirty := filepath.Join(tmp, "clean"), filepath.Join(tmp, "dirty")
	for _, d := range []string{clean, dirty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		build(t, d)
	}
	for name, data := range map[string]string{
		"etc/kubernetes/pki/etcd/.peer.key.tmp-4242":           "half a key",
		"etc/kubernetes/pki/etcd/.ca.key.tmp-17":               "-----BEGIN EC PRIVATE KEY-----",
		"etc/kubernetes/.etcd-staticpod.lock":                  "1234\n",
		"etc/.etcd.restore-ab12.tmp-99/member/snap/db":         "data",
		"etc/systemd/system/kubelet.service.d/.x.conf.tmp-1/a": "x",
	} {
		p := filepath.Join(dirty, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteTarGz(clean, filepath.Join(tmp, "clean.tar.gz")); err != nil {
		t.Fatal(err)
	}
	if err := WriteTarGz(dirty, filepath.Join(tmp, "dirty.tar.gz")); err != nil {
		t.Fatal(err)
	}
	for _, e := range readArchive(t, filepath.Join(tmp, "dirty.tar.gz")) {
		if strings.Contains(e.Header.Name, ".tmp-") || strings.Contains(e.Header.Name, ".lock") {
			t.Errorf("archive holds %s", e.Header.Name)
		}
	}
	a, _ := os.ReadFile(filepath.Join(tmp, "clean.tar.gz"))
	b, _ := os.ReadFile(filepath.Join(tmp, "dirty.tar.gz"))
	if !bytes.Equal(a, b) {
		t.Error("the archive of the tree with temp files differs from the one without")
	}
}

// TestUpdateSHA256Sums: a file added joins the list once, files listed
// that are gone leave it, and every digest is from the file as it is now.
func TestUpdateSHA256Sums(t *testing.T) {
	dir := t.TempDir()
	for n, d := range map[string]string{"etcd01.tar.gz": "one", "etcd02.tar.gz": "two", "etcd03.tar.gz": "three"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteSHA256Sums(dir, []string{"etcd01.tar.gz", "etcd02.tar.gz"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "etcd02.tar.gz")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etcd01.tar.gz"), []byte("one again"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := UpdateSHA256Sums(dir, "etcd03.tar.gz", "etcd01.tar.gz"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSuffix(string(got), "\n"), "\n") {
		_, name, _ := strings.Cut(l, "  ")
		names = append(names, name)
	}
	if want := []string{"etcd01.tar.gz", "etcd03.tar.gz"}; !slices.Equal(names, want) {
		t.Errorf("SHA256SUMS lists %v, want %v", names, want)
	}
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("no sha256sum on PATH")
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
}

// TestCopyCommand: the archive goes to /tmp on the host by scp (an IPv6
// address in brackets there) and is unpacked by ssh (the address bare),
// every word quoted for the shell.
func TestCopyCommand(t *testing.T) {
	for _, tc := range []struct{ local, address, want string }{
		{"etcd-bundles/etcd02.tar.gz", "10.107.88.16",
			"scp etcd-bundles/etcd02.tar.gz root@10.107.88.16:/tmp/ && ssh root@10.107.88.16 'tar --no-overwrite-dir -C / -xzf /tmp/etcd02.tar.gz && rm /tmp/etcd02.tar.gz && systemctl daemon-reload && systemctl restart kubelet'"},
		{"my bundles/etcd01.tar.gz", "2001:db8::11",
			"scp 'my bundles/etcd01.tar.gz' 'root@[2001:db8::11]:/tmp/' && ssh root@2001:db8::11 'tar --no-overwrite-dir -C / -xzf /tmp/etcd01.tar.gz && rm /tmp/etcd01.tar.gz && systemctl daemon-reload && systemctl restart kubelet'"},
	} {
		if got := CopyCommand(tc.local, tc.address, "systemctl restart kubelet"); got != tc.want {
			t.Errorf("CopyCommand(%q, %q) =\n%s\nwant\n%s", tc.local, tc.address, got, tc.want)
		}
	}
}
