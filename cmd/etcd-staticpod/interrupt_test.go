package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// filledMember runs a real one-member cluster made by the built binary,
// holding mb megabytes of values, and returns its host folder.
func filledMember(t *testing.T, bin string, mb int) (string, *etcdtest.Cluster) {
	t.Helper()
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(bin), 1)
	c := etcdtest.Run(t, dir)
	bundle := filepath.Join(dir, "etcd01")
	ctx := context.Background()
	tgt, err := etcdops.Resolve(ctx, etcdops.Options{Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := tgt.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	value := strings.Repeat("v", 256<<10)
	for i := range mb * 4 {
		if _, err := kv.Put(ctx, fmt.Sprintf("/registry/k/%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	return bundle, c
}

// savedSnapshot saves, with the built binary, a snapshot of a real
// one-member cluster holding mb megabytes of values.
func savedSnapshot(t *testing.T, bin string, mb int) string {
	t.Helper()
	bundle, _ := filledMember(t, bin, mb)
	file := filepath.Join(t.TempDir(), "etcd.db")
	if _, stderr, code := etcdtest.Exec(t, bin, "snapshot", "save", file, "--bundle", bundle); code != 0 {
		t.Fatalf("snapshot save: exit %d: %s", code, stderr)
	}
	return file
}

// restoredFolders lists the folders a restore made or was making in the
// host folders under out: the restored folders and their temp folders.
func restoredFolders(t *testing.T, out string) (done, temps []string) {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(out, "*", "var", "lib", "*etcd.restore-*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if strings.HasPrefix(filepath.Base(p), ".") {
			temps = append(temps, p)
		} else {
			done = append(done, p)
		}
	}
	return done, temps
}

// untilFull waits until the first member's temp database under out holds
// the whole database (size bytes): the restore has copied it and is
// checking it or holding it checked.
func untilFull(t *testing.T, out string, size int64, r *run) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		_, temps := restoredFolders(t, out)
		for _, d := range temps {
			if fi, err := os.Stat(filepath.Join(d, "member/snap/db")); err == nil && fi.Size() == size {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = r.cmd.Process.Kill()
	r.wait(t)
	t.Fatalf("the restore never held a whole copy\n%s%s", r.stdout.String(), r.stderr.String())
}

// TestInterruptRestore sends SIGINT or SIGTERM to snapshot restore while
// it copies the snapshot and while it holds the checked copy:
// each run prints one line, exits 130 or 143, and leaves the bundle folder
// exactly as it was, with no restored or temp folder.
func TestInterruptRestore(t *testing.T) {
	bin := hooksBinary(t)
	snap := savedSnapshot(t, binary(t), 8)
	fi, err := os.Stat(snap)
	if err != nil {
		t.Fatal(err)
	}
	out := initBundle(t)
	before := treeHash(t, out)
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		code int
		// full waits for the whole copy, else the first temp folder.
		full bool
	}{
		{"SIGINT while copying", syscall.SIGINT, 130, false},
		{"SIGTERM while copying", syscall.SIGTERM, 143, false},
		{"SIGINT with the copy checked", syscall.SIGINT, 130, true},
		{"SIGTERM with the copy checked", syscall.SIGTERM, 143, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, slowed(bin, time.Minute, "snapshot", "restore", snap, "--out", out))
			if tc.full {
				untilFull(t, out, fi.Size()-32, r)
			} else {
				untilTemps(t, out, r)
			}
			if err := r.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			r.wait(t)
			name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[tc.sig]
			want := "error: interrupted by " + name + ": the restore is called off; the folders it was writing are removed\n"
			if r.code != tc.code || r.stderr.String() != want || r.stdout.Len() != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q", r.code, r.stdout.String(), r.stderr.String(), tc.code, want)
			}
			if treeHash(t, out) != before {
				t.Fatal("the bundle folder changed")
			}
			noLeftovers(t, out)
		})
	}
	// The folder is as good as before: a restore then completes.
	if o, code := runBinary(t, binary(t), "snapshot", "restore", snap, "--out", out); code != 0 {
		t.Fatalf("restore after the interruptions: exit %d\n%s", code, o)
	}
	if done, temps := restoredFolders(t, out); len(done) != 3 || len(temps) != 0 {
		t.Fatalf("restored %v, temp folders %v", done, temps)
	}
}

