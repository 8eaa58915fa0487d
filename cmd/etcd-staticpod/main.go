// Command etcd-staticpod makes and runs an external, highly available etcd
// cluster whose members are kubelet static Pods, the way kubeadm would.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

func main() {
	// A run lives for well under a second and allocates little: collecting
	// garbage less often is a measurable part of init's time.
	debug.SetGCPercent(400)
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}

func newApp() *cli.App {
	var cmds []*cli.Command
	cmds = append(cmds, initCommand())
	cmds = append(cmds, clusterCommands()...)
	cmds = append(cmds, memberCommands()...)
	cmds = append(cmds, snapshotCommands()...)
	cmds = append(cmds, certsCommands()...)
	cmds = append(cmds, upgradeCommands()...)
	cmds = append(cmds, defragCommands()...)
	cmds = append(cmds, alarmCommands()...)
	cmds = append(cmds, compactCommands()...)
	cmds = append(cmds, leaderCommands()...)
	return &cli.App{
		Name:                 "etcd-staticpod",
		Version:              version(debug.ReadBuildInfo()),
		Usage:                "make and run an external HA etcd cluster as kubelet static Pods",
		Description:          "Generates kubeadm-identical certificates, static Pod manifests, kubelet settings and kubeadm configs for every etcd host, and runs day-2 operations against the cluster.",
		Commands:             cmds,
		EnableBashCompletion: true,
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
		// Values such as --extra-arg initial-cluster=a=...,b=... hold commas.
		DisableSliceFlagSeparator: true,
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// exitCoder lets a command choose its exit status (e.g. health: 1 = unhealthy).
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}
