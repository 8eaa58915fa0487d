// Command etcd-staticpod makes and runs an external, highly available etcd
// cluster whose members are kubelet static Pods, the way kubeadm would.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/urfave/cli/v2"
)

func main() {
	// A run lives for well under a second and allocates little: collecting
	// garbage less often is a measurable part of init's time.
	debug.SetGCPercent(400)
	ctx, stop := interruptible(context.Background())
	defer stop()
	app := newApp(processStart())
	err := app.RunContext(ctx, os.Args)
	var intr interruption
	if errors.As(context.Cause(ctx), &intr) {
		if err == nil {
			// The signal came when the run could no longer stop cleanly
			// (its files were being put in place), so it finished.
			fmt.Fprintf(os.Stderr, "note: %s came too late to call the run off; it completed\n", intr.name())
			return
		}
		fmt.Fprintln(os.Stderr, "error:", oneLine(err, intr))
		os.Exit(intr.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}

// interruption is the cause of a run called off by SIGINT or SIGTERM.
type interruption struct{ sig syscall.Signal }

func (i interruption) name() string {
	if i.sig == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}

func (i interruption) Error() string { return "interrupted by " + i.name() }

// ExitCode is the shell's convention for death by a signal: 130, 143.
func (i interruption) ExitCode() int { return 128 + int(i.sig) }

// interruptible returns a context that SIGINT or SIGTERM cancels with an
// interruption as its cause, so that a writing run rolls back instead of
// dying with its temp files on disk. A second signal kills at once.
func interruptible(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			signal.Reset(syscall.SIGINT, syscall.SIGTERM)
			cancel(interruption{sig: s.(syscall.Signal)})
		case <-done:
		}
	}()
	// The signals stay caught to the end: one that arrives as the run
	// returns must not kill a process whose work is complete.
	return ctx, func() {
		close(done)
		cancel(nil)
	}
}

// oneLine is the error of an interrupted run, naming the signal once.
func oneLine(err error, intr interruption) string {
	msg := err.Error()
	if !strings.Contains(msg, intr.Error()) {
		msg = intr.Error() + ": " + msg
	}
	return msg
}

// startKey holds, in the app's Metadata, when the run started: the
// process's start for the command line, so that --timeout counts from it.
const startKey = "start"

// runStart is when the run started (see startKey).
func runStart(c *cli.Context) time.Time {
	if t, ok := c.App.Metadata[startKey].(time.Time); ok {
		return t
	}
	return time.Now()
}

func newApp(start time.Time) *cli.App {
	var cmds []*cli.Command
	cmds = append(cmds, initCommand())
	cmds = append(cmds, clusterCommands()...)
	cmds = append(cmds, memberCommands()...)
	cmds = append(cmds, snapshotCommands()...)
	cmds = append(cmds, certsCommands()...)
	cmds = append(cmds, upgradeCommand(), defragCommand())
	cmds = append(cmds, alarmCommands()...)
	cmds = append(cmds, compactCommand(), moveLeaderCommand())
	cmds = append(cmds, statefulSetCommand())
	for _, cmd := range cmds {
		oneLineErrors(cmd)
	}
	checkingInput(cmds)
	return &cli.App{
		Name:                 "etcd-staticpod",
		Version:              version(debug.ReadBuildInfo()),
		Usage:                "make and run an external HA etcd cluster as kubelet static Pods",
		Description:          "Generates kubeadm-identical certificates, static Pod manifests, kubelet settings and kubeadm configs for every etcd host, and runs day-2 operations against the cluster.",
		Commands:             cmds,
		Metadata:             map[string]any{startKey: start},
		EnableBashCompletion: true,
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
		// Values such as --extra-arg initial-cluster=a=...,b=... hold commas.
		DisableSliceFlagSeparator: true,
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
		Action: func(c *cli.Context) error {
			if !c.Args().Present() {
				return cli.ShowAppHelp(c)
			}
			return unknownCommand(c)
		},
	}
}

// usageError is a flag urfave/cli could not parse: bad input, printed as
// one line without the help text.
func usageError(_ *cli.Context, err error, _ bool) error { return badinput.Wrap(err) }

// unknownCommand runs where urfave/cli would otherwise print the help and
// exit 3 for a command name it does not know.
func unknownCommand(c *cli.Context) error {
	if !c.Args().Present() {
		return cli.ShowSubcommandHelp(c)
	}
	name := c.App.Name
	if c.Command != nil && c.Command.HelpName != "" {
		name = c.Command.HelpName
	}
	return badinput.Errorf("unknown command %q: see %s --help", c.Args().First(), name)
}

// oneLineErrors makes every command report a bad flag or an unknown
// subcommand as one error line, exit 2, and never print the help for it.
func oneLineErrors(cmd *cli.Command) {
	cmd.OnUsageError = usageError
	if len(cmd.Subcommands) > 0 && cmd.Action == nil {
		cmd.Action = unknownCommand
	}
	for _, sub := range cmd.Subcommands {
		oneLineErrors(sub)
	}
}

// Exit statuses, the same for every command.
const (
	exitOK       = 0
	exitFailure  = 1 // the cluster or the disk failed, or a check found a fault
	exitBadInput = 2 // the command line, the spec or a local file is wrong; nothing changed
	exitDue      = 3 // certs check-expiration --within: something is due for renewal
)

// dueError is check-expiration's answer to --within: something is missing,
// expired or expires within it.
type dueError struct{ error }

func (e dueError) Unwrap() error { return e.error }

// exitCode is the one place that turns an error into an exit status.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case badinput.Is(err):
		return exitBadInput
	case errors.As(err, new(dueError)):
		return exitDue
	case errors.As(err, new(cli.ExitCoder)):
		// urfave/cli's own exits are about the command line: a help topic
		// it does not know.
		return exitBadInput
	}
	return exitFailure
}
