package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-staticpod/etcd-staticpod/cpusched"
)

// TestSaveRunsAsBatch holds a real member still (SIGSTOP) while snapshot
// save streams from it and checks that every thread of the save runs
// under SCHED_BATCH, so that it never preempts the member it reads from;
// the save then completes once the member goes on.
func TestSaveRunsAsBatch(t *testing.T) {
	bin := binary(t)
	// Several megabytes: more than the member sends before it is stopped.
	bundle, c := filledMember(t, bin, 16)

	work := t.TempDir()
	file := filepath.Join(work, "etcd.db")
	r := start(t, exec.Command(bin, "snapshot", "save", file, "--bundle", bundle))
	m := c.Member("etcd01")
	stopped := false
	defer func() {
		if stopped {
			_ = m.Signal(syscall.SIGCONT)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !stopped {
		if time.Now().After(deadline) {
			t.Fatalf("no temp file appeared\n%s", r.stderr.String())
		}
		if temps, _ := filepath.Glob(filepath.Join(work, ".etcd.db.tmp-*")); len(temps) > 0 {
			if err := m.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			stopped = true
			break
		}
		time.Sleep(time.Millisecond)
	}

	tids, err := cpusched.Threads(r.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < 2 {
		t.Fatalf("the save has %d threads", len(tids))
	}
	for _, tid := range tids {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			t.Fatalf("thread %d: %v", tid, err)
		}
		if attr.Policy != unix.SCHED_BATCH {
			t.Errorf("thread %d of the save: policy %d, want SCHED_BATCH (%d)", tid, attr.Policy, unix.SCHED_BATCH)
		}
	}

	if err := m.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	r.wait(t)
	if r.code != 0 {
		t.Fatalf("snapshot save: exit %d\n%s", r.code, r.stderr.String())
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
}
