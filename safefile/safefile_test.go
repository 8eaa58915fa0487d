package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 1025), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		path  string
		limit int64
		want  string // data, or the error's text
	}{
		{small, 5, "hello"},
		{link, 5, "hello"}, // inputs may be links
		{small, 4, small + ": larger than 4 bytes"},
		{big, 1024, big + ": larger than 1 KiB"},
		{fifo, 1024, fifo + ": not a regular file"},
		{dir, 1024, dir + ": not a regular file"},
		{"/dev/zero", MaxInput, "/dev/zero: not a regular file"},
		{"/dev/urandom", MaxInput, "/dev/urandom: not a regular file"},
	} {
		b, err := ReadFile(tc.path, tc.limit)
		got := string(b)
		if err != nil {
			got = err.Error()
			var e *Error
			if !errors.As(err, &e) || !badinput.Is(err) {
				t.Errorf("%s: %v is not bad input", tc.path, err)
			}
		}
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("ReadFile(%s, %d) = %q, want %q", tc.path, tc.limit, got, tc.want)
		}
	}
	if _, err := Read(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	// /proc files say they are empty: the limit still holds.
	if b, err := ReadFile("/proc/self/status", MaxInput); err != nil || len(b) == 0 {
		t.Errorf("/proc/self/status: %d bytes, %v", len(b), err)
	}
	if _, err := ReadFile("/proc/self/status", 16); err == nil {
		t.Error("/proc/self/status read past a 16-byte limit")
	}
}

func TestOpenStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(path, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, fi, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi.Size() != 3<<20 {
		t.Errorf("size %d", fi.Size())
	}
	n, err := f.Read(make([]byte, 4096))
	if n != 4096 || err != nil {
		t.Errorf("read %d, %v", n, err)
	}
}

func TestBeneath(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root + "/etc/kubernetes", root + "/run", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	symlink("/run", root+"/abs")                 // absolute, out of root
	symlink("run", root+"/inside")               // relative, stays inside
	symlink("../outside", root+"/up")            // relative, out of root
	symlink(outside, root+"/etc/kubernetes/pki") // deep in the tree
	symlink(root+"/nowhere", root+"/dangling")   // leads nowhere
	symlink(root, base+"/rootlink")              // root itself a link
	if err := os.WriteFile(root+"/file", nil, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		root, dir string
		want      string // "" for fine
	}{
		{root, root, ""},
		{root, root + "/etc/kubernetes/manifests", ""},
		{root, root + "/new/folder", ""},
		{root, root + "/inside/x", ""},
		{root, root + "/file/x", ""}, // the write itself fails
		{base + "/rootlink", base + "/rootlink/etc/kubernetes", ""},
		{base + "/rootlink", base + "/rootlink/inside", ""},
		{filepath.Join(base, "missing"), filepath.Join(base, "missing/a/b"), ""},
		{root, root + "/abs/x", root + "/abs: a symbolic link to /run, outside " + root},
		{root, root + "/up", root + "/up: a symbolic link to ../outside, outside " + root},
		{root, root + "/etc/kubernetes/pki/etcd", root + "/etc/kubernetes/pki: a symbolic link to " + outside + ", outside " + root},
		{root, root + "/dangling/x", root + "/dangling: a symbolic link to " + root + "/nowhere, which does not resolve"},
		{base + "/rootlink", base + "/rootlink/up", base + "/rootlink/up: a symbolic link to ../outside, outside " + base + "/rootlink"},
		// On a node: / holds links such as /var/run -> /run; inside / they are fine.
		{"/", "/proc/self/fd", ""},
	} {
		err := Beneath(tc.root, tc.dir)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Beneath(%s, %s): %v", tc.root, tc.dir, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("Beneath(%s, %s) = %v, want %q", tc.root, tc.dir, err, tc.want)
		case tc.want != "":
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("%v is not bad input", err)
			}
		}
	}
	symlink(filepath.Join(base, "nowhere"), base+"/danglingroot")
	if err := Beneath(base+"/danglingroot", base+"/danglingroot/a"); err == nil || err.Error() != base+"/danglingroot: a symbolic link to "+base+"/nowhere, which does not resolve" {
		t.Errorf("dangling root: %v", err)
	}
	if err := Beneath(root, outside); err == nil {
		t.Error("a folder outside root passed")
	}
	// Many folders at once; the first bad one is reported.
	if err := Beneath(root, root+"/etc", root+"/up/x", root+"/abs"); err == nil || !strings.Contains(err.Error(), "/up:") {
		t.Errorf("several folders: %v", err)
	}
}

// TestReason: a path error gives its reason alone, anything else is kept.
func TestReason(t *testing.T) {
	_, err := os.Stat(filepath.Join(t.TempDir(), "missing"))
	if got := Reason(err); got != fs.ErrNotExist && !errors.Is(got, fs.ErrNotExist) || strings.Contains(got.Error(), "missing") {
		t.Errorf("Reason(%v) = %v, want the reason without the path", err, got)
	}
	plain := errors.New("plain")
	if got := Reason(plain); got != plain {
		t.Errorf("Reason(plain) = %v", got)
	}
	if got := Reason(fmt.Errorf("wrapped: %w", &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrPermission})); got != fs.ErrPermission {
		t.Errorf("Reason(wrapped) = %v, want the inner reason", got)
	}
}
