package cpusched

import (
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// policies is every thread's scheduling policy and nice value.
func policies(t *testing.T) map[int]*unix.SchedAttr {
	t.Helper()
	tids, err := Threads(0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]*unix.SchedAttr{}
	for _, tid := range tids {
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // ended since
		}
		out[tid] = attr
	}
	return out
}

// onNewThread runs f on a thread of its own that ends with it.
func onNewThread(f func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		// Never unlocked: the thread ends with the goroutine, so that a
		// policy set on it reaches no other goroutine.
		runtime.LockOSThread()
		f()
	})
	wg.Wait()
}

func TestBatch(t *testing.T) {
	// A thread under SCHED_IDLE, as a unit may ask, must stay so; it is
	// held until the end.
	idleTID := make(chan int)
	release := make(chan struct{})
	done := make(chan error, 1)
	go onNewThread(func() {
		tid := unix.Gettid()
		attr, err := unix.SchedGetAttr(tid, 0)
		if err == nil {
			attr.Policy = unix.SCHED_IDLE
			err = unix.SchedSetAttr(tid, attr, 0)
		}
		done <- err
		idleTID <- tid
		<-release
	})
	if err := <-done; err != nil {
		t.Fatalf("set SCHED_IDLE: %v", err)
	}
	idle := <-idleTID
	defer close(release)

	// A thread with a nice value of its own keeps it.
	niceTID := make(chan int)
	releaseNice := make(chan struct{})
	defer close(releaseNice)
	go onNewThread(func() {
		tid := unix.Gettid()
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 5); err != nil {
			done <- err
		}
		niceTID <- tid
		<-releaseNice
	})
	nice := <-niceTID

	if err := Batch(); err != nil {
		t.Fatal(err)
	}
	// Threads made after Batch, from threads it moved.
	var wg sync.WaitGroup
	started := make(chan struct{})
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			onNewThread(func() {
				started <- struct{}{}
				<-stop
			})
		})
	}
	for range 4 {
		<-started
	}

	all := policies(t)
	if len(all) < 6 {
		t.Fatalf("only %d threads listed", len(all))
	}
	for tid, attr := range all {
		switch tid {
		case idle:
			if attr.Policy != unix.SCHED_IDLE {
				t.Errorf("thread %d was under SCHED_IDLE, now policy %d", tid, attr.Policy)
			}
		case nice:
			if attr.Policy != unix.SCHED_BATCH || attr.Nice != 5 {
				t.Errorf("thread %d: policy %d nice %d, want SCHED_BATCH (%d) nice 5", tid, attr.Policy, attr.Nice, unix.SCHED_BATCH)
			}
		default:
			if attr.Policy != unix.SCHED_BATCH {
				t.Errorf("thread %d: policy %d, want SCHED_BATCH (%d)", tid, attr.Policy, unix.SCHED_BATCH)
			}
		}
	}
	close(stop)
	wg.Wait()
}
