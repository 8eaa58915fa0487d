package main

import "github.com/urfave/cli/v2"

// clusterCommands are the commands that talk to a running cluster.
func clusterCommands() []*cli.Command { return nil }
