package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// NamePrefix starts the name of every network namespace the harness makes;
// the stale-namespace sweep touches nothing else.
const NamePrefix = "e2esp-"

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// NetNS is a named network namespace made with `ip netns add`.
type NetNS struct {
	Name string
}

// path is the namespace's bind mount, the file setns(2) takes.
func (n NetNS) path() string { return filepath.Join(netnsDir, n.Name) }

// Do runs fn on an OS thread that has entered the namespace. Sockets made by
// fn belong to the namespace for their whole life, whichever thread later
// uses them. The thread goes back to its own namespace afterwards; should
// that fail, the goroutine exits still locked, so that the runtime retires
// the thread instead of reusing it in the wrong namespace.
func (n NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(n.path())
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", n.Name, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// DialContext opens a TCP connection from inside the namespace.
func (n NetNS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// Command wraps a command so that it runs inside the namespace.
func (n NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// ip runs the ip(8) tool and returns its error with its output.
func ip(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// addNetNS makes a namespace with its loopback up, so that each host has
// its own 127.0.0.1 and ::1 for metrics and probes.
func addNetNS(ctx context.Context, name string) (NetNS, error) {
	if err := ip(ctx, "netns", "add", name); err != nil {
		return NetNS{}, err
	}
	ns := NetNS{Name: name}
	if err := ip(ctx, "-n", name, "link", "set", "lo", "up"); err != nil {
		return ns, err
	}
	return ns, nil
}

// deleteNetNS kills whatever still runs in the namespace, then removes it.
func deleteNetNS(ctx context.Context, name string) error {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output()
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			// A thread of ours may sit in the namespace; never kill ourselves.
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return ip(ctx, "netns", "delete", name)
}

// SweepStale removes namespaces left behind by harness processes that have
// died (for example a test binary killed by a timeout). A namespace's name
// carries the process id of its owner, so live runs are left alone.
func SweepStale(ctx context.Context, logf func(format string, args ...any)) error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list network namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		pid, ok := ownerPID(e.Name())
		if !ok || processAlive(pid) {
			continue
		}
		logf("removing stale network namespace %s (owner process %d is gone)", e.Name(), pid)
		if err := deleteNetNS(ctx, e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownerPID reads the process id from a name made by namespaceName.
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return 0, false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	return pid, err == nil && pid > 0
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
