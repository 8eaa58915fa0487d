package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/expiry"
	"github.com/etcd-staticpod/etcd-staticpod/kube"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// certsCommands are the commands that check and renew certificates.
func certsCommands() []*cli.Command {
	return []*cli.Command{{
		Name:        "certs",
		Usage:       "check and renew the etcd certificates",
		Description: "Day-2 certificate operations, as kubeadm's `certs check-expiration` and `certs renew`, for the etcd CA's certificates.",
		Subcommands: []*cli.Command{checkExpirationCommand(), renewCommand()},
	}}
}

func checkExpirationCommand() *cli.Command {
	return &cli.Command{
		Name:      "check-expiration",
		Usage:     "show when every etcd certificate expires",
		UsageText: "etcd-staticpod certs check-expiration [--out DIR | --root DIR] [--config FILE] [--cert-dir DIR] [--within DURATION] [-o table|json|yaml|prometheus]",
		Description: `Lists every certificate as kubeadm's certs check-expiration does (EXPIRES, RESIDUAL
TIME, CERTIFICATE AUTHORITY, EXTERNALLY MANAGED), plus the HOST and PATH of each file,
then the CA certificates. A certificate that is not there is listed as !MISSING!.

Where the certificates are:
  --out DIR    the bundle folder init wrote (default ./etcd-bundles): the CA store
               DIR/pki/etcd, every host folder DIR/NAME and DIR/control-plane. The hosts
               come from --config or DIR/cluster.yaml; without either, from the folders
               that hold certificates.
  --root DIR   a node's own files: DIR plus --cert-dir (default: the etcd manifest's, else
               /etc/kubernetes/pki). On an etcd host: --root /.
EXTERNALLY MANAGED is "yes" when the signing CA's key is not there: such a
certificate is renewed where the CA key is (renew --ca-cert/--ca-key).

Output: -o json (or yaml) prints {"certificates": [...], "certificateAuthorities": [...]},
each entry {"name", "host", "path", "notAfter" (RFC 3339, "" when missing), "residual"
(a Go duration, negative once expired), "residualSeconds", "authority", "externallyManaged",
"serial", "expired", "missing", "due" (with --within), "error"}. "host" is "" for the
CA store, "control-plane" for the control plane's copy and "monitoring" for the
certificates of init --monitoring.

-o prometheus prints the gauge etcd_staticpod_certificate_expiry_timestamp_seconds
{host,name,path}, each certificate's NotAfter in seconds since the epoch, one sample per
certificate read, without timestamps: the text format node-exporter's textfile collector
reads. The alert EtcdCertificateExpiring of OUT/monitoring/etcd-alerts.yml watches it.

Exit status: 0 when every certificate was read (and, with --within, none is due); 3 with
--within when any certificate is missing, expired or expires within DURATION (they
are named on stderr); 1 when a file cannot be read as a certificate; 2 for bad input.
Without --within, expired and missing certificates are listed and the status is 0, as
with kubeadm.

Examples:
  # the bundle folder on the machine that ran init
  etcd-staticpod certs check-expiration --out ./etcd-bundles

  # on an etcd host
  etcd-staticpod certs check-expiration --root /

  # in a script: renew when anything expires within 30 days
  if ! etcd-staticpod certs check-expiration --within 30d >/dev/null; then
    etcd-staticpod certs renew all
  fi

  # for node-exporter's textfile collector, e.g. from a systemd timer or cron on each host
  etcd-staticpod certs check-expiration --root / -o prometheus > /var/lib/prometheus/node-exporter/etcd-certs.prom.tmp &&
    mv /var/lib/prometheus/node-exporter/etcd-certs.prom.tmp /var/lib/prometheus/node-exporter/etcd-certs.prom

  # runtime statefulset: the bundle folder and the Secrets the cluster holds (HOST cluster,
  # PATH secret/NAMESPACE/NAME/KEY)
  etcd-staticpod certs check-expiration --out ./etcd-apps --kubeconfig ~/.kube/config

  # what expires first, with jq
  etcd-staticpod certs check-expiration -o json | jq -r '.certificates | sort_by(.residualSeconds) | .[0] | "\(.host)/\(.name) \(.notAfter)"'`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "./" + layout.DefaultOut, Usage: "bundle `DIR` written by init", TakesFile: true},
			&cli.StringFlag{Name: "root", Usage: "filesystem root `DIR` of an etcd node, such as /: read its certificates instead of a bundle folder", TakesFile: true},
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "cluster spec `FILE` naming the hosts and certDir (default: OUT/" + layout.SpecFile + " when it exists)", TakesFile: true},
			&cli.StringFlag{Name: "cert-dir", Usage: "certificate `DIR` on the hosts (default: the spec's, else " + layout.DefaultCertDir + ")"},
			&cli.StringFlag{Name: "kubeconfig", Usage: "with runtime statefulset: also read the certificates of the StatefulSet's Secrets in the cluster of this kubeconfig `FILE` (found as kubectl finds it when only --context is given)", TakesFile: true},
			&cli.StringFlag{Name: "context", Usage: "with runtime statefulset: the kubeconfig context `NAME` whose cluster's Secrets to read too"},
			&cli.StringFlag{Name: "within", Usage: "exit " + fmt.Sprint(exitDue) + " when a certificate is missing, expired or expires within `DURATION`, such as 720h or 30d"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json, yaml or prometheus (node-exporter's textfile collector)"},
		},
		Action: checkExpiration,
	}
}

