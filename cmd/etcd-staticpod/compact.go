package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

func compactCommand() *cli.Command {
	cmd := clusterCommand(&cli.Command{
		Name:      "compact",
		Usage:     "drop the history of every key before the current revision (or N revisions behind it)",
		UsageText: "etcd-staticpod compact [--keep-revisions N] " + connectUsage,
		Description: `etcd keeps every version of every key until it is compacted away. This command
reads the cluster's current revision and compacts to it, or --keep-revisions N
behind it, as "etcdctl compaction --physical" does: the current value of every
key stays, older versions are gone, and watchers that start before that revision
are told to list afresh. It returns once every member has applied it, so that
"etcd-staticpod defrag" right after can give the freed pages back.

kube-apiserver compacts every 5 minutes by itself; run this for a NOSPACE
recovery or after deleting a lot. --timeout bounds the whole command; a large
database may need more than the default to apply the compaction.

Output: the current revision and the revision compacted to. -o json (or yaml)
prints {"revision", "compactedTo", "keepRevisions", "alreadyCompacted", "took"}.

` + findingTheCluster + `

` + exitStatusHelp + `

Examples:
  # on an etcd host: all history
  etcd-staticpod compact

  # keep the last 1000 revisions, from the machine that ran init
  etcd-staticpod compact --bundle ./etcd-bundles/etcd01 --keep-revisions 1000 -o json`,
		Action: runCompact,
	})
	cmd.Flags = append(cmd.Flags,
		&cli.StringFlag{Name: "keep-revisions", Value: "0", Usage: "keep this many `N` revisions behind the current one (0: compact to the current revision)"},
	)
	return cmd
}

func runCompact(c *cli.Context) error {
	keep, err := strconv.ParseInt(c.String("keep-revisions"), 10, 64)
	if err != nil || keep < 0 {
		return badArgs(fmt.Errorf("--keep-revisions %q: want a whole number, 0 or more", c.String("keep-revisions")))
	}
	s, err := connect(c)
	if err != nil {
		return err
	}
	defer s.close()
	res, err := etcdops.Compact(s.ctx, s.target, keep)
	if err != nil {
		return opsError(err)
	}
	return printCompact(c.App.Writer, c.String("output"), res, keep)
}

// compactDoc is `compact -o json|yaml`.
type compactDoc struct {
	Revision         int64  `json:"revision"`
	CompactedTo      int64  `json:"compactedTo"`
	KeepRevisions    int64  `json:"keepRevisions"`
	AlreadyCompacted bool   `json:"alreadyCompacted"`
	Took             string `json:"took"`
}

func printCompact(w io.Writer, format string, r etcdops.CompactResult, keep int64) error {
	d := compactDoc{Revision: r.Revision, CompactedTo: r.CompactedTo, KeepRevisions: keep, AlreadyCompacted: r.Already, Took: formatTook(r.Took)}
	if format != "table" {
		return writeDoc(w, format, d)
	}
	switch {
	case r.CompactedTo == 0:
		_, err := fmt.Fprintf(w, "nothing to compact: the revision is %d, and %d revisions are kept\n", r.Revision, keep)
		return err
	case r.Already:
		_, err := fmt.Fprintf(w, "already compacted to revision %d or later (current revision %d)\n", r.CompactedTo, r.Revision)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "REVISION\t%d\n", d.Revision)
	fmt.Fprintf(tw, "COMPACTED TO\t%d\n", d.CompactedTo)
	fmt.Fprintf(tw, "TOOK\t%s\n", d.Took)
	return tw.Flush()
}
