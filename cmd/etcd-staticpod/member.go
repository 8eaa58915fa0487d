package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/membership"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// memberCommands are the commands that scale the cluster out and in.
func memberCommands() []*cli.Command {
	list := membersCommand()
	list.Name = "list"
	list.Usage = "list the cluster's members (the same as `etcd-staticpod members`)"
	list.UsageText = "etcd-staticpod member list " + connectUsage
	list.Category = ""
	return []*cli.Command{{
		Name:     "member",
		Usage:    "scale the cluster out and in: add, promote and remove members",
		Category: "running cluster",
		Description: `Changes the cluster's membership and keeps the bundle folder in step: the recorded
spec OUT/cluster.yaml, the control plane's OUT/kubeadm-config.yaml and, when
OUT/monitoring exists (init --monitoring), Prometheus' OUT/monitoring/prometheus.yml
always list the cluster's members. Run from the machine that ran init (it holds the CA key).`,
		Subcommands: []*cli.Command{memberAddCommand(), memberPromoteCommand(), memberRemoveCommand(), list},
	}}
}

const memberWhere = `The bundle folder and the cluster:
  --out DIR            the folder init wrote (default ./etcd-bundles): the spec DIR/cluster.yaml,
                       the CA store DIR/pki/etcd and one folder per host.
  --config FILE        start from this spec instead of DIR/cluster.yaml; the updated spec is
                       recorded in DIR/cluster.yaml (FILE is left as it is).
The cluster is found through the first host folder in DIR (its certificates and
manifest, then the member list), as with --bundle; --bundle, --endpoints, --cacert,
--cert, --key and --identity work as for etcd-staticpod members.

Time: --timeout (default 5s) bounds each request to etcd, and the checks before a
change taken together, counted from the command's start; --wait (add and promote,
default 10m) bounds the wait for the learner.`

const memberExitStatus = `Exit status: 0 on success; 1 when the cluster is unhealthy, refuses the change or
does not answer, or the wait ends first; 2 for bad input (a flag, the spec, the local
files, or a host the cluster or the spec already has), with nothing changed.`

// memberFlags are shared by the member commands; made fresh per command.
func memberFlags(extra ...cli.Flag) []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "out", Value: "./" + layout.DefaultOut, Usage: "bundle `DIR` written by init: the spec, the CA store and the host folders", TakesFile: true},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "cluster spec `FILE` to start from (default: OUT/" + layout.SpecFile + ")", TakesFile: true},
		&cli.StringFlag{Name: "bundle", Usage: "host folder `DIR/NAME` to reach the cluster through (default: the first host folder in OUT)", TakesFile: true},
		&cli.StringFlag{Name: "endpoints", Usage: "client `URLS`, comma-separated, used exactly as given"},
		&cli.StringFlag{Name: "cacert", Usage: "CA certificate `FILE` that signed the servers' certificates", TakesFile: true},
		&cli.StringFlag{Name: "cert", Usage: "client certificate `FILE`", TakesFile: true},
		&cli.StringFlag{Name: "key", Usage: "client key `FILE` of --cert", TakesFile: true},
		&cli.StringFlag{Name: "identity", Value: etcdops.IdentityHealthcheck, Usage: "client certificate pair `NAME` from the host folder: " + strings.Join(etcdops.Identities(), " or ")},
		timeoutFlag("the checks before a change as a whole (finding the cluster, its member list, every member's health)"),
		oldFlag("request-timeout"),
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json or yaml (progress then goes to stderr)"},
		waitLockFlag(),
	}
	return append(flags, extra...)
}

func addFlags() []cli.Flag {
	return memberFlags(
		&cli.StringFlag{Name: "ca-cert", Usage: "use this CA certificate `FILE` instead of OUT/pki/etcd/ca.crt", TakesFile: true},
		&cli.StringFlag{Name: "ca-key", Usage: "the key `FILE` of --ca-cert", TakesFile: true},
		&cli.StringSliceFlag{Name: "server-cert-san", Usage: "extra SAN of the new host's etcd-server certificate; comma-separated or repeated"},
		&cli.StringSliceFlag{Name: "peer-cert-san", Usage: "extra SAN of the new host's etcd-peer certificate; comma-separated or repeated"},
		&cli.BoolFlag{Name: "voting", Usage: "add a voting member instead of a learner (no promotion)"},
		&cli.BoolFlag{Name: "no-promote", Usage: "return once the learner is added; promote it later with member promote"},
		&cli.StringFlag{Name: "etcd-binary", Usage: "runtime systemd: put this etcd binary `FILE` into the new host's bundle at the unit's " + layout.EtcdBinary + " (default: the spec's etcdBinary, if any); recorded in the spec", TakesFile: true},
		learnerWaitFlag(),
	)
}