// clusterCertificates reads runtime statefulset's Secrets from the cluster
// the kubeconfig names, in the spec's namespace.
func clusterCertificates(c *cli.Context, src expiry.Source) ([]expiry.Item, error) {
	flag := "--kubeconfig"
	if !c.IsSet("kubeconfig") {
		flag = "--context"
	}
	if src.Root != "" {
		return nil, badArgs(fmt.Errorf("%s: reads a StatefulSet's Secrets; give --out, not --root", flag))
	}
	r, err := spec.Resolve(spec.Source{Config: src.Config, Out: src.Out, Required: true})
	if err != nil {
		return nil, badArgs(err)
	}
	if !r.InKubernetes() {
		return nil, badArgs(fmt.Errorf("%s: only with runtime %s (the spec's runtime is %s)", flag, spec.RuntimeStatefulSet, r.Runtime))
	}
	cl, err := kube.Connect(kube.Options{Kubeconfig: c.String("kubeconfig"), Context: c.String("context"), Namespace: r.StatefulSet.Namespace})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context, cl.Timeout())
	defer cancel()
	return expiry.InCluster(ctx, cl, src.Out, r.Cluster)
}

func checkExpiration(c *cli.Context) error {
	if c.NArg() > 0 {
		return badArgs(fmt.Errorf("unexpected argument %q: check-expiration takes flags only", c.Args().First()))
	}
	format, err := outputFormat(c, "prometheus")
	if err != nil {
		return err
	}
	within := time.Duration(-1)
	if c.IsSet("within") {
		d, err := expiry.ParseWithin(c.String("within"))
		if err != nil {
			return badArgs(fmt.Errorf("--within %q: %w", c.String("within"), err))
		}
		within = d
	}
	if c.IsSet("root") && c.IsSet("out") {
		return badArgs(fmt.Errorf("--root %q: give --out or --root, not both", c.String("root")))
	}
	for _, name := range []string{"out", "root", "config", "cert-dir"} {
		if c.IsSet(name) && strings.TrimSpace(c.String(name)) == "" {
			return badArgs(fmt.Errorf("--%s %q: must not be empty", name, c.String(name)))
		}
	}
	if d := c.String("cert-dir"); c.IsSet("cert-dir") && !filepath.IsAbs(d) {
		return badArgs(fmt.Errorf("--cert-dir %q: must be an absolute path on the hosts", d))
	}
	src := expiry.Source{Config: c.String("config"), CertDir: c.String("cert-dir")}
	if c.IsSet("root") {
		src.Root = c.String("root")
	} else {
		src.Out = c.String("out")
	}
	items, err := expiry.Items(src)
	if err != nil {
		return badArgs(err)
	}
	if c.IsSet("kubeconfig") || c.IsSet("context") {
		more, err := clusterCertificates(c, src)
		if err != nil {
			return err
		}
		items = append(items, more...)
	}
	entries := expiry.Read(items, time.Now())
	// A named pipe, a device or a huge file where a certificate should be
	// is a local file that is wrong, refused before anything is printed.
	for _, e := range entries {
		var se *safefile.Error
		if errors.As(e.Err, &se) {
			return badinput.New("certificate file", se.Path, "%s", se.Reason)
		}
	}
	if err := printExpiration(c.App.Writer, format, entries, within); err != nil {
		return fmt.Errorf("print certificates: %w", err)
	}
	var unreadable []expiry.Entry
	var due []string
	for _, e := range entries {
		switch {
		case e.Err != nil:
			unreadable = append(unreadable, e)
		case within >= 0 && e.Due(within):
			due = append(due, dueLabel(e))
		}
	}
	if len(unreadable) > 0 {
		return fmt.Errorf("%d certificate file(s) cannot be read; first: %w", len(unreadable), unreadable[0].Err)
	}
	if len(due) > 0 {
		return dueError{fmt.Errorf("%d certificate(s) due within %s: %s", len(due), c.String("within"), strings.Join(due, ", "))}
	}
	return nil
}

