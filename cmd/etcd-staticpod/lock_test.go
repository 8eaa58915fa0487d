package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/dirlock"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// hold takes the lock on dir in the test process, as a running writer
// would, until the test ends or the returned func is called.
func hold(t *testing.T, dir string) func() {
	t.Helper()
	l, err := dirlock.Acquire(context.Background(), dir, dirlock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Release() })
	return func() { _ = l.Release() }
}

// lockLine is the one line a run refused by a held lock prints.
func lockLine(dir string, pid int) string {
	return "error: " + filepath.Join(dir, layout.LockFile) + " is held by PID " + strconv.Itoa(pid) +
		" (another etcd-staticpod run writing there); wait for it to end, or give --wait-lock DURATION to wait"
}

// TestLockRefusesEveryWritingCommand: while another process holds the
// folder, every command that writes into it (or, with --root, into the
// node's /etc/kubernetes) exits 1 at once with one line naming the lock
// file and the holder's PID, and changes nothing.
func TestLockRefusesEveryWritingCommand(t *testing.T) {
	bin := binary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	if o, code := runBinary(t, bin, "init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, o)
	}
	root := t.TempDir()
	if o, code := runBinary(t, bin, "init", "--out", out, "--node", "etcd01", "--root", root); code != 0 {
		t.Fatalf("init --root: exit %d\n%s", code, o)
	}
	spec := filepath.Join(out, "cluster.yaml")
	refused := func(t *testing.T, locked string, args ...string) {
		t.Helper()
		beforeOut, beforeRoot := treeHash(t, out), treeHash(t, root)
		start := time.Now()
		o, code := runBinary(t, bin, args...)
		if code != 1 || strings.Count(o, "\n") != 1 || lastLine(o) != lockLine(locked, os.Getpid()) {
			t.Errorf("%v: exit %d, want 1 and the lock line:\n%s", args, code, o)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%v: refusing took %v", args, took)
		}
		if treeHash(t, out) != beforeOut || treeHash(t, root) != beforeRoot {
			t.Errorf("%v changed the files while refused", args)
		}
	}
	t.Run("bundle folder", func(t *testing.T) {
		hold(t, out)
		for _, args := range [][]string{
			{"init", "--out", out},
			{"init", "--out", out, "--dry-run"},
			{"init", "phase", "certs", "all", "--out", out},
			{"init", "phase", "certs", "etcd-ca", "--out", out},
			{"init", "phase", "kubelet", "--out", out},
			{"init", "phase", "etcd", "local", "--out", out},
			{"init", "phase", "kubeadm-config", "--out", out},
			{"init", "phase", "bundle", "--out", out},
			{"certs", "renew", "all", "--out", out},
			{"certs", "renew", "etcd-server", "--out", out, "--node", "etcd02"},
			{"member", "add", "etcd04=10.107.88.18", "--out", out},
			{"member", "promote", "etcd03", "--out", out},
			{"member", "remove", "etcd03", "--out", out},
			{"snapshot", "restore", filepath.Join(t.TempDir(), "etcd.db"), "--out", out},
			{"upgrade", "--etcd-version", "3.6.16-0", "--out", out},
			{"upgrade", "--etcd-version", "3.6.16-0", "--out", out, "--dry-run"},
		} {
			refused(t, out, args...)
		}
	})
	t.Run("node root", func(t *testing.T) {
		node := filepath.Join(root, "etc/kubernetes")
		hold(t, node)
		for _, args := range [][]string{
			{"init", "--config", spec, "--node", "etcd01", "--root", root, "--out", out},
			{"init", "phase", "etcd", "local", "--config", spec, "--node", "etcd01", "--root", root},
			{"init", "phase", "kubelet", "--config", spec, "--node", "etcd01", "--root", root},
			{"certs", "renew", "all", "--config", spec, "--node", "etcd01", "--root", root, "--out", out},
			{"snapshot", "restore", filepath.Join(t.TempDir(), "etcd.db"), "--config", spec, "--node", "etcd01", "--root", root, "--token", "3f9ac0d2e1b4"},
			{"upgrade", "--etcd-version", "3.6.16-0", "--config", spec, "--out", out, "--node", "etcd01", "--root", root},
		} {
			refused(t, node, args...)
		}
	})
	t.Run("bundle folder of a --root run", func(t *testing.T) {
		// A node run signs with the CA in OUT: it locks OUT too, first.
		hold(t, out)
		refused(t, out, "certs", "renew", "all", "--node", "etcd01", "--root", root, "--out", out)
	})
}

// TestWaitLock: --wait-lock waits for the holder and then runs; it gives
// up, in one line, when the holder outlasts it; a bad value is bad input.
func TestWaitLock(t *testing.T) {
	bin := binary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	args := []string{"init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out}
	release := hold(t, out)
	o, code := runBinary(t, bin, append(args, "--wait-lock", "300ms")...)
	want := "error: " + filepath.Join(out, layout.LockFile) + " is still held by PID " + strconv.Itoa(os.Getpid()) + " (another etcd-staticpod run writing there) after waiting 300ms"
	if code != 1 || lastLine(o) != want || strings.Count(o, "\n") != 1 {
		t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, o)
	}
	if o, code := runBinary(t, bin, append(args, "--wait-lock", "soon")...); code != 2 || !strings.Contains(o, `--wait-lock "soon"`) {
		t.Fatalf("exit %d:\n%s", code, o)
	}
	if _, err := os.Stat(filepath.Join(out, "pki")); !os.IsNotExist(err) {
		t.Fatal("a refused run wrote")
	}
	cmd := exec.Command(bin, append(args, "--wait-lock", "2m")...)
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(out, "pki")); !os.IsNotExist(err) {
		t.Fatal("the waiting run wrote before the holder was done")
	}
	release()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, out, caPEM)
}

// TestNodeRunRemovesItsStaleTemps: on a node (--root), a run removes the
// temp files a killed run left beside the files it writes, and no other
// file: the rest of the node's folders are not ours.
func TestNodeRunRemovesItsStaleTemps(t *testing.T) {
	bin := binary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	if o, code := runBinary(t, bin, "init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out, "--skip-phases", "bundle"); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, o)
	}
	root := t.TempDir()
	manifests := filepath.Join(root, "etc/kubernetes/manifests")
	if err := os.MkdirAll(manifests, 0o700); err != nil {
		t.Fatal(err)
	}
	ours, theirs := filepath.Join(manifests, ".etcd.yaml.tmp-4242"), filepath.Join(manifests, ".kube-apiserver.yaml.tmp-17")
	for _, p := range []string{ours, theirs} {
		if err := os.WriteFile(p, []byte("half a manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o, code := runBinary(t, bin, "init", "phase", "etcd", "local", "--config", filepath.Join(out, "cluster.yaml"), "--node", "etcd01", "--root", root)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, o)
	}
	if !strings.Contains(o, "[cleanup] Removed "+ours+", left by an interrupted run") {
		t.Errorf("output does not name the removed temp file:\n%s", o)
	}
	if _, err := os.Stat(ours); !os.IsNotExist(err) {
		t.Errorf("%s is left: %v", ours, err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("another program's temp file was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes", layout.LockFile)); !os.IsNotExist(err) {
		t.Errorf("the lock file is left: %v", err)
	}
}
