package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

func moveLeaderCommand() *cli.Command {
	return &cli.Command{
		Name:      "move-leader",
		Category:  "running cluster",
		Usage:     "hand the cluster's leadership to the member NAME",
		UsageText: "etcd-staticpod move-leader NAME " + connectUsage,
		Description: `Asks the current leader to hand leadership to the voting member NAME (etcd's
MoveLeader, as "etcdctl move-leader" does, and as upgrade and member remove do
before they stop the leader), then waits until NAME reports itself the leader.
One planned election costs the clients less than one after the leader is gone:
move the leadership off a host before maintenance on it. A member that leads
already is left alone. --timeout bounds the whole command.

Output: who led before, who leads now, and how long the hand-over took. -o json
(or yaml) prints {"from", "to", "took"}; "took" is "0s" when NAME led already.

` + findingTheCluster + `

Exit status: 0 when NAME leads, 1 when the cluster refused or did not answer in
time, 2 when NAME is not a voting member, for a bad flag, or unreadable local
files. Flags may go before or after NAME.

Examples:
  # on an etcd host
  etcd-staticpod move-leader etcd02

  # from the machine that ran init
  etcd-staticpod move-leader etcd03 --bundle ./etcd-bundles/etcd01 -o json`,
		Flags: connectionFlags(),
		Action: withTrailingFlags(connectionFlags, func(c *cli.Context) error {
			name, format, err := argAndFormat(c, "NAME")
			if err != nil {
				return err
			}
			ctx, cancel, err := commandDeadline(c)
			if err != nil {
				return err
			}
			defer cancel()
			t, err := resolveTarget(ctx, c)
			if err != nil {
				return err
			}
			mv, err := etcdops.TransferLeadership(ctx, t, name)
			if err != nil {
				return opsError(err)
			}
			return printLeaderMove(c.App.Writer, format, mv)
		}),
	}
}

// leaderMoveDoc is `move-leader -o json|yaml`.
type leaderMoveDoc struct {
	From string `json:"from"`
	To   string `json:"to"`
	Took string `json:"took"`
}

func printLeaderMove(w io.Writer, format string, mv etcdops.LeaderMove) error {
	d := leaderMoveDoc{From: mv.From, To: mv.To, Took: formatTook(mv.Took)}
	if format != "table" {
		return writeDoc(w, format, d)
	}
	if mv.FromID == mv.ToID {
		_, err := fmt.Fprintf(w, "%s leads already: nothing to do\n", mv.To)
		return err
	}
	_, err := fmt.Fprintf(w, "leadership moved from %s to %s in %s\n", mv.From, mv.To, d.Took)
	return err
}
