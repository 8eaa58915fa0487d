package main

import "github.com/urfave/cli/v2"

// snapshotCommands are the commands that save and restore snapshots.
func snapshotCommands() []*cli.Command { return nil }
