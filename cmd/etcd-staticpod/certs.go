package main

import "github.com/urfave/cli/v2"

// certsCommands are the commands that check and renew certificates.
func certsCommands() []*cli.Command { return nil }