func promoteFlags() []cli.Flag { return memberFlags(learnerWaitFlag()) }

func removeFlags() []cli.Flag {
	return memberFlags(&cli.BoolFlag{Name: "force", Usage: "go below 3 voting members, or remove while the rest are not a healthy quorum"})
}

func learnerWaitFlag() cli.Flag {
	return waitFlag(membership.DefaultWait, "the wait for the learner to start, catch up, be promoted and serve clients, such as 30m")
}

func memberCommand(cmd *cli.Command) *cli.Command {
	return cmd
}

func memberAddCommand() *cli.Command {
	return memberCommand(&cli.Command{
		Name:      "add",
		Usage:     "add a host: make its bundle, add it as a learner, promote it once in sync",
		UsageText: "etcd-staticpod member add NAME=ADDRESS [--out DIR] [--config FILE] [--voting | --no-promote] [--wait DURATION] [--timeout DURATION] [-o table|json|yaml]",
		Description: `Adds one etcd host to the running cluster, in an order that a failure at any point
leaves recoverable:

  1. checks, changing nothing: NAME and ADDRESS are neither in the spec nor in the
     cluster's member list, the spec's hosts are exactly the cluster's members, and
     every voting member is healthy;
  2. writes the new host's folder OUT/NAME and OUT/NAME.tar.gz with init's phases for
     that host alone (certificates from the CA store; other hosts' files are not
     touched). Its manifest has --initial-cluster = every member plus the new one and
     --initial-cluster-state=existing; with runtime systemd, its /etc/etcd/etcd.conf.yml
     says the same (initial-cluster-state: existing) beside etcd.service, and the
     bundle carries the etcd binary of --etcd-binary (or of the spec's etcdBinary);
  3. adds the member through the API, as a learner (--voting: as a voting member);
  4. records the host in OUT/cluster.yaml, its endpoint in OUT/kubeadm-config.yaml, its
     target in OUT/monitoring/prometheus.yml when that folder exists (one line says so)
     and its archive in OUT/SHA256SUMS, and prints how to copy and start the bundle;
  5. waits, up to --wait, for the learner to start and catch up with the leader,
     and promotes it, retrying while etcd answers that it is not in sync yet.
     --no-promote stops after step 4; ` + "`etcd-staticpod member promote NAME`" + ` does step 5 alone.

If step 3 fails, the new host's folder is removed again and nothing is recorded. If
step 4 fails, the member is in the cluster but not in the spec: the same command run
again sees the member (not started, on that address) and finishes. If step 5 times
out, the member stays a learner: ` + "`member promote`" + ` finishes once it runs.

The recorded spec's etcd.initialClusterState becomes "existing": the cluster exists,
so any member made from the spec from now on joins it. The other hosts' manifests are
left alone; a member that has its data ignores --initial-cluster-state and
--initial-cluster, so a later init that rewrites them changes nothing for them.

A learner does not vote, so adding one never puts quorum at risk. With --voting the
member counts for quorum at once, before it has started: a three-member cluster then
needs three of four members up until it has.

` + memberWhere + `

Output: the progress, the commands for the new host and then the member list. -o json
(or yaml) prints {"host", "member", "members", "resumed", "promoted", "bundle",
"archive"}, member entries as in etcd-staticpod members -o json, the progress on stderr.

` + memberExitStatus + `

Examples:
  # a fourth host, promoted once it has started and caught up
  etcd-staticpod member add etcd04=10.107.88.18

  # a host that takes long to start: up to 30 minutes for the learner
  etcd-staticpod member add etcd04=10.107.88.18 --wait 30m

  # add now, start and promote later
  etcd-staticpod member add etcd04=10.107.88.18 --no-promote
  etcd-staticpod member promote etcd04

  # runtime systemd: the new host's bundle carries etcd; the printed steps end with
  # systemctl daemon-reload && systemctl enable --now --no-block etcd.service
  etcd-staticpod member add etcd04=10.107.88.18 --etcd-binary ./etcd-v3.6.8-linux-amd64/etcd

  # a host with an extra SAN, through a bundle folder elsewhere
  etcd-staticpod member add etcd05=10.107.88.19 --out /srv/etcd-bundles --server-cert-san etcd05.example.internal`,
		Flags: addFlags(),
		Action: withTrailingFlags(addFlags, func(c *cli.Context) error {
			arg, err := oneArg(c, "NAME=ADDRESS")
			if err != nil {
				return err
			}
			h, err := spec.ParseHost(arg)
			if err != nil {
				return badArgs(err)
			}
			h.ServerCertSANs = spec.SplitList(c.StringSlice("server-cert-san")...)
			h.PeerCertSANs = spec.SplitList(c.StringSlice("peer-cert-san")...)
			if c.Bool("voting") && c.Bool("no-promote") {
				return badArgs(fmt.Errorf("--no-promote: a member added with --voting is not promoted; give one or the other"))
			}
			run, err := newMemberRun(c)
			if err != nil {
				return err
			}
			wait, err := parseWait(c, "")
			if err != nil {
				return err
			}
			run.opts.CACert, run.opts.CAKey = c.String("ca-cert"), c.String("ca-key")
			if (run.opts.CACert == "") != (run.opts.CAKey == "") {
				return badArgs(fmt.Errorf("--ca-cert %q and --ca-key %q: give both or neither", run.opts.CACert, run.opts.CAKey))
			}
			release, err := holdFolders(c, run.opts.Out, "", false)
			if err != nil {
				return err
			}
			defer release()
			res, err := membership.Add(c.Context, membership.AddOptions{
				Options: run.opts, Host: h, Voting: c.Bool("voting"), NoPromote: c.Bool("no-promote"), Wait: wait,
				EtcdBinary: c.String("etcd-binary"),
			})
			if res != nil && err == nil {
				doc := addDoc{
					Host:     hostRow{Name: h.Name, Address: h.Address},
					Member:   memberRows([]etcdops.Member{res.Member})[0],
					Members:  memberRows(res.Members),
					Resumed:  res.Resumed,
					Promoted: res.Promoted,
					Bundle:   res.Bundle,
					Archive:  res.Archive,
				}
				if perr := run.print(doc, res.Members); perr != nil {
					return perr
				}
			}
			return err
		}),
	})
}

