package main

import "github.com/urfave/cli/v2"

// upgradeCommands are the commands that upgrade etcd one member at a time.
func upgradeCommands() []*cli.Command { return nil }