func dueLabel(e expiry.Entry) string {
	switch {
	case e.Missing:
		return e.Label() + " (missing)"
	case e.Expired:
		return e.Label() + " (expired " + e.Cert.NotAfter.UTC().Format(time.RFC3339) + ")"
	}
	return e.Label() + " (" + expiry.ResidualTime(e.Residual) + " left)"
}

func printExpiration(w io.Writer, format string, entries []expiry.Entry, within time.Duration) error {
	switch format {
	case "prometheus":
		return printExpiryMetrics(w, expiry.Expiries(entries))
	case "json", "yaml":
		return writeDoc(w, format, expiry.Rows(entries, within))
	}
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	leaves, cas := expiry.Split(entries)
	// kubeadm's table, with HOST after the name and PATH last.
	tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tHOST\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED\tPATH")
	for _, e := range leaves {
		switch {
		case e.Missing:
			fmt.Fprintf(tw, "!MISSING! %s\t%s\t\t\t\t\t%s\n", e.Name, dash(e.Host), e.Path)
		case e.Err != nil:
			fmt.Fprintf(tw, "!UNREADABLE! %s\t%s\t\t\t\t\t%s\n", e.Name, dash(e.Host), e.Path)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, dash(e.Host), expiry.Expires(e.Cert.NotAfter), expiry.ResidualTime(e.Residual), e.Issuer(), yesNo(e.ExternallyManaged), e.Path)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CERTIFICATE AUTHORITY\tHOST\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED\tPATH")
	for _, e := range cas {
		switch {
		case e.Missing:
			fmt.Fprintf(tw, "!MISSING! %s\t%s\t\t\t\t%s\n", e.Name, dash(e.Host), e.Path)
		case e.Err != nil:
			fmt.Fprintf(tw, "!UNREADABLE! %s\t%s\t\t\t\t%s\n", e.Name, dash(e.Host), e.Path)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, dash(e.Host), expiry.Expires(e.Cert.NotAfter), expiry.ResidualTime(e.Residual), yesNo(e.ExternallyManaged), e.Path)
		}
	}
	return tw.Flush()
}

