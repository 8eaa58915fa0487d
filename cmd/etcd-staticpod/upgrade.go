package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/upgrade"
)

func upgradeCommand() *cli.Command {
	return &cli.Command{
		Name:     "upgrade",
		Category: "running cluster",
		Usage:    "upgrade etcd one member at a time: followers first, the leader last",
		UsageText: "etcd-staticpod upgrade (--etcd-version TAG | --image IMAGE | --image-repository REGISTRY) [--out DIR | --config FILE]\n" +
			"   [--etcd-binary FILE] [--node NAME [--root DIR]] [--exec CMD] [--wait DURATION] [--timeout DURATION] [--cacert FILE --cert FILE --key FILE] [--dry-run] [-o table|json|yaml]",
		Description: `Reads the cluster spec (OUT/cluster.yaml, or --config), sets the new etcd image,
and checks that every member is healthy and runs a version the target can follow:
no downgrade, no change of major version, no skipped minor version (3.6.8 -> 3.6.16
and 3.5.x -> 3.6.y are fine, 3.5.x -> 3.7.y is refused). Then, one host at a time,
followers first and the leader last (leadership is handed to an upgraded member
first), it:

  1. rewrites the host's static Pod manifest and kubeadmcfg.yaml from the spec with
     init's own phases (bundle mode: OUT/NAME/etc/kubernetes/manifests/etcd.yaml and
     OUT/NAME.tar.gz with SHA256SUMS; with --node NAME --root /, the node's own
     /etc/kubernetes/manifests/etcd.yaml, which kubelet picks up);
  2. runs --exec, if given, through sh -c with {name}, {address}, {manifest} (the
     rewritten file on this machine), {folder} (the host folder), {ssh-target}
     (root@ADDRESS as ssh takes it) and {scp-target} (the same with an IPv6
     address in brackets, as scp takes it before :PATH) replaced, shell-quoted:
     the way the manifest reaches the node, such as an scp;
  3. waits, within --wait (default 5m), until that member reports the new
     version, is healthy, and has applied the raft index its leader had when it
     came back.

--timeout (default 5s) bounds each request to etcd, and the checks before
anything is written taken together, counted from the command's start.

Runtime systemd (the spec's runtime): etcd runs from /etc/etcd/etcd.conf.yml with
the binary at the unit's ExecStart path, ` + layout.EtcdBinary + `. The order, the
health gate and the wait are the same; step 1 rewrites etcd.conf.yml and etcd.service
and, with --etcd-binary FILE (the new release's etcd, checked with FILE --version),
puts FILE at ` + layout.EtcdBinary + ` in the host folder (with --root: on the node, in
one rename); step 2's --exec swaps the binary on the host and restarts etcd, with
{manifest} the host's etcd.conf.yml and, in its environment:
  ` + upgrade.EnvBinary + `   the new etcd binary on this machine (FILE; only with --etcd-binary)
  ` + upgrade.EnvBinaryPath + `      where the unit runs etcd on the host (` + layout.EtcdBinary + `)
  ` + upgrade.EnvVersion + `   the version the member is to run, such as 3.6.16
Without --exec, each host's turn prints the commands (scp of FILE, then mv and
systemctl restart etcd.service; without --etcd-binary, the release to install) and
waits. A spec that records etcdBinary (init --etcd-binary) needs --etcd-binary, so
that the bundles never carry an older etcd than the cluster runs. The way back on a
host that did not come back: its previous etcd at ` + layout.EtcdBinary + `, then
systemctl restart etcd.service.

Once every member runs the new version, OUT/cluster.yaml records the new image
(and, with runtime systemd, --etcd-binary as etcdBinary).
Hosts that run the new version with an unchanged manifest are left alone, so a
run that stopped can be started again. Progress goes to stderr; the summary to
stdout (-o json or yaml: {"image", "version", "specRecorded", "hosts": [{"name",
"address", "from", "to", "state", "leader", "took", "error"}]}; state is
upgraded, current, planned, failed or pending).

The cluster is found from the first host folder in OUT (or the node's files with
--root), as health does, with its healthcheck-client certificate; --cacert,
--cert and --key replace those files.

Exit status: 0 when every host is done; 1 when the cluster is unhealthy or a
member does not come back in time (the error says which hosts are upgraded, and
no further host is touched); 2 for a bad flag, spec or version, with nothing
changed.

Examples:
  # from the machine that ran init: copy each rewritten manifest to its node, and
  # swap it in with one rename so that kubelet never reads half a file
  etcd-staticpod upgrade --etcd-version 3.6.16-0 --out ./etcd-bundles \
    --exec 'scp -p {manifest} {scp-target}:/etc/kubernetes/etcd.yaml.new &&
            ssh {ssh-target} mv /etc/kubernetes/etcd.yaml.new /etc/kubernetes/manifests/etcd.yaml'

  # when OUT/NAME already reaches each node by other means
  etcd-staticpod upgrade --etcd-version 3.6.16-0 --out ./etcd-bundles

  # see the order and the checks, change nothing
  etcd-staticpod upgrade --etcd-version 3.6.16-0 --dry-run

  # on a node itself, one host at a time (the leader's node last)
  etcd-staticpod upgrade --etcd-version 3.6.16-0 --config cluster.yaml --node etcd02 --root /

  # nodes that pull the image slowly: up to 15 minutes for each member to come back
  etcd-staticpod upgrade --etcd-version 3.6.16-0 --wait 15m

  # runtime systemd: copy the new etcd to each host, swap it in with one rename,
  # restart the service
  etcd-staticpod upgrade --etcd-version 3.6.16-0 --etcd-binary ./etcd-v3.6.16-linux-amd64/etcd \
    --exec 'scp -p "$ETCD_STATICPOD_ETCD_BINARY" {scp-target}:/usr/local/bin/etcd.new &&
            ssh {ssh-target} "cp -p /usr/local/bin/etcd /usr/local/bin/etcd.previous &&
              mv /usr/local/bin/etcd.new /usr/local/bin/etcd && systemctl restart etcd.service"'`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "cluster spec `FILE` (default: OUT/" + layout.SpecFile + ")", TakesFile: true},
			&cli.StringFlag{Name: "out", Value: "./" + layout.DefaultOut, Usage: "bundle `DIR` written by init", TakesFile: true},
			&cli.StringFlag{Name: "etcd-version", Usage: "new etcd image `TAG`, such as 3.6.16-0"},
			&cli.StringFlag{Name: "image-repository", Usage: "new `REGISTRY` of the etcd image, such as registry.k8s.io"},
			&cli.StringFlag{Name: "image", Usage: "new etcd `IMAGE`; overrides --image-repository and --etcd-version"},
			&cli.StringFlag{Name: "etcd-binary", Usage: "runtime systemd: the new release's etcd binary `FILE`, put at the unit's " + layout.EtcdBinary + " and handed to --exec as $" + upgrade.EnvBinary, TakesFile: true},
			&cli.StringFlag{Name: "node", Usage: "upgrade only this host `NAME`"},
			&cli.StringFlag{Name: "root", Usage: "with --node: the host's filesystem root `DIR`, / on the node itself", TakesFile: true},
			&cli.StringFlag{Name: "exec", Usage: "`CMD` run per host after its rewrite, with {name}, {address}, {manifest}, {folder}, {ssh-target}, {scp-target} replaced"},
			waitFlag(upgrade.DefaultWait, "each member, from the rewrite until it has caught up, such as 15m"),
			timeoutFlag("the checks before anything is written as a whole (finding the cluster, every member's health, status and version)"),
			oldFlag("request-timeout"),
			&cli.StringFlag{Name: "cacert", Usage: "CA certificate `FILE` instead of the bundle's", TakesFile: true},
			&cli.StringFlag{Name: "cert", Usage: "client certificate `FILE` instead of the bundle's healthcheck-client", TakesFile: true},
			&cli.StringFlag{Name: "key", Usage: "client key `FILE` of --cert", TakesFile: true},
			&cli.BoolFlag{Name: "dry-run", Usage: "check the cluster and print the plan; write nothing"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "summary `FORMAT`: table, json or yaml"},
			waitLockFlag(),
		},
		Action: runUpgrade,
	}
}

