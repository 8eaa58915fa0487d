package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

// alarmCommands list and disarm the cluster's alarms.
func alarmCommands() []*cli.Command {
	return []*cli.Command{{
		Name:     "alarm",
		Category: "running cluster",
		Usage:    "list the cluster's active alarms (NOSPACE, CORRUPT) or disarm NOSPACE",
		Description: `etcd raises an alarm for the whole cluster when a member's database reaches its
quota (NOSPACE: the cluster takes reads and deletes, but no writes) or when the
corruption check finds a member whose data differs (CORRUPT). An alarm stays
until it is disarmed; health fails while one is active.`,
		Subcommands: []*cli.Command{alarmListCommand(), alarmDisarmCommand()},
	}}
}

func alarmListCommand() *cli.Command {
	return clusterCommand(&cli.Command{
		Name:      "list",
		Usage:     "list the active alarms: which member raised which",
		UsageText: "etcd-staticpod alarm list " + connectUsage,
		Description: `Asks the cluster (any member: alarms go through raft) for its active alarms.
The exit status is 0 whether or not an alarm is active; use the output, or
health, to act on one.

Output: one row per alarm, or "no active alarm". -o json (or yaml) prints a list
of {"member", "memberID", "alarm"}, for example
[{"member":"etcd02","memberID":"8e9e05c52164694d","alarm":"NOSPACE"}], and [] when
none is active.

` + findingTheCluster + `

` + exitStatusHelp + `

Examples:
  # on an etcd host
  etcd-staticpod alarm list

  # from the machine that ran init, in a monitoring script
  etcd-staticpod alarm list --bundle ./etcd-bundles/etcd01 -o json | jq -e 'length == 0'`,
		Action: func(c *cli.Context) error {
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			alarms, err := etcdops.Alarms(s.ctx, s.target)
			if err != nil {
				return err
			}
			return printAlarms(c.App.Writer, c.String("output"), alarms, "no active alarm")
		},
	})
}

func alarmDisarmCommand() *cli.Command {
	return clusterCommand(&cli.Command{
		Name:      "disarm",
		Usage:     "disarm NOSPACE once the space is back; CORRUPT is refused",
		UsageText: "etcd-staticpod alarm disarm " + connectUsage,
		Description: `Disarms every active NOSPACE alarm, so that the cluster takes writes again.
etcd measures its database file against --quota-backend-bytes, and a compaction
alone does not shrink that file: first free the space, then disarm. The command
checks every member's database size against its quota first and refuses while
one is within 5% of it, since the next write would raise the alarm again.

The NOSPACE recovery, with nothing but this tool:
  1. delete what should not be there (or raise --quota-backend-bytes on every member);
  2. etcd-staticpod compact          drop the old revisions
  3. etcd-staticpod defrag --all     give the pages back, one member at a time
  4. etcd-staticpod alarm disarm

A CORRUPT alarm is refused: disarming does not repair the member whose data
differs, and the cluster would go on serving that data. Take that member out and
add it again with empty data (member remove, member add), or restore the cluster
from a snapshot.

Output: the alarms disarmed, as alarm list prints them.

` + findingTheCluster + `

Exit status: 0 when no alarm is left (also when none was active), 1 when the
disarm is refused (CORRUPT, or a database still at its quota) or the cluster
does not answer, 2 for a bad flag or unreadable local files.

Examples:
  etcd-staticpod alarm disarm
  etcd-staticpod alarm disarm --bundle ./etcd-bundles/etcd01 -o json`,
		Action: func(c *cli.Context) error {
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := etcdops.DisarmAlarms(s.ctx, s.target)
			if err != nil {
				return opsError(err)
			}
			return printAlarms(c.App.Writer, c.String("output"), res.Disarmed, "no active alarm: nothing to disarm")
		},
	})
}

// alarmRow is one alarm in `alarm list|disarm -o json|yaml`.
type alarmRow struct {
	Member   string `json:"member"`
	MemberID string `json:"memberID"`
	Alarm    string `json:"alarm"`
}

func printAlarms(w io.Writer, format string, in []etcdops.Alarm, none string) error {
	rows := make([]alarmRow, 0, len(in))
	for _, a := range in {
		rows = append(rows, alarmRow{Member: a.Member, MemberID: etcdops.FormatID(a.MemberID), Alarm: a.Type})
	}
	if format != "table" {
		return writeDoc(w, format, rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, none)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tMEMBER ID\tALARM")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", dash(r.Member), r.MemberID, r.Alarm)
	}
	return tw.Flush()
}