func renewCommand() *cli.Command {
	names := renewableNames()
	mon := certs.MonitoringClient().Name
	description := `Replaces the certificate (` + strings.Join(leafNames(), ", ") + `, or all
of them) of every host, or of --node NAME only, with a new private key and a new
certificate signed by the same etcd CA, valid for the spec's certificateValidity from now.

` + mon + `, Prometheus' client certificate in DIR/` + layout.MonitoringDir + ` (made by init
--monitoring), is renewed the same way by "all" without --node, or alone by its name;
prometheus.yml and the rules beside it are left as they are. Renewed alone, no host file
and no archive changes. It belongs to no host: with --node, or without DIR/` + layout.MonitoringDir + `,
naming it is bad input.

Unlike kubeadm's certs renew, which copies the old certificate's SANs, the new
certificate is built from the current cluster spec (--config, else OUT/cluster.yaml, plus
flags): a SAN added to a host's serverCertSANs or peerCertSANs since init is picked up.
The CA is never changed; a host whose ca.crt is not that CA is refused. Keys are written
before their certificates, each file atomically, keys 0600.

In the bundle folder (no --root) the files of DIR/NAME are replaced; when the first
host's apiserver-etcd-client is renewed, DIR/control-plane gets the new pair too; then
every NAME.tar.gz and SHA256SUMS are packed again. On a node, --node NAME --root /
replaces the node's files in place, signing with --ca-cert/--ca-key or DIR/pki/etcd.

--within DURATION (720h, 30d) renews, of the certificates named, only those that are
missing, expired or expire within DURATION, as check-expiration --within judges; the others
are left byte for byte and not listed ("Kept" lines say why), and when no host certificate
is renewed no archive is packed again. Without --within every certificate named is renewed,
due or not. With runtime statefulset, when nothing is due the object stream and the
client bundle stay as they are.

Output: the renewed certificates with their old and new expiry and serial. -o json (or
yaml) prints a list of {"name", "host", "path", "oldNotAfter", "newNotAfter", "oldSerial",
"newSerial"}; "old..." are "" when there was no certificate, "newSerial" is "" with
--dry-run; "host" is "monitoring" for ` + mon + `. No key is ever printed.

With runtime statefulset (OUT/cluster.yaml says so) the certificates are those of
OUT/statefulset/etcd.yaml: etcd-server and etcd-peer of every member, or of --node
NAME-i only, and, without --node, etcd-healthcheck-client and etcd-client (the
applications' client, also written to OUT/statefulset/client/). The stream is written
again with the new pairs and every other object as it was; then kubectl apply it and
restart the StatefulSet's Pods one at a time (kubectl rollout restart; both printed).

Afterwards, copy each renewed host's bundle to it and restart its etcd (move
etcd.yaml out of /etc/kubernetes/manifests and back), one host at a time, waiting
for etcd-staticpod health in between; give the control plane DIR/control-plane.

Exit status: 0 when renewed, 1 when a certificate could not be made or written or
another run holds the folder's lock (see --wait-lock), 2 for bad input (nothing is
written), 130/143 when SIGINT/SIGTERM rolled the run back.

Examples:
  # every certificate of every host, in ./etcd-bundles
  etcd-staticpod certs renew all

  # one host at a time, for a rolling restart
  etcd-staticpod certs renew all --node etcd02 --out ./etcd-bundles

  # after adding a SAN to etcd01's serverCertSANs in ./etcd-bundles/cluster.yaml
  etcd-staticpod certs renew etcd-server --node etcd01

  # on the node etcd03 itself, signing with a CA given by path
  etcd-staticpod certs renew all --config cluster.yaml --node etcd03 --root / --ca-cert ca.crt --ca-key ca.key

  # runtime statefulset: one member's peer certificate, then everything
  etcd-staticpod certs renew etcd-peer --node etcd-1 --out ./etcd-apps
  etcd-staticpod certs renew all --out ./etcd-apps

  # Prometheus' client certificate alone (DIR/monitoring); then copy the pair to the Prometheus server
  etcd-staticpod certs renew ` + mon + `

  # from a timer: only what expires within 30 days (nothing due: exit 0, nothing written)
  etcd-staticpod certs renew all --within 30d

  # what would be renewed, as JSON
  etcd-staticpod certs renew all --dry-run -o json

  # while another run writes into ./etcd-bundles, wait for it (up to 5 minutes)
  etcd-staticpod certs renew all --wait-lock 5m`
	const usage = " [--out DIR] [--config FILE] [--node NAME [--root DIR]] [--ca-cert FILE --ca-key FILE] [--within DURATION] [--dry-run] [-o table|json|yaml]"
	return &cli.Command{
		Name:        "renew",
		Usage:       "give hosts (or a StatefulSet's members) a new key and certificate: " + strings.Join(names, ", ") + " (statefulset: etcd-client) or all",
		UsageText:   "etcd-staticpod certs renew <all|" + strings.Join(names, "|") + ">" + usage,
		Description: description,
		Flags:       renewFlags(),
		// Flags may come before or after the certificate's name.
		Action: withTrailingFlags(renewFlags, func(c *cli.Context) error {
			if c.NArg() == 0 {
				return badArgs(fmt.Errorf("name the certificate to renew: all, %s", strings.Join(names, ", ")))
			}
			if c.NArg() > 1 {
				return badArgs(fmt.Errorf("unexpected argument %q: renew one certificate, or all", c.Args().Get(1)))
			}
			name := c.Args().First()
			if !slices.Contains(names, name) && name != "all" && !slices.Contains(phases.StatefulSetRenewable(), name) {
				return badArgs(fmt.Errorf("certificate %q: want all or one of %s", name, strings.Join(names, ", ")))
			}
			return renew(c, name)
		}),
	}
}