func runUpgrade(c *cli.Context) error {
	start := runStart(c)
	if c.NArg() > 0 {
		return badArgs(fmt.Errorf("unexpected argument %q: upgrade takes flags only", c.Args().First()))
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	wait, err := parseWait(c, "")
	if err != nil {
		return err
	}
	timeout, err := parseRequestTimeout(c)
	if err != nil {
		return err
	}
	for _, name := range []string{"out", "config", "etcd-version", "image-repository", "image", "node", "root", "exec", "cacert", "cert", "key", "etcd-binary"} {
		if c.IsSet(name) && strings.TrimSpace(c.String(name)) == "" {
			return badArgs(fmt.Errorf("--%s %q: must not be empty", name, c.String(name)))
		}
	}
	current, next, err := upgradeSpecs(c)
	if err != nil {
		return badArgs(err)
	}
	release, err := holdFolders(c, c.String("out"), c.String("root"), c.Bool("dry-run"))
	if err != nil {
		return err
	}
	defer release()
	res, err := upgrade.Run(c.Context, upgrade.Options{
		Current:        current,
		Next:           next,
		Out:            c.String("out"),
		Node:           c.String("node"),
		Root:           c.String("root"),
		Exec:           c.String("exec"),
		CACert:         c.String("cacert"),
		Cert:           c.String("cert"),
		Key:            c.String("key"),
		Wait:           wait,
		RequestTimeout: timeout,
		ChecksBy:       start.Add(timeout),
		DryRun:         c.Bool("dry-run"),
		Log:            c.App.ErrWriter,
		WriteDelay:     testWriteDelay(),
	})
	if badinput.Is(err) {
		return err
	}
	if res != nil && len(res.Hosts) > 0 {
		if perr := printUpgrade(c.App.Writer, format, res); perr != nil {
			return fmt.Errorf("print the summary: %w", perr)
		}
	}
	if err != nil {
		return err
	}
	return nil
}

// upgradeSpecs loads the recorded spec and makes the one with the new image.
func upgradeSpecs(c *cli.Context) (current, next *spec.Cluster, err error) {
	if !c.IsSet("etcd-version") && !c.IsSet("image") && !c.IsSet("image-repository") {
		return nil, nil, errors.New("--etcd-version: give the version to upgrade to (or --image, --image-repository)")
	}
	r, err := spec.Resolve(spec.Source{Config: c.String("config"), Out: c.String("out"), Required: true})
	if err != nil {
		return nil, nil, err
	}
	current = r.Cluster
	next, err = upgrade.NextSpec(current, upgrade.NewImage{Image: c.String("image"), Version: c.String("etcd-version"), Repository: c.String("image-repository")})
	if err != nil {
		return nil, nil, err
	}
	bin := c.String("etcd-binary")
	switch {
	case bin != "" && !current.Systemd():
		return nil, nil, fmt.Errorf("--etcd-binary %q: only with runtime %s; static Pods run the image's etcd", bin, spec.RuntimeSystemd)
	case bin != "":
		abs, err := filepath.Abs(bin)
		if err != nil {
			return nil, nil, fmt.Errorf("--etcd-binary %q: %w", bin, err)
		}
		if fi, err := os.Stat(abs); err != nil {
			return nil, nil, fmt.Errorf("--etcd-binary %q: %w", bin, errors.Unwrap(err))
		} else if !fi.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("--etcd-binary %q: not a regular file", bin)
		}
		next.EtcdBinary = abs
	case current.EtcdBinary != "":
		return nil, nil, fmt.Errorf("--etcd-binary: the bundles carry the etcd of %s (etcdBinary in the spec); give the etcd binary of the new release", current.EtcdBinary)
	}
	return current, next, nil
}

