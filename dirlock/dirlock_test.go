package dirlock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

func acquire(t *testing.T, dir string, o Options) *Lock {
	t.Helper()
	l, err := Acquire(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSecondHolderRefused: flock conflicts between two opens of the file,
// in one process as between two, so a second Acquire is refused at once
// with the holder's PID and the lock file's path.
func TestSecondHolderRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "out")
	l := acquire(t, dir, Options{})
	b, err := os.ReadFile(filepath.Join(dir, layout.LockFile))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, %v; want our PID", b, err)
	}
	start := time.Now()
	_, err = Acquire(context.Background(), dir, Options{})
	var busy *BusyError
	if !errors.As(err, &busy) || busy.PID != os.Getpid() || busy.Path != filepath.Join(dir, layout.LockFile) {
		t.Fatalf("got %v", err)
	}
	want := filepath.Join(dir, layout.LockFile) + " is held by PID " + strconv.Itoa(os.Getpid())
	if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Errorf("message %q does not start with %q", err, want)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("refusing took %v", time.Since(start))
	}
	if _, err := Acquire(context.Background(), dir, Options{Shared: true}); !errors.As(err, &busy) {
		t.Errorf("a reader got in beside a writer: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	// Release leaves nothing: the lock file and the folders made for it go.
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(dir)), "a")); !os.IsNotExist(err) {
		t.Errorf("folders made for the lock are still there: %v", err)
	}
}

// TestReleaseKeepsFoldersInUse: folders the lock made stay when the run
// put files in them.
func TestReleaseKeepsFoldersInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	l := acquire(t, dir, Options{})
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "cluster.yaml" {
		t.Fatalf("left %v, %v", ents, err)
	}
}

// TestWaitForHolder: with Wait, the run gets the lock once the holder
// lets go, and gives up with the time it waited when it does not.
func TestWaitForHolder(t *testing.T) {
	dir := t.TempDir()
	l := acquire(t, dir, Options{})
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = l.Release()
	}()
	l2 := acquire(t, dir, Options{Wait: 30 * time.Second})
	_, err := Acquire(context.Background(), dir, Options{Wait: 100 * time.Millisecond})
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Waited != 100*time.Millisecond || !strings.Contains(err.Error(), "still held by PID") {
		t.Fatalf("got %v", err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("interrupted by SIGINT")
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel(cause)
	}()
	if _, err := Acquire(ctx, dir, Options{Wait: time.Minute}); !errors.Is(err, cause) {
		t.Fatalf("a cancelled wait: %v", err)
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestStaleLockFile: a lock file a killed run left (no one holds it) does
// not stop the next run.
func TestStaleLockFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, layout.LockFile), []byte("999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := acquire(t, dir, Options{})
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, layout.LockFile)); !os.IsNotExist(err) {
		t.Errorf("lock file left: %v", err)
	}
}

// TestSharedReaders: readers share, create nothing, and shut a writer out.
func TestSharedReaders(t *testing.T) {
	dir := t.TempDir()
	if l := acquire(t, dir, Options{Shared: true}); l != nil {
		t.Fatal("a reader locked a folder with no lock file")
	}
	if _, err := os.Stat(filepath.Join(dir, layout.LockFile)); !os.IsNotExist(err) {
		t.Fatal("a reader created the lock file")
	}
	if l := acquire(t, filepath.Join(dir, "missing"), Options{Shared: true}); l != nil {
		t.Fatal("a reader locked a missing folder")
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Fatal("a reader created the folder")
	}
	// A lock file a killed writer left: readers lock it together.
	if err := os.WriteFile(filepath.Join(dir, layout.LockFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r1 := acquire(t, dir, Options{Shared: true})
	r2 := acquire(t, dir, Options{Shared: true})
	var busy *BusyError
	if _, err := Acquire(context.Background(), dir, Options{}); !errors.As(err, &busy) {
		t.Fatalf("a writer got in beside readers: %v", err)
	}
	_ = r1.Release()
	_ = r2.Release()
	if _, err := os.Stat(filepath.Join(dir, layout.LockFile)); err != nil {
		t.Errorf("a reader removed the lock file: %v", err)
	}
}

// TestLockFileReplacedWhileWaiting: a waiter whose file was removed by the
// holder locks the new file, never the removed one, so that two runs can
// never both hold the folder.
func TestLockFileReplacedWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	const runs = 8
	held := make(chan int, runs)
	errs := make(chan error, runs)
	var inside, most atomic.Int32
	for i := range runs {
		go func() {
			l, err := Acquire(context.Background(), dir, Options{Wait: time.Minute, Poll: time.Millisecond})
			if err != nil {
				errs <- err
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			held <- i
			time.Sleep(5 * time.Millisecond)
			inside.Add(-1)
			errs <- l.Release()
		}()
	}
	for range runs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(held) != runs || most.Load() != 1 {
		t.Fatalf("%d of %d runs held the lock, up to %d at once", len(held), runs, most.Load())
	}
}
