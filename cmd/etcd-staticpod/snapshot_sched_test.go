package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// TestSaveRunsAsBatch holds a real member still (SIGSTOP) while snapshot
// save streams from it and checks that every thread of the save runs
// under SCHED_BATCH, so that it never preempts the member it reads from;
// the save then completes once the member goes on.
func TestSaveRunsAsBatch(t *testing.T) {
	bin := binary(t)
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
	// Several megabytes: more than the member sends before it is stopped.
	value := strings.Repeat("v", 256<<10)
	for i := range 64 {
		if _, err := kv.Put(ctx, fmt.Sprintf("/registry/k/%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}

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

	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", r.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) < 2 {
		t.Fatalf("the save has %d threads", len(tasks))
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			t.Fatal(err)
		}
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