func renewFlags() []cli.Flag {
	flags := append(clusterFlags(), groupFlags(phases.FlagsCA)...)
	return append(flags,
		&cli.StringFlag{Name: "within", Usage: "renew only the certificates that are missing, expired or expire within `DURATION`, such as 720h or 30d (as check-expiration --within judges); the others stay byte for byte (default: renew every one named)"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json or yaml"})
}

func renew(c *cli.Context, name string) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	for _, name := range []string{"out", "root", "node", "config", "ca-cert", "ca-key"} {
		if c.IsSet(name) && strings.TrimSpace(c.String(name)) == "" {
			return badArgs(fmt.Errorf("--%s %q: must not be empty", name, c.String(name)))
		}
	}
	within := time.Duration(-1)
	if c.IsSet("within") {
		if within, err = expiry.ParseWithin(c.String("within")); err != nil {
			return badArgs(fmt.Errorf("--within %q: %w", c.String("within"), err))
		}
	}
	cl, err := loadCluster(c)
	if err != nil {
		return badArgs(err)
	}
	opts := runnerOptions(c, cl)
	if format != "table" {
		// stdout is the document alone.
		opts.Log = c.App.ErrWriter
	}
	if cl.InKubernetes() {
		return renewStatefulSet(c, opts, format, name, within)
	}
	mon := certs.MonitoringClient()
	profiles := append(certs.Leaves(), mon)
	switch p, ok := certs.Leaf(name); {
	case name == "all":
	case name == mon.Name:
		profiles = []certs.Profile{mon}
	case ok:
		profiles = []certs.Profile{p}
	default:
		return badArgs(fmt.Errorf("certificate %q: with runtime %s, want all or one of %s", name, cl.Runtime, strings.Join(renewableNames(), ", ")))
	}
	r, err := phases.NewRunner(opts)
	if err != nil {
		return badArgs(err)
	}
	release, err := holdFolders(c, c.String("out"), c.String("root"), c.Bool("dry-run"))
	if err != nil {
		return err
	}
	defer release()
	done, err := r.RenewDue(profiles, within)
	if err != nil {
		return err
	}
	if err := saveCluster(c, cl); err != nil {
		return err
	}
	if len(done) == 0 && within >= 0 && format == "table" {
		fmt.Fprintf(c.App.Writer, "Nothing is due within %s: no certificate renewed.\n", c.String("within"))
		return nil
	}
	if err := printRenewals(c.App.Writer, format, done); err != nil {
		return fmt.Errorf("print renewals: %w", err)
	}
	if format == "table" && !c.Bool("dry-run") {
		fmt.Fprintln(c.App.Writer)
		if c.String("root") != "" {
			fmt.Fprintln(c.App.Writer, "Restart etcd on this host so that it serves the new certificates: move etcd.yaml out of the static Pod folder and back.")
		} else {
			if slices.ContainsFunc(done, func(rn phases.Renewal) bool { return rn.Name != certs.MonitoringClient().Name }) {
				fmt.Fprintf(c.App.Writer, "Copy each renewed host's %s/NAME.tar.gz to it, unpack it at /, and restart its etcd, one host at a time, checking `etcd-staticpod health` in between.\n", c.String("out"))
			}
			if slices.ContainsFunc(done, func(rn phases.Renewal) bool {
				return rn.Name == certs.APIServerClient().Name && rn.Host == cl.Hosts[0].Name
			}) &&
				fileExists(layout.Bundle(c.String("out")).ControlPlane()) {
				fmt.Fprintf(c.App.Writer, "The control plane needs the new apiserver-etcd-client too: unpack %s/control-plane.tar.gz at / on each control-plane node and restart kube-apiserver.\n", c.String("out"))
			}
			if slices.ContainsFunc(done, func(rn phases.Renewal) bool { return rn.Name == certs.MonitoringClient().Name }) {
				mon := certs.MonitoringClient().Files
				dir := layout.Bundle(c.String("out")).Monitoring()
				fmt.Fprintf(c.App.Writer, "Prometheus needs the new %s and %s: copy them from %s to its copy of the folder (the key 0600) and reload Prometheus (SIGHUP).\n", mon.Cert(""), mon.Key(""), dir)
			}
		}
	}
	return nil
}

// leafNames are the certificates every host has.
func leafNames() []string {
	var names []string
	for _, p := range certs.Leaves() {
		names = append(names, p.Name)
	}
	return names
}

// renewableNames are the certificates renew replaces outside a
// StatefulSet: every host's, then the monitoring client's.
func renewableNames() []string {
	return append(leafNames(), certs.MonitoringClient().Name)
}

// renewStatefulSet renews runtime statefulset's certificates in the object
// stream; --node names a member.
func renewStatefulSet(c *cli.Context, opts phases.Options, format, name string, within time.Duration) error {
	if c.IsSet("root") {
		return badArgs(fmt.Errorf("--root %q: runtime %s has no hosts; renew in the bundle folder", c.String("root"), spec.RuntimeStatefulSet))
	}
	names := phases.StatefulSetRenewable()
	if name != "all" {
		names = []string{name}
	}
	member := opts.Node
	opts.Node = ""
	r, err := phases.NewRunner(opts)
	if err != nil {
		return badArgs(err)
	}
	release, err := holdFolders(c, c.String("out"), "", c.Bool("dry-run"))
	if err != nil {
		return err
	}
	defer release()
	done, err := r.RenewStatefulSet(names, member, within)
	if err != nil {
		return err
	}
	if len(done) == 0 && within >= 0 && format == "table" {
		fmt.Fprintf(c.App.Writer, "Nothing is due within %s: no certificate renewed.\n", c.String("within"))
		return nil
	}
	if err := printRenewals(c.App.Writer, format, done); err != nil {
		return fmt.Errorf("print renewals: %w", err)
	}
	if format == "table" && !c.Bool("dry-run") {
		cl := opts.Cluster
		n := statefulset.NamesOf(cl)
		b := layout.Bundle(c.String("out"))
		fmt.Fprintln(c.App.Writer)
		fmt.Fprintln(c.App.Writer, "Apply the new Secrets, then restart the members one at a time so that each reads its new certificates:")
		fmt.Fprintf(c.App.Writer, "  kubectl apply -f %s\n", shellcmd.Quote(b.StatefulSetManifest()))
		fmt.Fprintf(c.App.Writer, "  kubectl -n %s rollout restart statefulset/%s && kubectl -n %s rollout status statefulset/%s\n", n.Namespace, n.StatefulSet(), n.Namespace, n.StatefulSet())
		if slices.ContainsFunc(done, func(rn phases.Renewal) bool { return rn.Name == certs.ApplicationClient().Name }) {
			fmt.Fprintf(c.App.Writer, "Applications read the new client certificate from the Secret %s/%s or %s.\n", n.Namespace, n.ClientSecret(), shellcmd.Quote(b.StatefulSetClient()))
		}
	}
	return nil
}

// renewalRow is one renewed certificate as -o json and -o yaml print it;
// the field names are part of the command-line interface.
type renewalRow struct {
	Name        string `json:"name"`
	Host        string `json:"host"`
	Path        string `json:"path"`
	OldNotAfter string `json:"oldNotAfter"`
	NewNotAfter string `json:"newNotAfter"`
	OldSerial   string `json:"oldSerial"`
	NewSerial   string `json:"newSerial"`
}

func renewalRows(done []phases.Renewal) []renewalRow {
	rows := make([]renewalRow, 0, len(done))
	for _, rn := range done {
		row := renewalRow{Name: rn.Name, Host: rn.Host, Path: rn.Path, NewNotAfter: rn.NotAfter.UTC().Format(time.RFC3339)}
		if rn.Old != nil {
			row.OldNotAfter, row.OldSerial = rn.Old.NotAfter.UTC().Format(time.RFC3339), expiry.Serial(rn.Old.SerialNumber)
		}
		if rn.New != nil {
			row.NewSerial = expiry.Serial(rn.New.SerialNumber)
		}
		rows = append(rows, row)
	}
	return rows
}

func printRenewals(w io.Writer, format string, done []phases.Renewal) error {
	rows := renewalRows(done)
	if format != "table" {
		return writeDoc(w, format, rows)
	}
	if len(rows) == 0 {
		return errors.New("nothing was renewed")
	}
	tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tHOST\tEXPIRES (OLD → NEW)\tSERIAL (OLD → NEW)\tPATH")
	for i, r := range rows {
		oldExp, newExp := "-", expiry.Expires(done[i].NotAfter)
		if done[i].Old != nil {
			oldExp = expiry.Expires(done[i].Old.NotAfter)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s → %s\t%s → %s\t%s\n", r.Name, r.Host, oldExp, newExp, dash(r.OldSerial), dashDry(r.NewSerial), r.Path)
	}
	return tw.Flush()
}

// dashDry stands for the serial a dry run does not make.
func dashDry(s string) string {
	if s == "" {
		return "(dry run)"
	}
	return s
}

// expiryMetric is the gauge -o prometheus prints.
const expiryMetric = "etcd_staticpod_certificate_expiry_timestamp_seconds"

// printExpiryMetrics writes Prometheus' text format as node-exporter's
// textfile collector reads it: HELP and TYPE, then one sample per
// certificate, without timestamps (the collector refuses them).
func printExpiryMetrics(w io.Writer, samples []expiry.Expiry) error {
	var b strings.Builder
	b.WriteString("# HELP " + expiryMetric + " When the etcd certificate expires (its NotAfter), in seconds since the Unix epoch.\n")
	b.WriteString("# TYPE " + expiryMetric + " gauge\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%s{host=%s,name=%s,path=%s} %d\n", expiryMetric, labelValue(s.Host), labelValue(s.Name), labelValue(s.Path), s.NotAfter)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// labelValue quotes a label value as the text format wants: backslash,
// double quote and newline escaped.
func labelValue(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
