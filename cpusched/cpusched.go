// Package cpusched sets how the kernel schedules this process's threads.
package cpusched

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Batch moves every thread of the process that runs under the normal
// policy (SCHED_OTHER) to SCHED_BATCH, keeping its nice value. Under
// SCHED_BATCH a thread that wakes does not preempt the one running: a
// snapshot stream's receiver, woken for every message, then no longer
// interrupts the etcd member sending it when both share a machine, which
// lets the member send faster and keeps it serving the cluster. A thread
// under another policy (SCHED_IDLE from a unit, a real-time one) is left
// as it is.
//
// Linux keeps the policy per thread, and a new thread inherits its
// creator's: once every thread is moved, the threads the Go runtime makes
// later are batch too. The list is read again until a pass moves none, to
// catch a thread made while it was read. An error means the kernel refused
// (a seccomp filter, for instance); the process then runs as before.
func Batch() error {
	for range 5 {
		moved, err := batchPass()
		if err != nil || moved == 0 {
			return err
		}
	}
	return nil
}

// batchPass moves the threads listed now and returns how many it moved.
func batchPass() (int, error) {
	tids, err := Threads(0)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, tid := range tids {
		attr, err := unix.SchedGetAttr(tid, 0)
		if errors.Is(err, unix.ESRCH) {
			// The thread ended.
			continue
		}
		if err != nil {
			return moved, fmt.Errorf("scheduling policy of thread %d: %w", tid, err)
		}
		if attr.Policy != unix.SCHED_NORMAL {
			continue
		}
		attr.Policy = unix.SCHED_BATCH
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return moved, fmt.Errorf("set SCHED_BATCH on thread %d: %w", tid, err)
		}
		moved++
	}
	return moved, nil
}

// Threads lists the thread IDs of process pid, or of this process for 0.
func Threads(pid int) ([]int, error) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(tasks))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
