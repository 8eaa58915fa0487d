package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

// Two time flags, one meaning each, on every command that talks to etcd:
//
//   - --timeout bounds each request to etcd, and the requests a step makes
//     at once (finding the cluster, the checks before a change) as a
//     whole, counted from the process's start;
//   - --wait bounds the command's waiting for the cluster after a change:
//     a learner to catch up, an upgraded or defragmented member to come
//     back healthy.

// timeoutFlag is --timeout; usage says what the requests are.
func timeoutFlag(usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: "timeout", Value: etcdops.DefaultTimeout.String(), Usage: "bound `DURATION` on each request to etcd, such as 5s, and on " + usage}
}

// waitFlag is --wait with its default; usage says what is waited for.
func waitFlag(value time.Duration, usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: "wait", Value: value.String(), Usage: "bound `DURATION` on " + usage}
}

// oldFlag is an earlier name of a time flag, kept for scripts where its
// meaning is the new flag's; hidden from the help.
func oldFlag(name string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Hidden: true}
}

// maxWaitingTimeout is the most --timeout takes on the commands where
// --timeout used to bound the wait (member add, member promote, upgrade):
// a longer bound on one request is that older spelling, and taking it as a
// request's bound would leave the wait at its default without a word.
const maxWaitingTimeout = time.Minute

// parseTimeout reads --timeout (or its older name --request-timeout, when
// the command has it and it is given alone).
func parseTimeout(c *cli.Context) (time.Duration, error) {
	return duration(c, "timeout", "request-timeout", "5s")
}

// parseRequestTimeout reads --timeout on a command whose --timeout once
// bounded its wait: a value over maxWaitingTimeout is refused with a
// pointer to --wait.
func parseRequestTimeout(c *cli.Context) (time.Duration, error) {
	d, err := parseTimeout(c)
	if err != nil {
		return 0, err
	}
	if d > maxWaitingTimeout && c.IsSet("timeout") {
		return 0, badArgs(fmt.Errorf("--timeout %q: bounds each request to etcd, at most %v; give how long to wait for the member as --wait %s", c.String("timeout"), maxWaitingTimeout, c.String("timeout")))
	}
	return d, nil
}

// parseWait reads --wait (or its older name old, when given alone).
func parseWait(c *cli.Context, old string) (time.Duration, error) {
	return duration(c, "wait", old, "10m")
}

// duration reads the positive duration flag name, or the same flag under
// its older name old when the command has it and only that is given.
func duration(c *cli.Context, name, old, example string) (time.Duration, error) {
	flag := name
	if old != "" && c.IsSet(old) {
		if c.IsSet(name) {
			return 0, badArgs(fmt.Errorf("--%s %q: the older name of --%s; give --%s alone", old, c.String(old), name, name))
		}
		flag = old
	}
	v := c.String(flag)
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, badArgs(fmt.Errorf("--%s %q: not a duration such as %s", flag, v, example))
	}
	if d <= 0 {
		return 0, badArgs(fmt.Errorf("--%s %q: must be positive", flag, v))
	}
	return d, nil
}
