package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/dirlock"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/workflow"
)

// waitLockFlag is --wait-lock, on every command that writes.
func waitLockFlag() cli.Flag {
	return &cli.StringFlag{Name: "wait-lock", Value: "0s", Usage: "when another run is writing into the same folder, wait up to `DURATION` for it to finish instead of refusing at once, e.g. 2m"}
}

// holdFolders locks the folders a command writes into for the rest of the
// run: OUT, and with --root also ROOT/etc/kubernetes (OUT only when it
// exists then: on a node it usually does not). Another run holding one of
// them is refused at once, or after --wait-lock. Under the lock it removes
// the temp files killed runs left in OUT. --dry-run takes a shared lock on
// an existing lock file and creates nothing: it writes nothing, so it only
// needs to not read a folder halfway through a write, and several may run
// at once.
func holdFolders(c *cli.Context, out, root string, dryRun bool) (release func(), err error) {
	wait, err := time.ParseDuration(c.String("wait-lock"))
	if err != nil || wait < 0 {
		return nil, badArgs(fmt.Errorf("--wait-lock %q: want a duration such as 2m (0 refuses at once)", c.String("wait-lock")))
	}
	if out == "" {
		out = layout.DefaultOut // the runner's default
	}
	// Each folder to lock, and the tree it must not lead out of: the lock
	// file is written like any other file.
	var dirs, trees []string
	if root == "" {
		dirs, trees = append(dirs, out), append(trees, out)
	} else {
		if fi, err := os.Stat(out); err == nil && fi.IsDir() {
			dirs, trees = append(dirs, out), append(trees, out)
		}
		dirs, trees = append(dirs, layout.OnHost(root, layout.HostLockDir)), append(trees, root)
	}
	// A file as --out or --root, or a folder that cannot be written, is
	// said as such before the lock file is tried there.
	if root == "" {
		err = workflow.CheckDestination("--out", out, dryRun)
	} else {
		err = workflow.CheckDestination("--root", root, dryRun)
	}
	if err != nil {
		return nil, err
	}
	for i, dir := range dirs {
		if err := safefile.Beneath(trees[i], dir); err != nil {
			return nil, err
		}
	}
	var held []*dirlock.Lock
	release = func() {
		for i := len(held) - 1; i >= 0; i-- {
			if err := held[i].Release(); err != nil {
				fmt.Fprintln(c.App.ErrWriter, "warning:", err)
			}
		}
	}
	// Always in this order, so that two runs never wait for each other.
	for _, dir := range dirs {
		l, err := dirlock.Acquire(c.Context, dir, dirlock.Options{Wait: wait, Shared: dryRun})
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, l)
	}
	if dryRun || dirs[0] != out {
		return release, nil
	}
	removed, err := atomicfile.RemoveTemps(out)
	for _, p := range removed {
		fmt.Fprintf(c.App.ErrWriter, "[cleanup] Removed %s, left by an interrupted run\n", p)
	}
	if err != nil {
		release()
		return nil, err
	}
	return release, nil
}
