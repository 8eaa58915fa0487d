package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

func defragCommand() *cli.Command {
	cmd := clusterCommand(&cli.Command{
		Name:      "defrag",
		Usage:     "defragment the members one at a time, followers first and the leader last, where it frees space",
		UsageText: "etcd-staticpod defrag [--min-free SIZE|PERCENT] [--all] [--dry-run] [--wait DURATION] " + connectUsage,
		Description: `etcd keeps the pages that deleted and compacted data used in its database file
for later writes; only a defragmentation gives them back to the filesystem, and
the file is what --quota-backend-bytes is measured against. While etcd rewrites
its database the member stalls, so defragmenting every member at once (as
"etcdctl defrag --cluster" does) stalls the whole cluster.

This command takes one member at a time and never two: the followers in name
order, then the leader. A member is defragmented only when its free space (the
database size minus the size in use, as status shows them) is above --min-free:
a size such as 64MiB or a share of its database such as 10% (default: 10% of
the database and at least 16 MiB); --all takes every member. The cluster must
be healthy before the first member, and after each member the command waits,
within --wait, until every member is healthy again. An active NOSPACE
alarm does not count against health here: defragmenting is how the space is
given back (then "etcd-staticpod alarm disarm"). --dry-run checks the cluster and
shows what would be done.

Progress goes to stderr. Output: one row per member, in the order taken, with
the database size before and after. -o json (or yaml) prints a list of
{"name", "endpoint", "before", "after", "took", "skipped", "reason"}; sizes in
bytes ("after" is 0 for a member not defragmented), "reason" says why the member
was or was not defragmented.

` + findingTheCluster + `

Exit status: 0 when every member due was defragmented and the cluster is
healthy, 1 when the cluster was unhealthy or a member failed or did not come
back in time (no further member is touched), 2 for a bad flag or unreadable
local files.

Examples:
  # on an etcd host: every member that has at least 10% (16 MiB) to give back
  etcd-staticpod defrag

  # from the machine that ran init: see the plan first
  etcd-staticpod defrag --bundle ./etcd-bundles/etcd01 --dry-run

  # only where 256 MiB or more would be freed, JSON for scripts
  etcd-staticpod defrag --bundle ./etcd-bundles/etcd01 --min-free 256MiB -o json

  # every member, after a NOSPACE alarm and a compaction
  etcd-staticpod defrag --bundle ./etcd-bundles/etcd01 --all

  # a large database on slow disks: up to 30 minutes for each member
  etcd-staticpod defrag --bundle ./etcd-bundles/etcd01 --wait 30m`,
		Action: runDefrag,
	})
	for _, f := range cmd.Flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "timeout" {
			sf.Usage = "bound `DURATION` on each request to etcd, such as 5s, and on finding the members and checking them before the first as a whole (a member's defragmentation has --wait)"
		}
	}
	cmd.Flags = append(cmd.Flags,
		&cli.StringFlag{Name: "min-free", Usage: "defragment a member only when its free space is above `SIZE` (64MiB) or this share of its database (10%) (default: 10%, at least 16MiB)"},
		&cli.BoolFlag{Name: "all", Usage: "defragment every member, whatever its free space"},
		&cli.BoolFlag{Name: "dry-run", Usage: "check the cluster and show what would be done; defragment nothing"},
		waitFlag(etcdops.DefaultDefragWait, "each member's defragmentation and the wait for the cluster's health after it, such as 30m"),
		oldFlag("member-timeout"),
	)
	return cmd
}

func runDefrag(c *cli.Context) error {
	o := etcdops.DefragOptions{All: c.Bool("all"), DryRun: c.Bool("dry-run")}
	if c.IsSet("min-free") {
		if c.Bool("all") {
			return badArgs(fmt.Errorf("--min-free %q: give --min-free or --all, not both", c.String("min-free")))
		}
		mf, err := etcdops.ParseMinFree(c.String("min-free"))
		if err != nil {
			return badArgs(err)
		}
		o.MinFree = mf
	}
	wait, err := parseWait(c, "member-timeout")
	if err != nil {
		return err
	}
	o.Wait = wait
	// --timeout bounds finding the members and the checks before the
	// first member, then each check and request; --wait each member's
	// defragmentation and the wait for health after it.
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	o.ChecksBy, _ = s.ctx.Deadline()
	o.Logf = func(format string, args ...any) { fmt.Fprintf(c.App.ErrWriter, "[defrag] "+format+"\n", args...) }
	results, err := etcdops.Defrag(c.Context, s.target, o)
	if len(results) > 0 {
		if perr := printDefrag(c.App.Writer, c.String("output"), results); perr != nil {
			return fmt.Errorf("print defrag: %w", perr)
		}
	}
	if err != nil {
		return err
	}
	return nil
}

// defragRow is one member in `defrag -o json|yaml`.
type defragRow struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Before   int64  `json:"before"`
	After    int64  `json:"after"`
	Took     string `json:"took"`
	Skipped  bool   `json:"skipped"`
	Reason   string `json:"reason"`
}

func printDefrag(w io.Writer, format string, in []etcdops.DefragResult) error {
	rows := make([]defragRow, 0, len(in))
	for _, r := range in {
		row := defragRow{Name: r.Name, Endpoint: r.Endpoint, Before: r.Before, After: r.After, Skipped: r.Skipped, Reason: r.Reason}
		if r.Took > 0 {
			row.Took = formatTook(r.Took)
		}
		rows = append(rows, row)
	}
	if format != "table" {
		return writeDoc(w, format, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tROLE\tBEFORE\tAFTER\tTOOK\tRESULT\tREASON")
	for _, r := range in {
		role, result, after := "follower", "defragmented", etcdops.FormatBytes(r.After)
		if r.Leader {
			role = "leader"
		}
		if r.Skipped {
			result, after = "skipped", "-"
		} else if strings.HasPrefix(r.Reason, "failed") {
			result, after = "failed", "-"
		}
		took := "-"
		if r.Took > 0 {
			took = formatTook(r.Took)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(r.Name), r.Endpoint, role, etcdops.FormatBytes(r.Before), after, took, result, r.Reason)
	}
	return tw.Flush()
}

// opsError is an etcdops error as it is: exitCode tells bad input (2)
// from the cluster's refusal or failure (1).
func opsError(err error) error { return err }