func memberPromoteCommand() *cli.Command {
	return memberCommand(&cli.Command{
		Name:      "promote",
		Usage:     "wait for a learner to start and catch up, and make it a voting member",
		UsageText: "etcd-staticpod member promote NAME [--out DIR] [--wait DURATION] [--timeout DURATION] [-o table|json|yaml]",
		Description: `Waits, up to --wait, for the learner NAME to start and catch up with the leader,
and promotes it, retrying with backoff while etcd answers "can only promote a learner
member which is in sync with leader". A learner that has not started yet is found
by the address the spec gives NAME. A member that votes already is success.

` + memberWhere + `

Output: the progress, then the member list. -o json (or yaml) prints {"member",
"members", "alreadyVoting"}, the progress on stderr.

` + memberExitStatus + `

Examples:
  etcd-staticpod member promote etcd04
  etcd-staticpod member promote etcd04 --out /srv/etcd-bundles --wait 30m -o json

  # a slow link to the cluster: up to 15s for each request, an hour for the learner
  etcd-staticpod member promote etcd04 --timeout 15s --wait 1h`,
		Flags: promoteFlags(),
		Action: withTrailingFlags(promoteFlags, func(c *cli.Context) error {
			name, run, err := namedMemberRun(c)
			if err != nil {
				return err
			}
			wait, err := parseWait(c, "")
			if err != nil {
				return err
			}
			release, err := holdFolders(c, run.opts.Out, "", false)
			if err != nil {
				return err
			}
			defer release()
			res, err := membership.Promote(c.Context, membership.PromoteOptions{Options: run.opts, Name: name, Wait: wait})
			if res != nil && err == nil {
				doc := promoteDoc{Member: memberRows([]etcdops.Member{res.Member})[0], Members: memberRows(res.Members), AlreadyVoting: res.Already}
				if perr := run.print(doc, res.Members); perr != nil {
					return perr
				}
			}
			return err
		}),
	})
}

