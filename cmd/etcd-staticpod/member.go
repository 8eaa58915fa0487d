package main

import "github.com/urfave/cli/v2"

// memberCommands are the commands that scale the cluster out and in.
func memberCommands() []*cli.Command { return nil }
