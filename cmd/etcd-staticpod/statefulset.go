package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/kube"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/stsops"
)

// statefulSetCommand is the group of commands for etcd run as a
// StatefulSet inside Kubernetes (init --runtime statefulset).
func statefulSetCommand() *cli.Command {
	return &cli.Command{
		Name:     "statefulset",
		Category: "running cluster",
		Usage:    "run day 2 of etcd inside Kubernetes (init --runtime statefulset): scale, health, status, members",
		Description: `The members of a StatefulSet made by init --runtime statefulset are Pods; their
client URLs are DNS names inside the cluster. These commands reach each member
from outside through a port-forward to its Pod, as kubectl port-forward does,
and show the healthcheck client certificate of the bundle folder (the Secret
NAME-healthcheck-client in OUT/statefulset/etcd.yaml), checked against the CA.

` + kubeWhere,
		Subcommands: []*cli.Command{stsScaleCommand(), stsHealthCommand(), stsStatusCommand(), stsMembersCommand()},
	}
}

const kubeWhere = `Where the cluster is:
  --out DIR            the bundle folder of init --runtime statefulset (alias --dir): the
                       spec (cluster.yaml), the CA and statefulset/etcd.yaml
  --kubeconfig FILE    found as kubectl finds it: --kubeconfig, else $KUBECONFIG, else
                       ~/.kube/config; --context picks a context
  --namespace NS       must be the spec's namespace (its certificates name it); default
                       the spec's`

// stsFlags are what every statefulset command reads.
func stsFlags(timeoutUsage string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "out", Aliases: []string{"dir"}, Value: "./" + layout.DefaultOut, Usage: "bundle `DIR` of init --runtime statefulset", TakesFile: true},
		&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig `FILE` (default $KUBECONFIG, else ~/.kube/config)", TakesFile: true},
		&cli.StringFlag{Name: "context", Usage: "kubeconfig context `NAME` (default the current context)"},
		&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Usage: "the StatefulSet's `NAMESPACE` (default, and only accepted value: the spec's)"},
		timeoutFlag(timeoutUsage),
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json or yaml"},
	}
}

func stsReadFlags() []cli.Flag {
	return stsFlags("the whole command: the port-forwards and every member's answer")
}

// openStatefulSet checks the flags every statefulset command shares and
// opens the cluster; perRequest bounds each request.
func openStatefulSet(c *cli.Context, perRequest time.Duration) (*stsops.Cluster, string, error) {
	if c.NArg() > 0 {
		return nil, "", badArgs(fmt.Errorf("unexpected argument %q: %s takes flags only", c.Args().First(), c.Command.HelpName))
	}
	format, err := outputFormat(c)
	if err != nil {
		return nil, "", err
	}
	for _, name := range []string{"out", "kubeconfig", "context", "namespace"} {
		if c.IsSet(name) && strings.TrimSpace(c.String(name)) == "" {
			return nil, "", badArgs(fmt.Errorf("--%s %q: must not be empty", name, c.String(name)))
		}
	}
	log := c.App.Writer
	if format != "table" {
		log = c.App.ErrWriter
	}
	cl, err := stsops.Open(stsops.Options{
		Out:     c.String("out"),
		Kube:    kube.Options{Kubeconfig: c.String("kubeconfig"), Context: c.String("context"), Namespace: c.String("namespace")},
		Timeout: perRequest,
		Log:     log,
	})
	return cl, format, err
}