func memberRemoveCommand() *cli.Command {
	return memberCommand(&cli.Command{
		Name:      "remove",
		Usage:     "remove a member: from the cluster, then from the spec and kubeadm-config.yaml",
		UsageText: "etcd-staticpod member remove NAME [--out DIR] [--force] [--timeout DURATION] [-o table|json|yaml]",
		Description: `Removes the member NAME (looked up by name in the member list, or, if it never
started, by the address the spec gives NAME) through the API, then the host from
OUT/cluster.yaml, its endpoint from OUT/kubeadm-config.yaml and, when OUT/monitoring
exists, its target from OUT/monitoring/prometheus.yml (one line says so), and prints what is
left to do on the host: remove its manifest so that kubelet stops the Pod, then its
data (runtime systemd: systemctl disable --now etcd.service, then its data in
/var/lib/private, where DynamicUser= keeps it). The host folder OUT/NAME and its
archive are left in place.

Refused, with nothing changed, when fewer than 3 voting members would remain, or when
the remaining healthy voting members would not be a quorum of the new membership;
--force goes ahead anyway. The last member is never removed. A learner is removed
freely. When NAME leads, leadership moves first to the most up-to-date healthy
member, so that the cluster does not wait for an election.

If NAME is in the spec but no longer a member (an earlier run removed it and could
not record the spec), the spec is brought up to date.

` + memberWhere + `

Output: the progress, the steps for the host and then the member list. -o json (or
yaml) prints {"host", "member", "members", "wasMember", "leaderMovedTo"}, the
progress on stderr.

` + memberExitStatus + `

Examples:
  etcd-staticpod member remove etcd02

  # two members left, knowingly
  etcd-staticpod member remove etcd03 --force`,
		Flags: removeFlags(),
		Action: withTrailingFlags(removeFlags, func(c *cli.Context) error {
			name, run, err := namedMemberRun(c)
			if err != nil {
				return err
			}
			release, err := holdFolders(c, run.opts.Out, "", false)
			if err != nil {
				return err
			}
			defer release()
			res, err := membership.Remove(c.Context, membership.RemoveOptions{Options: run.opts, Name: name, Force: c.Bool("force")})
			if res != nil && err == nil {
				doc := removeDoc{Host: hostRow{Name: res.Host.Name, Address: res.Host.Address}, Members: memberRows(res.Members), WasMember: res.WasMember, LeaderMovedTo: res.LeaderMovedTo}
				if res.WasMember {
					row := memberRows([]etcdops.Member{res.Member})[0]
					doc.Member = &row
				}
				if perr := run.print(doc, res.Members); perr != nil {
					return perr
				}
			}
			return err
		}),
	})
}

// memberRun is what the member commands share: the options and where the
// result goes.
type memberRun struct {
	opts   membership.Options
	format string
	out    io.Writer
}

func newMemberRun(c *cli.Context) (*memberRun, error) {
	format, err := outputFormat(c)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"out", "config", "bundle", "cacert", "cert", "key", "identity", "ca-cert", "ca-key", "etcd-binary"} {
		if c.IsSet(name) && strings.TrimSpace(c.String(name)) == "" {
			return nil, badArgs(fmt.Errorf("--%s %q: must not be empty", name, c.String(name)))
		}
	}
	// add's and promote's --timeout once bounded their wait.
	parse := parseTimeout
	if c.Command.Name != "remove" {
		parse = parseRequestTimeout
	}
	timeout, err := parse(c)
	if err != nil {
		return nil, err
	}
	// The checks before a change count from the process's start.
	checksBy := runStart(c).Add(timeout)
	var endpoints []string
	if c.IsSet("endpoints") {
		endpoints = []string{c.String("endpoints")}
	}
	log := c.App.Writer
	if format != "table" {
		// The document alone on stdout, so that it parses.
		log = c.App.ErrWriter
	}
	return &memberRun{
		format: format,
		out:    c.App.Writer,
		opts: membership.Options{
			Out:    c.String("out"),
			Config: c.String("config"),
			Connect: etcdops.Options{
				Endpoints: endpoints,
				CACert:    c.String("cacert"),
				Cert:      c.String("cert"),
				Key:       c.String("key"),
				Bundle:    c.String("bundle"),
				Identity:  c.String("identity"),
				Timeout:   timeout,
			},
			Log:      log,
			ChecksBy: checksBy,
			Warn:     c.App.ErrWriter,
		},
	}, nil
}

// namedMemberRun reads the NAME argument and the flags of a member command
// about one member.
func namedMemberRun(c *cli.Context) (string, *memberRun, error) {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return "", nil, err
	}
	run, err := newMemberRun(c)
	return name, run, err
}

// print writes the result: the member list as a table, or doc as JSON or
// YAML.
func (r *memberRun) print(doc any, members []etcdops.Member) error {
	var err error
	if r.format == "table" {
		fmt.Fprintln(r.out)
		err = tablePrinter{r.out}.Members(members)
	} else {
		err = writeDoc(r.out, r.format, doc)
	}
	if err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	return nil
}

// The documents of -o json and -o yaml; their field names are part of the
// command-line interface.

type hostRow struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

type addDoc struct {
	Host     hostRow     `json:"host"`
	Member   memberRow   `json:"member"`
	Members  []memberRow `json:"members"`
	Resumed  bool        `json:"resumed"`
	Promoted bool        `json:"promoted"`
	Bundle   string      `json:"bundle"`
	Archive  string      `json:"archive"`
}

type promoteDoc struct {
	Member        memberRow   `json:"member"`
	Members       []memberRow `json:"members"`
	AlreadyVoting bool        `json:"alreadyVoting"`
}

type removeDoc struct {
	Host          hostRow     `json:"host"`
	Member        *memberRow  `json:"member"`
	Members       []memberRow `json:"members"`
	WasMember     bool        `json:"wasMember"`
	LeaderMovedTo string      `json:"leaderMovedTo"`
}