// upgradeRow is one host in the JSON and YAML summary; its field names are
// part of the command-line interface.
type upgradeRow struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	From    string `json:"from"`
	To      string `json:"to"`
	State   string `json:"state"`
	Leader  bool   `json:"leader"`
	Took    string `json:"took"`
	Error   string `json:"error"`
}

type upgradeSummary struct {
	Image        string       `json:"image"`
	Version      string       `json:"version"`
	SpecRecorded bool         `json:"specRecorded"`
	Hosts        []upgradeRow `json:"hosts"`
}

func printUpgrade(w io.Writer, format string, res *upgrade.Result) error {
	sum := upgradeSummary{Image: res.Image, Version: res.Version, SpecRecorded: res.SpecRecorded, Hosts: []upgradeRow{}}
	for _, h := range res.Hosts {
		sum.Hosts = append(sum.Hosts, upgradeRow{
			Name: h.Name, Address: h.Address, From: h.From, To: h.To, State: string(h.State),
			Leader: h.Leader, Took: formatTook(h.Took), Error: h.Error,
		})
	}
	if format != "table" {
		return writeDoc(w, format, sum)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tFROM\tTO\tSTATE\tLEADER\tTOOK\tERROR")
	for _, r := range sum.Hosts {
		took := r.Took
		if r.State == string(upgrade.Current) || r.State == string(upgrade.Pending) || r.State == string(upgrade.Planned) {
			took = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\n", r.Name, r.Address, dash(r.From), dash(r.To), r.State, r.Leader, took, r.Error)
	}
	return tw.Flush()
}