// readStatefulSet opens the cluster for a command that --timeout bounds as
// a whole.
// stsReport asks every member through ask, prints the answers and fails
// naming the members failed says did.
func stsReport[R any](c *cli.Context, ask func(*stsops.Cluster, context.Context) ([]R, error), print func(printer, []R) error, what, failure string, failed func(R) (string, bool)) error {
	cl, p, ctx, done, err := readStatefulSet(c)
	if err != nil {
		return err
	}
	defer done()
	results, err := ask(cl, ctx)
	if err != nil {
		return err
	}
	if err := print(p, results); err != nil {
		return fmt.Errorf("print %s: %w", what, err)
	}
	var bad []string
	for _, r := range results {
		if endpoint, ok := failed(r); ok {
			bad = append(bad, endpoint)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s %s (%d of %d members)", failure, strings.Join(bad, ", "), len(bad), len(results))
	}
	return nil
}

func readStatefulSet(c *cli.Context) (*stsops.Cluster, printer, context.Context, func(), error) {
	ctx, cancel, err := commandDeadline(c)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	timeout, _ := parseTimeout(c)
	cl, format, err := openStatefulSet(c, timeout)
	if err != nil {
		cancel()
		return nil, nil, nil, nil, err
	}
	return cl, newPrinter(format, c.App.Writer), ctx, func() { cl.Close(); cancel() }, nil
}

const stsExitStatus = `Exit status: 0 on success, 1 when a member or the Kubernetes API answered with a
failure or not at all, 2 for a bad flag, a bundle folder that is not of runtime
statefulset, or a kubeconfig that cannot be used.`

func stsHealthCommand() *cli.Command {
	return &cli.Command{
		Name:      "health",
		Usage:     "check that every member commits a read through raft and no alarm is raised",
		UsageText: "etcd-staticpod statefulset health [--out DIR] [--kubeconfig FILE] [--context NAME] [--namespace NS] [--timeout DURATION] [-o table|json|yaml]",
		Description: `Checks each member of the StatefulSet (the Pods NAME-0 .. NAME-(replicas-1), and any
other member of the member list) through a port-forward to its own Pod, as
etcd-staticpod health does: a linearizable read through raft, and no active alarm.
A member whose Pod does not run is unhealthy, with the reason. Rows name each
member's client URL inside the cluster.

Output: one row per member; -o json (or yaml) as etcd-staticpod health -o json.

` + kubeWhere + `

` + stsExitStatus + ` Unhealthy members exit 1.

Examples:
  # the bundle folder in ./etcd-bundles, the kubeconfig as kubectl finds it
  etcd-staticpod statefulset health

  etcd-staticpod statefulset health --out /srv/etcd-app --kubeconfig ~/.kube/prod.conf -o json`,
		Flags: stsReadFlags(),
		Action: func(c *cli.Context) error {
			return stsReport(c, (*stsops.Cluster).Health, printer.Health, "health", "unhealthy:",
				func(r etcdops.EndpointHealth) (string, bool) { return r.Endpoint, !r.Healthy })
		},
	}
}

func stsStatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show each member's version, database size, leader and raft progress",
		UsageText: "etcd-staticpod statefulset status [--out DIR] [--kubeconfig FILE] [--context NAME] [--namespace NS] [--timeout DURATION] [-o table|json|yaml]",
		Description: `Asks each member of the StatefulSet for its status through a port-forward to its
own Pod, as etcd-staticpod status does. Rows name each member's client URL inside
the cluster.

Output: -o json (or yaml) as etcd-staticpod status -o json.

` + kubeWhere + `

` + stsExitStatus + ` A member that gives no status exits 1.

Examples:
  etcd-staticpod statefulset status
  etcd-staticpod statefulset status -o json | jq -r '.[] | select(.isLeader) | .name'`,
		Flags: stsReadFlags(),
		Action: func(c *cli.Context) error {
			return stsReport(c, (*stsops.Cluster).Status, printer.Status, "status", "no status from",
				func(r etcdops.EndpointStatus) (string, bool) { return r.Endpoint, r.Error != "" })
		},
	}
}

func stsMembersCommand() *cli.Command {
	return &cli.Command{
		Name:      "members",
		Usage:     "list the cluster's members",
		UsageText: "etcd-staticpod statefulset members [--out DIR] [--kubeconfig FILE] [--context NAME] [--namespace NS] [--timeout DURATION] [-o table|json|yaml]",
		Description: `Reads the member list with a linearizable request through port-forwards to the
StatefulSet's running Pods, as etcd-staticpod members does.

Output: -o json (or yaml) as etcd-staticpod members -o json.

` + kubeWhere + `

` + stsExitStatus + `

Examples:
  etcd-staticpod statefulset members
  etcd-staticpod statefulset members --namespace apps -o yaml`,
		Flags: stsReadFlags(),
		Action: func(c *cli.Context) error {
			cl, p, ctx, done, err := readStatefulSet(c)
			if err != nil {
				return err
			}
			defer done()
			ms, err := cl.Members(ctx)
			if err != nil {
				return err
			}
			if err := p.Members(ms); err != nil {
				return fmt.Errorf("print members: %w", err)
			}
			return nil
		},
	}
}

func stsScaleFlags() []cli.Flag {
	return append(stsFlags("each request to the Kubernetes API"),
		&cli.IntFlag{Name: "replicas", Usage: "the number of members `N` to scale to (1 to 15)"},
		waitFlag(stsops.DefaultWait, "the whole command: every member's start, catch-up and promotion, every Pod's end"),
		&cli.BoolFlag{Name: "delete-volumes", Usage: "delete a removed member's PersistentVolumeClaim, and one left from an earlier member of an ordinal being added"},
		&cli.BoolFlag{Name: "force", Usage: "go below 3 voting members, or remove while the rest are not a healthy quorum"},
		waitLockFlag(),
	)
}