// TestInterruptRestoreAnyPoint sends SIGINT to snapshot restore at points
// spread over a whole run: it rolls back (exit 130, one line, the bundle
// folder as it was), or had finished and was printing (exit 0, every
// member restored), or had not yet started to handle signals (killed,
// nothing written). Never some members restored, never a temp folder.
func TestInterruptRestoreAnyPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("interrupts dozens of processes")
	}
	bin := binary(t)
	snap := savedSnapshot(t, bin, 16)
	out := initBundle(t)
	before := treeHash(t, out)
	clean := func(t *testing.T) {
		t.Helper()
		done, _ := restoredFolders(t, out)
		for _, d := range done {
			if err := os.RemoveAll(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	begin := time.Now()
	if o, code := runBinary(t, bin, "snapshot", "restore", snap, "--out", out); code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, o)
	}
	full := time.Since(begin)
	clean(t)
	const points = 24
	outcomes := map[string]int{}
	for i := range points {
		outcome := interruptAt(t, i, full*time.Duration(i)/points, bin, "snapshot", "restore", snap, "--out", out)
		outcomes[outcome]++
		done, temps := restoredFolders(t, out)
		if len(temps) > 0 {
			t.Errorf("point %d: temp folders left: %v", i, temps)
		}
		switch outcome {
		case rolledBack:
			if treeHash(t, out) != before {
				t.Errorf("point %d: rolled back, but the bundle folder changed (restored: %v)", i, done)
			}
		case completed:
			if len(done) != 3 {
				t.Errorf("point %d: exit 0, restored %v", i, done)
			}
		case killedEarly:
			if treeHash(t, out) != before {
				t.Errorf("point %d: killed at start, but the bundle folder changed", i)
			}
		}
		noLeftovers(t, out)
		clean(t)
	}
	t.Logf("%d interrupts over a %v restore: %v", points, full.Round(time.Millisecond), outcomes)
	if outcomes[rolledBack] == 0 {
		t.Error("no run was rolled back: the interrupts missed the run")
	}
}

// TestInterruptUpgradeRewrite sends SIGINT or SIGTERM to upgrade while it
// holds the first host's rewritten manifest, kubeadmcfg.yaml and the
// archives packed again as temp files: the rewrite rolls back as init
// does, the run ends with one error line naming the signal and exits 130
// or 143, and the bundle folder is exactly as it was.
func TestInterruptUpgradeRewrite(t *testing.T) {
	bin := hooksBinary(t)
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(binary(t)), 1)
	etcdtest.Run(t, dir)
	before := treeHash(t, dir)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[tc.sig]
		t.Run(name, func(t *testing.T) {
			r := start(t, slowed(bin, time.Minute, "upgrade", "--etcd-version", "3.6.16-0", "--out", dir))
			temps := untilTemps(t, dir, r)
			if err := r.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			r.wait(t)
			var errs []string
			for _, l := range strings.Split(strings.TrimSpace(r.stderr.String()), "\n") {
				if strings.HasPrefix(l, "error:") {
					errs = append(errs, l)
				}
			}
			want := "interrupted by " + name + ": stopped before putting any file in place; what the run had made is removed"
			if r.code != tc.code || len(errs) != 1 || !strings.Contains(errs[0], want) || lastLine(r.stderr.String()) != errs[0] {
				t.Fatalf("exit %d, stderr:\n%s\nwant %d and one last error line containing %q", r.code, r.stderr.String(), tc.code, want)
			}
			t.Logf("%s with %d temp files: %s", name, len(temps), errs[0])
			if treeHash(t, dir) != before {
				t.Fatal("the bundle folder changed")
			}
			noLeftovers(t, dir)
		})
	}
}
