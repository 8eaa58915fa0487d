package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

// badArgs marks err as bad input: exit 2.
func badArgs(err error) error { return badinput.Wrap(err) }

// clusterCommands are the day-2 commands that talk to a running cluster.
func clusterCommands() []*cli.Command {
	return []*cli.Command{healthCommand(), statusCommand(), membersCommand()}
}

// findingTheCluster is the help shared by every command that connects.
const findingTheCluster = `Where the cluster is:
  --bundle DIR/NAME    a host folder written by init: its CA and client certificate, the
                       client URL in its manifest, then every member's client URL from the
                       member list (as etcdctl --cluster). When that host's member does not
                       answer, the other host folders in DIR are asked instead.
  --root DIR           the same from a node's own files: DIR/etc/kubernetes/pki and
                       DIR/etc/kubernetes/manifests/etcd.yaml. With no flags at all this
                       is / , so on an etcd host the command needs no flags.
  --endpoints URL,...  exactly these endpoints, no member-list lookup; TLS from --cacert,
                       --cert and --key (or from --bundle / --root when they are not given).
The client certificate is the host's etcd/healthcheck-client pair unless
--identity apiserver-etcd-client picks kube-apiserver's pair. No key is ever printed.`

const exitStatusHelp = `Exit status: 0 on success, 1 when the cluster answered with a failure or not
at all (the failing endpoints are named on stderr), 2 for a bad flag or
unreadable local files.`

// connectionFlags locate the cluster; made fresh per command because
// urfave/cli keeps parse state in flags.
func connectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Usage: "host folder `DIR/NAME` written by init, such as ./etcd-bundles/etcd01: its certificates and manifest", TakesFile: true},
		&cli.StringFlag{Name: "root", Value: "/", Usage: "filesystem root of an etcd node: reads `DIR`/etc/kubernetes/pki and the etcd manifest below it", TakesFile: true},
		&cli.StringFlag{Name: "endpoints", Usage: "client `URLS`, comma-separated, used exactly as given"},
		&cli.StringFlag{Name: "cacert", Usage: "CA certificate `FILE` that signed the servers' certificates", TakesFile: true},
		&cli.StringFlag{Name: "cert", Usage: "client certificate `FILE`", TakesFile: true},
		&cli.StringFlag{Name: "key", Usage: "client key `FILE` of --cert", TakesFile: true},
		&cli.StringFlag{Name: "identity", Value: etcdops.IdentityHealthcheck, Usage: "client certificate pair `NAME` from the host folder: " + strings.Join(etcdops.Identities(), " or ")},
		timeoutFlag("the whole command, which asks every member at once: finding the members and every member's answer, counted from the command's start; a member silent by then is reported so"),
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json or yaml"},
	}
}

// session is what every cluster command starts from: a resolved target, a
// printer for the chosen format, and the context that ends at the
// command's deadline.
type session struct {
	ctx     context.Context
	cancel  context.CancelFunc
	target  *etcdops.Target
	printer printer
}

// connect validates the flags and resolves the cluster, starting the
// command's deadline: --timeout from now. Every error is a usage or
// configuration error. The caller calls close.
func connect(c *cli.Context) (*session, error) {
	if c.NArg() > 0 {
		return nil, badArgs(fmt.Errorf("unexpected argument %q: %s takes flags only", c.Args().First(), c.Command.Name))
	}
	format, err := outputFormat(c)
	if err != nil {
		return nil, err
	}
	p := newPrinter(format, c.App.Writer)
	ctx, cancel, err := commandDeadline(c)
	if err != nil {
		return nil, err
	}
	t, err := resolveTarget(ctx, c)
	if err != nil {
		cancel()
		return nil, err
	}
	return &session{ctx: ctx, cancel: cancel, target: t, printer: p}, nil
}

func (s *session) close() { s.cancel() }

// commandDeadline is the context of a command that --timeout bounds as a
// whole: it ends --timeout after the process started.
func commandDeadline(c *cli.Context) (context.Context, context.CancelFunc, error) {
	timeout, err := parseTimeout(c)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithDeadline(c.Context, runStart(c).Add(timeout))
	return ctx, cancel, nil
}

// clusterCommand fills in what the cluster commands share.
func clusterCommand(cmd *cli.Command) *cli.Command {
	cmd.Category = "running cluster"
	cmd.Flags = connectionFlags()
	return cmd
}

const connectUsage = "[--bundle DIR/NAME | --root DIR | --endpoints URLS [--cacert FILE --cert FILE --key FILE]] [--identity NAME] [--timeout DURATION] [-o table|json|yaml]"