func stsScaleCommand() *cli.Command {
	return &cli.Command{
		Name:      "scale",
		Usage:     "add or remove members one at a time: certificates, membership, ConfigMap, replicas",
		UsageText: "etcd-staticpod statefulset scale --replicas N [--out DIR] [--kubeconfig FILE] [--namespace NS] [--delete-volumes] [--force] [--wait DURATION] [--timeout DURATION] [-o table|json|yaml]",
		Description: `Scales the StatefulSet to N members, one member at a time, so that etcd's member
list and the StatefulSet never disagree by more than the member being changed.

Out, for each new ordinal i (Pod NAME-i):
  1. checks, changing nothing: no PersistentVolumeClaim data-NAME-i is left from an
     earlier member of that ordinal (its Pod would start that member again with
     data the cluster no longer accepts: refused, or deleted with --delete-volumes),
     no other learner, every voting member healthy;
  2. issues NAME-i's server and peer certificates from the CA in OUT into the Secret
     NAME-members (the CA key stays in OUT);
  3. adds NAME-i to etcd as a learner (a learner does not vote: quorum is not at risk);
  4. sets the ConfigMap NAME-cluster: initial-cluster lists NAME-0 .. NAME-i,
     initial-cluster-state existing;
  5. raises the StatefulSet's replicas to i+1;
  6. waits for the learner to start and catch up, promotes it, and waits for its Pod
     to be Ready.
In, for the highest ordinal i:
  1. removes NAME-i from etcd's membership first, with the rules of member remove:
     refused when fewer than 3 voting members would remain, or the rest are not a
     healthy quorum (--force goes ahead); leadership moves away from it first;
  2. lowers the replicas to i and waits for the Pod to be gone;
  3. removes its keys from the Secret and it from the ConfigMap;
  4. keeps its PersistentVolumeClaim data-NAME-i unless --delete-volumes.
At the end OUT/cluster.yaml and OUT/statefulset/etcd.yaml record the new replicas,
the certificates in the Secret and initial-cluster-state existing, so that applying
the stream again keeps the cluster as it is.

Interrupted, the same command run again finishes the job: a learner an earlier run
added is taken up and promoted, a member already removed is not removed again.
--wait bounds the whole command, --timeout each request.

The progress lines say what the cluster saw: "Added NAME-i to the cluster as a
learner", "StatefulSet NAME: replicas 3 -> 4", "Promoted NAME-i to a voting member",
"Removed NAME-i (ID ...) from the cluster", "Pod NAME-i is gone".

Output: the progress, then the member list. -o json (or yaml) prints {"from", "to",
"steps", "members"}: steps as {"action", "member", "id", "from", "to"} with action
added-learner, promoted, removed, replicas, deleted-volume or kept-volume; members as
in etcd-staticpod members -o json; the progress then goes to stderr.

` + kubeWhere + `

` + stsExitStatus + `

Examples:
  # three members to five, then back to three
  etcd-staticpod statefulset scale --replicas 5
  etcd-staticpod statefulset scale --replicas 3

  # another bundle folder and cluster; delete the removed members' volumes
  etcd-staticpod statefulset scale --replicas 3 --out /srv/etcd-app --kubeconfig ~/.kube/prod.conf --delete-volumes

  # JSON for scripts, progress on stderr
  etcd-staticpod statefulset scale --replicas 5 -o json`,
		Flags: stsScaleFlags(),
		Action: func(c *cli.Context) error {
			if !c.IsSet("replicas") {
				return badArgs(errors.New("--replicas: missing; usage: " + c.Command.UsageText))
			}
			perRequest, err := parseTimeout(c)
			if err != nil {
				return err
			}
			wait, err := parseWait(c, "")
			if err != nil {
				return err
			}
			cl, format, err := openStatefulSet(c, perRequest)
			if err != nil {
				return err
			}
			defer cl.Close()
			release, err := holdFolders(c, c.String("out"), "", false)
			if err != nil {
				return err
			}
			defer release()
			ctx, cancel := context.WithDeadline(c.Context, runStart(c).Add(wait))
			defer cancel()
			res, err := cl.Scale(ctx, stsops.ScaleOptions{Replicas: c.Int("replicas"), DeleteVolumes: c.Bool("delete-volumes"), Force: c.Bool("force")})
			if res != nil && err == nil {
				if format == "table" {
					fmt.Fprintln(c.App.Writer)
					return tablePrinter{c.App.Writer}.Members(res.Members)
				}
				steps := res.Steps
				if steps == nil {
					steps = []stsops.Step{}
				}
				return writeDoc(c.App.Writer, format, scaleDoc{From: res.From, To: res.To, Steps: steps, Members: memberRows(res.Members)})
			}
			return err
		},
	}
}

// scaleDoc is statefulset scale's -o json document.
type scaleDoc struct {
	From    int           `json:"from"`
	To      int           `json:"to"`
	Steps   []stsops.Step `json:"steps"`
	Members []memberRow   `json:"members"`
}
