package etcdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a started child, such as a member's etcd, whose exit is
// awaited in the background. It runs in its own process group, so that a
// signal reaches every process it started, and dies with the test binary,
// even when the test is killed.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// StartProcess starts cmd with its output going to log, which it closes
// once cmd has exited.
func StartProcess(cmd *exec.Cmd, log *os.File) (*Process, error) {
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended; valid once Done is closed.
func (p *Process) Err() error { return p.err }

// Pid is the process's (and its group's) ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process group; a process that has ended is left
// alone.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return fmt.Errorf("pid %d has exited", p.Pid())
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil {
		return fmt.Errorf("signal %v to process group %d: %w", sig, p.Pid(), err)
	}
	return nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process group as kubelet ends a container: SIGTERM, then
// SIGKILL once grace has passed or ctx is done. It returns when the
// process is gone.
func (p *Process) Stop(ctx context.Context, grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	return p.Kill(ctx)
}

// Kill ends the process group at once with SIGKILL, as a crash or power
// loss would, and returns when the process is gone.
func (p *Process) Kill(ctx context.Context) error {
	if p.Exited() {
		return nil
	}
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pid %d did not exit: %w", p.Pid(), ctx.Err())
	}
}