func healthCommand() *cli.Command {
	return clusterCommand(&cli.Command{
		Name:      "health",
		Usage:     "check that every member commits a read through raft and no alarm is raised",
		UsageText: "etcd-staticpod health " + connectUsage,
		Description: `Checks every endpoint at once, the way etcdctl endpoint health does: a
linearizable read of one key must go through raft (an answer of "permission
denied" still proves that), and the cluster must have no active alarm such as
NOSPACE or CORRUPT. --timeout bounds the requests, all made at once, and so the
whole command, finding the members included: an endpoint that has not answered by then is unhealthy, with the reason
(connection refused, a certificate refused, packets dropped, a process that does
not respond).

Output: one row per endpoint. -o json (or yaml) prints a list of
{"endpoint", "healthy", "took", "error"}, for example
[{"endpoint":"https://10.107.88.15:2379","healthy":true,"took":"12ms","error":""}].

` + findingTheCluster + `

` + exitStatusHelp + ` Unhealthy endpoints exit 1.

Examples:
  # on an etcd host: its own certificates and manifest, no flags needed
  etcd-staticpod health

  # from the machine that ran init; finds every member through etcd01
  etcd-staticpod health --bundle ./etcd-bundles/etcd01

  # over a slow link: up to 15s for the members' answers
  etcd-staticpod health --bundle ./etcd-bundles/etcd01 --timeout 15s

  # connect as kube-apiserver does, JSON for scripts
  etcd-staticpod health --bundle ./etcd-bundles/etcd01 --identity apiserver-etcd-client -o json

  # given endpoints and files, as with etcdctl
  etcd-staticpod health --endpoints https://10.107.88.15:2379,https://10.107.88.16:2379 \
    --cacert ca.crt --cert healthcheck-client.crt --key healthcheck-client.key`,
		Action: func(c *cli.Context) error {
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			results := etcdops.Health(s.ctx, s.target)
			if err := s.printer.Health(results); err != nil {
				return fmt.Errorf("print health: %w", err)
			}
			var bad []string
			var alarms []etcdops.Alarm
			for _, r := range results {
				if !r.Healthy {
					bad = append(bad, r.Endpoint)
				}
				if len(r.Alarms) > 0 {
					alarms = r.Alarms
				}
			}
			if len(bad) > 0 {
				msg := fmt.Sprintf("unhealthy: %s (%d of %d endpoints)", strings.Join(bad, ", "), len(bad), len(results))
				if len(alarms) > 0 {
					// The alarm, not the endpoints, is what to act on.
					msg += "; active alarm " + etcdops.DescribeAlarms(alarms) + " (see etcd-staticpod alarm list)"
				}
				return errors.New(msg)
			}
			return nil
		},
	})
}

