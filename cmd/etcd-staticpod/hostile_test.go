package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// mounted runs fn on a fresh mount made by the mount arguments, as root.
func mounted(t *testing.T, mountArgs ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root")
		}
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	args := append(append([]string{}, mountArgs...), dir)
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v\n%s", args, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func runBinary(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestUnwritableOutput: a read-only folder is reported in one line and
// stays as it was.
func TestUnwritableOutput(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := mounted(t, "--bind", dir)
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", ro).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v\n%s", err, out)
	}
	before := treeHash(t, ro)
	// A new folder inside it, and the folder itself.
	for _, out := range []string{filepath.Join(ro, "bundles"), ro} {
		args := []string{"init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out}
		stdout, stderr, code := etcdtest.Exec(t, bin, args...)
		assertOneLine(t, args, stdout, stderr, code, `--out "`+out+`": `)
		if !strings.Contains(stderr, "read-only file system") {
			t.Errorf("%q: %s does not say why", args, stderr)
		}
	}
	if treeHash(t, ro) != before {
		t.Error("read-only folder changed")
	}
}

// TestFullDisk: when the disk fills up midway, the run fails and takes back
// everything it created.
func TestFullDisk(t *testing.T) {
	bin := binary(t)
	for _, size := range []string{"16k", "48k", "96k", "160k"} {
		t.Run(size, func(t *testing.T) {
			fs := mounted(t, "-t", "tmpfs", "-o", "size="+size, "tmpfs")
			stdout, stderr, code := etcdtest.Exec(t, bin, "init", "--hosts", threeHosts, "--out", filepath.Join(fs, "bundles"))
			if code == 0 {
				t.Skipf("%s was enough for a whole run", size)
			}
			// One line, after the rollback: no progress of a run that did
			// not happen.
			if code != exitFailure || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "no space left on device") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line", code, stdout, stderr)
			}
			entries, err := os.ReadDir(fs)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("left behind: %v\n%s", entries, stderr)
			}
		})
	}
}