func statusCommand() *cli.Command {
	return clusterCommand(&cli.Command{
		Name:      "status",
		Usage:     "show each member's version, database size, leader and raft progress",
		UsageText: "etcd-staticpod status " + connectUsage,
		Description: `Asks every endpoint at once for its status (as etcdctl endpoint status): member
ID, version, storage version, database size and size in use, quota, the leader it
follows, whether it leads or is a learner, raft term, raft index, raft applied
index, and the member's own errors such as alarms. --timeout bounds the
requests, all made at once, and so the whole command, finding the members
included.
In a healthy cluster exactly one member leads and all agree on the raft term.

Output: -o json (or yaml) prints a list of {"endpoint", "name", "id", "version",
"storageVersion", "dbSize", "dbSizeInUse", "dbSizeQuota", "leader", "isLeader",
"isLearner", "raftTerm", "raftIndex", "raftAppliedIndex", "errors", "error"};
IDs are hex strings ("leader" is "" when the member knows none), sizes are
bytes, and "error" says why the endpoint gave no status.

` + findingTheCluster + `

` + exitStatusHelp + ` An endpoint that gives no status exits 1.

Examples:
  # on an etcd host
  etcd-staticpod status

  # from the machine that ran init
  etcd-staticpod status --bundle ./etcd-bundles/etcd02

  # the leader's name, with jq
  etcd-staticpod status --bundle ./etcd-bundles/etcd01 -o json | jq -r '.[] | select(.isLeader) | .name'`,
		Action: func(c *cli.Context) error {
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			results := etcdops.Status(s.ctx, s.target)
			if err := s.printer.Status(results); err != nil {
				return fmt.Errorf("print status: %w", err)
			}
			var bad []string
			for _, r := range results {
				if r.Error != "" {
					bad = append(bad, r.Endpoint)
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("no status from %s (%d of %d endpoints)", strings.Join(bad, ", "), len(bad), len(results))
			}
			return nil
		},
	})
}

func membersCommand() *cli.Command {
	return clusterCommand(&cli.Command{
		Name:      "members",
		Usage:     "list the cluster's members",
		UsageText: "etcd-staticpod members " + connectUsage,
		Description: `Reads the member list with a linearizable request (as etcdctl member list), so
a member cut off from the quorum cannot answer with a stale list. A member that
was added but has not started yet has no name and is shown as unstarted.
--timeout bounds the requests, and so the whole command, finding the members
included.

Output: -o json (or yaml) prints a list of {"id", "name", "started", "isLearner",
"peerURLs", "clientURLs"}; IDs are hex strings, as etcd prints them.

` + findingTheCluster + `

` + exitStatusHelp + `

Examples:
  # on an etcd host
  etcd-staticpod members

  # from the machine that ran init, as YAML
  etcd-staticpod members --bundle ./etcd-bundles/etcd01 -o yaml

  # through one given endpoint
  etcd-staticpod members --endpoints https://10.107.88.16:2379 \
    --cacert ca.crt --cert healthcheck-client.crt --key healthcheck-client.key`,
		Action: func(c *cli.Context) error {
			s, err := connect(c)
			if err != nil {
				return err
			}
			defer s.close()
			ms, err := etcdops.Members(s.ctx, s.target)
			if err != nil {
				return err
			}
			if err := s.printer.Members(ms); err != nil {
				return fmt.Errorf("print members: %w", err)
			}
			return nil
		},
	})
}

// printer writes the results of the cluster commands in one format.
type printer interface {
	Health([]etcdops.EndpointHealth) error
	Status([]etcdops.EndpointStatus) error
	Members([]etcdops.Member) error
}

// newPrinter prints in a format outputFormat has checked.
func newPrinter(format string, w io.Writer) printer {
	if format == "table" {
		return tablePrinter{w}
	}
	return docPrinter{w, format}
}

// The rows below are the JSON and YAML documents; their field names are
// part of the command-line interface and stay stable.

type healthRow struct {
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	Took     string `json:"took"`
	Error    string `json:"error"`
}

type statusRow struct {
	Endpoint         string   `json:"endpoint"`
	Name             string   `json:"name"`
	ID               string   `json:"id"`
	Version          string   `json:"version"`
	StorageVersion   string   `json:"storageVersion"`
	DBSize           int64    `json:"dbSize"`
	DBSizeInUse      int64    `json:"dbSizeInUse"`
	DBSizeQuota      int64    `json:"dbSizeQuota"`
	Leader           string   `json:"leader"`
	IsLeader         bool     `json:"isLeader"`
	IsLearner        bool     `json:"isLearner"`
	RaftTerm         uint64   `json:"raftTerm"`
	RaftIndex        uint64   `json:"raftIndex"`
	RaftAppliedIndex uint64   `json:"raftAppliedIndex"`
	Errors           []string `json:"errors"`
	Error            string   `json:"error"`
}

type memberRow struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Started    bool     `json:"started"`
	IsLearner  bool     `json:"isLearner"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

func healthRows(in []etcdops.EndpointHealth) []healthRow {
	out := make([]healthRow, 0, len(in))
	for _, h := range in {
		out = append(out, healthRow{Endpoint: h.Endpoint, Healthy: h.Healthy, Took: formatTook(h.Took), Error: h.Error})
	}
	return out
}

func statusRows(in []etcdops.EndpointStatus) []statusRow {
	out := make([]statusRow, 0, len(in))
	for _, s := range in {
		r := statusRow{Endpoint: s.Endpoint, Errors: nonNil(s.Errors), Error: s.Error}
		if s.Error == "" {
			r.Name, r.ID, r.Version, r.StorageVersion = s.Name, etcdops.FormatID(s.MemberID), s.Version, s.StorageVersion
			r.DBSize, r.DBSizeInUse, r.DBSizeQuota = s.DBSize, s.DBSizeInUse, s.DBSizeQuota
			r.Leader, r.IsLeader, r.IsLearner = leaderID(s.LeaderID), s.IsLeader, s.IsLearner
			r.RaftTerm, r.RaftIndex, r.RaftAppliedIndex = s.RaftTerm, s.RaftIndex, s.RaftAppliedIndex
		}
		out = append(out, r)
	}
	return out
}

func memberRows(in []etcdops.Member) []memberRow {
	out := make([]memberRow, 0, len(in))
	for _, m := range in {
		out = append(out, memberRow{ID: m.IDString(), Name: m.Name, Started: m.Started(), IsLearner: m.IsLearner, PeerURLs: nonNil(m.PeerURLs), ClientURLs: nonNil(m.ClientURLs)})
	}
	return out
}

// nonNil keeps empty lists as [] rather than null in JSON.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// formatTook rounds to what a person reads: 12ms, 1.25s, 850µs.
func formatTook(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// docPrinter writes the JSON or YAML documents.
type docPrinter struct {
	w      io.Writer
	format string
}

func (p docPrinter) Health(in []etcdops.EndpointHealth) error {
	return writeDoc(p.w, p.format, healthRows(in))
}
func (p docPrinter) Status(in []etcdops.EndpointStatus) error {
	return writeDoc(p.w, p.format, statusRows(in))
}
func (p docPrinter) Members(in []etcdops.Member) error {
	return writeDoc(p.w, p.format, memberRows(in))
}

type tablePrinter struct{ w io.Writer }

func (p tablePrinter) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func (p tablePrinter) Health(in []etcdops.EndpointHealth) error {
	var rows [][]string
	for _, h := range in {
		state := "healthy"
		if !h.Healthy {
			state = "unhealthy"
		}
		rows = append(rows, []string{h.Endpoint, state, formatTook(h.Took), h.Error})
	}
	return p.table([]string{"ENDPOINT", "HEALTH", "TOOK", "ERROR"}, rows)
}

func (p tablePrinter) Status(in []etcdops.EndpointStatus) error {
	var rows [][]string
	for _, s := range in {
		if s.Error != "" {
			rows = append(rows, []string{s.Endpoint, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", s.Error})
			continue
		}
		rows = append(rows, []string{
			s.Endpoint, dash(s.Name), etcdops.FormatID(s.MemberID), s.Version,
			humanBytes(s.DBSize), humanBytes(s.DBSizeInUse), dash(leaderID(s.LeaderID)),
			fmt.Sprint(s.IsLeader), fmt.Sprint(s.IsLearner),
			fmt.Sprint(s.RaftTerm), fmt.Sprint(s.RaftIndex), fmt.Sprint(s.RaftAppliedIndex),
			strings.Join(s.Errors, "; "),
		})
	}
	return p.table([]string{"ENDPOINT", "NAME", "ID", "VERSION", "DB SIZE", "IN USE", "LEADER", "IS LEADER", "LEARNER", "RAFT TERM", "RAFT INDEX", "APPLIED INDEX", "ERRORS"}, rows)
}

func (p tablePrinter) Members(in []etcdops.Member) error {
	var rows [][]string
	for _, m := range in {
		state := "started"
		if !m.Started() {
			state = "unstarted"
		}
		rows = append(rows, []string{m.IDString(), dash(m.Name), state, fmt.Sprint(m.IsLearner), strings.Join(m.PeerURLs, ","), dash(strings.Join(m.ClientURLs, ","))})
	}
	return p.table([]string{"ID", "NAME", "STATUS", "LEARNER", "PEER URLS", "CLIENT URLS"}, rows)
}

// leaderID is empty when the member knows no leader (ID 0).
func leaderID(id uint64) string {
	if id == 0 {
		return ""
	}
	return etcdops.FormatID(id)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes prints sizes in SI units as etcdctl does: 25 kB, 1.2 MB.
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f, unit := float64(n), -1
	for f >= 1000 && unit < 5 {
		f /= 1000
		unit++
	}
	if f < 10 {
		return fmt.Sprintf("%.1f %cB", f, "kMGTPE"[unit])
	}
	return fmt.Sprintf("%.0f %cB", f, "kMGTPE"[unit])
}

// resolveTarget checks the connection flags as the cluster commands do and
// finds the cluster within ctx.
func resolveTarget(ctx context.Context, c *cli.Context) (*etcdops.Target, error) {
	timeout, err := parseTimeout(c)
	if err != nil {
		return nil, err
	}
	if c.IsSet("bundle") && c.IsSet("root") {
		return nil, badArgs(fmt.Errorf("--root %q: give --bundle or --root, not both", c.String("root")))
	}
	for _, name := range []string{"bundle", "root", "cacert", "cert", "key", "identity"} {
		if c.IsSet(name) && strings.TrimSpace(c.String(name)) == "" {
			return nil, badArgs(fmt.Errorf("--%s %q: must not be empty", name, c.String(name)))
		}
	}
	var endpoints []string
	if c.IsSet("endpoints") {
		endpoints = []string{c.String("endpoints")}
	}
	t, err := etcdops.Resolve(ctx, etcdops.Options{
		Endpoints: endpoints,
		CACert:    c.String("cacert"),
		Cert:      c.String("cert"),
		Key:       c.String("key"),
		Bundle:    c.String("bundle"),
		Root:      c.String("root"),
		Identity:  c.String("identity"),
		Timeout:   timeout,
	})
	if err != nil {
		return nil, badArgs(err)
	}
	for _, n := range t.Notes {
		fmt.Fprintln(c.App.ErrWriter, "note:", n)
	}
	return t, nil
}
