package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/cpusched"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/snapshot"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// snapshotCommands are the commands that save and restore snapshots.
func snapshotCommands() []*cli.Command {
	return []*cli.Command{{
		Name:     "snapshot",
		Category: "running cluster",
		Usage:    "save the cluster's data to a file, check such a file, or restore it as a new cluster",
		Description: `A snapshot is a point-in-time copy of the whole key space, taken from one member
over the client API (etcd's Maintenance.Snapshot). It is the backup of the cluster:
it holds every Secret of the Kubernetes cluster, so it is written with mode 0600.`,
		Subcommands: []*cli.Command{snapshotSaveCommand(), snapshotStatusCommand(), snapshotRestoreCommand()},
	}}
}

func saveFlags() []cli.Flag {
	flags := connectionFlags()
	for _, f := range flags {
		if sf, ok := f.(*cli.StringFlag); ok && sf.Name == "timeout" {
			sf.Usage = "bound `DURATION` on each request to etcd, such as 5s, and on finding the members and choosing the one to save from as a whole; the transfer then runs until it ends or stalls for 30s (or this long, if longer)"
		}
	}
	return append(flags,
		&cli.StringFlag{Name: "endpoint", Usage: "save from this client `URL`, one of the cluster's, instead of the healthiest member"},
		&cli.StringFlag{Name: "dir", Usage: "instead of FILE: save as `DIR`/" + snapshot.DirFilePrefix + "YYYYMMDDTHHMMSSZ.db (UTC)", TakesFile: true},
		&cli.StringFlag{Name: "keep", Usage: "with --dir: keep the `N` newest snapshots there, the new one included, and remove older ones once it is verified (default: keep all)"})
}

func snapshotSaveCommand() *cli.Command {
	return &cli.Command{
		Name:      "save",
		Usage:     "stream a snapshot from the healthiest member into FILE and verify it",
		UsageText: "etcd-staticpod snapshot save (FILE | --dir DIR [--keep N]) [--endpoint URL] " + connectUsage,
		Description: `Finds the cluster as health does, asks every member at once for its health and
status, and saves from the best one: healthy first, then the highest raft applied
index (the most recent data), then a follower rather than the leader. --endpoint
names the member instead; it is used even when unhealthy, which is how data is
rescued from a cluster that lost its quorum. When no member is healthy the most
recent one that answers is used, with a note on stderr. --timeout bounds finding
the members and their answers; a member silent by then is passed over, with a note.

The snapshot streams straight into a temp file beside FILE (mode 0600), hashed as
it arrives, and the temp file replaces FILE only once it passed the checks a
restore makes: the SHA-256 digest etcd appends matches the data, and bbolt's
consistency check of every page passes (run on the pages just written, while they
are synced to disk). A broken or damaged transfer leaves FILE as it was. A
progress bar goes to stderr when stderr is a terminal. The save runs as a batch
task (SCHED_BATCH, its nice value kept): on a machine it shares with a member,
it never preempts that member, which then sends faster and keeps serving.

For backups on a schedule, --dir DIR names the file itself:
DIR/` + snapshot.DirFilePrefix + `YYYYMMDDTHHMMSSZ.db, the time in UTC to the second (a second
save within the same second gets -2, -3, ... before .db). With --keep N, once the
new snapshot is saved and verified, the oldest snapshots of that name pattern
beyond the N newest are removed; other files in DIR are never touched, and a
save that fails removes nothing.

Output: the member saved from, revision, number of keys, size and the file's
SHA-256 (what sha256sum prints). -o json (or yaml) prints {"path", "endpoint",
"member", "revision", "totalKeys", "size", "sha256", "storageVersion", "hash",
"took"}, and with --dir also "kept" and "removed" (the files, newest first and
oldest first).

` + findingTheCluster + `

Exit status: 0 when FILE holds a verified snapshot, 1 when the cluster gave none
or it failed verification, 2 for a bad flag, FILE in a missing folder, or
unreadable local files.

Examples:
  # on an etcd host: its own certificates and manifest
  etcd-staticpod snapshot save /var/backups/etcd-$(date +%F).db

  # from the machine that ran init
  etcd-staticpod snapshot save ./etcd.db --bundle ./etcd-bundles/etcd01

  # from one given member, JSON for scripts
  etcd-staticpod snapshot save ./etcd.db --bundle ./etcd-bundles/etcd01 \
    --endpoint https://10.107.88.16:2379 -o json

  # a nightly backup on an etcd host, keeping a week of them
  etcd-staticpod snapshot save --dir /var/backups/etcd --keep 7`,
		Flags:  saveFlags(),
		Action: withTrailingFlags(saveFlags, runSnapshotSave),
	}
}

func runSnapshotSave(c *cli.Context) error {
	var file, format, dir string
	keep := 0
	var err error
	if c.IsSet("dir") {
		dir = c.String("dir")
		if c.NArg() > 0 {
			return badArgs(fmt.Errorf("FILE %q: give FILE or --dir, not both", c.Args().First()))
		}
		if strings.TrimSpace(dir) == "" {
			return badArgs(fmt.Errorf("--dir %q: must not be empty", dir))
		}
		if c.IsSet("keep") {
			n, err := strconv.Atoi(c.String("keep"))
			if err != nil || n < 1 {
				return badArgs(fmt.Errorf("--keep %q: want a whole number, 1 or more", c.String("keep")))
			}
			keep = n
		}
		if format, err = outputFormat(c); err != nil {
			return err
		}
	} else {
		if c.IsSet("keep") {
			return badArgs(fmt.Errorf("--keep %q: give it with --dir", c.String("keep")))
		}
		if file, format, err = argAndFormat(c, "FILE"); err != nil {
			return err
		}
	}
	if c.IsSet("endpoint") && strings.TrimSpace(c.String("endpoint")) == "" {
		return badArgs(fmt.Errorf("--endpoint %q: must not be empty", c.String("endpoint")))
	}
	// Before contacting anyone: a missing folder is a typo.
	if dir != "" {
		err = snapshot.CheckDir(dir, keep)
	} else {
		err = snapshot.CheckPath(file)
	}
	if err != nil {
		return badArgs(err)
	}
	// Never preempting the member that streams to it, when both share a
	// machine; a refusal only leaves the process as it was.
	_ = cpusched.Batch()
	ctx, cancel, err := commandDeadline(c)
	if err != nil {
		return err
	}
	defer cancel()
	t, err := resolveTarget(ctx, c)
	if err != nil {
		return err
	}
	deadline, _ := ctx.Deadline()
	bar := newProgressBar(c.App.ErrWriter)
	so := snapshot.SaveOptions{
		Target:   t,
		Endpoint: strings.TrimSpace(c.String("endpoint")),
		Path:     file,
		Progress: bar.update,
		ChooseBy: deadline,
	}
	var res *snapshot.SaveResult
	var inDir *snapshot.DirResult
	if dir != "" {
		inDir, err = snapshot.SaveToDir(c.Context, snapshot.DirOptions{SaveOptions: so, Dir: dir, Keep: keep})
		if inDir != nil {
			res = inDir.SaveResult
		}
	} else {
		res, err = snapshot.Save(c.Context, so)
	}
	bar.finish()
	if err != nil && res == nil {
		return err
	}
	for _, n := range res.Notes {
		fmt.Fprintln(c.App.ErrWriter, "note:", n)
	}
	if perr := printSaved(c.App.Writer, format, res, inDir); perr != nil {
		return perr
	}
	if err != nil {
		// Saved and verified, but the retention failed.
		return err
	}
	return nil
}

func snapshotStatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "verify a snapshot file and show its revision, keys, size and SHA-256",
		UsageText: "etcd-staticpod snapshot status FILE [-o table|json|yaml]",
		Description: `Checks FILE offline, as a restore will: the SHA-256 digest etcd appends to a
snapshot must match the data before it, and bbolt's consistency check must pass
on every page. Nothing is written.

Output as for snapshot save, without the member. Exit status: 0 when the file is
a sound snapshot, 1 when it is damaged or not a snapshot, 2 for a bad flag or an
unreadable file.

Examples:
  etcd-staticpod snapshot status ./etcd.db
  etcd-staticpod snapshot status ./etcd.db -o json | jq -r .sha256`,
		Flags: statusFlags(),
		Action: withTrailingFlags(statusFlags, func(c *cli.Context) error {
			file, format, err := argAndFormat(c, "FILE")
			if err != nil {
				return err
			}
			info, err := snapshot.Verify(file)
			if err != nil {
				var ie *snapshot.IntegrityError
				if errors.As(err, &ie) {
					return err
				}
				var se *safefile.Error
				if errors.As(err, &se) {
					return badArgs(se)
				}
				return badArgs(fmt.Errorf("FILE %q: %w", file, safefile.Reason(err)))
			}
			return printSaved(c.App.Writer, format, &snapshot.SaveResult{Info: *info}, nil)
		}),
	}
}

func snapshotRestoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "make every member's data folder from one snapshot, for a new cluster of the same hosts",
		UsageText: "etcd-staticpod snapshot restore FILE [--out DIR | --config FILE] [--node NAME [--root DIR]] [--token TOKEN] [--bump-revision N] [-o table|json|yaml]",
		Description: `Verifies FILE, then, for every host of the cluster spec (DIR/` + layout.SpecFile + ` or --config),
restores a data folder from it with the member's name and peer URLs, the whole
initial cluster and a NEW cluster token, so that the restored members form a new
cluster (new cluster and member IDs) that no old member can rejoin. The flags come
from each host's static Pod manifest (runtime systemd: its etcd.conf.yml) in its
host folder, which is what etcd will run with, or from the spec when the folder has
neither.

Each folder is written beside the member's data folder in the host folder:
DIR/NAME/var/lib/etcd.restore-TOKEN, which is /var/lib/etcd.restore-TOKEN on
the host. --node NAME --root / writes one host's folder on the node itself.
Nothing is overwritten: an existing folder of that name is an error, and a failed
run removes what it wrote.

Then it prints the exact sequence for static Pods: stop etcd on EVERY host first
(move the manifest out of /etc/kubernetes/manifests, wait until the container is
gone), then on each host move the old data folder aside and the restored one into
place, then move the manifests back. With runtime systemd: systemctl stop etcd.service
on EVERY host first; then the restored folder replaces /var/lib/private/etcd, where
the unit's DynamicUser= keeps the data (/var/lib/etcd is a link to it), left owned by
root: on start systemd gives the folder and everything in it to the service's user
(StateDirectory=); then systemctl start --no-block etcd.service. Every member must be
restored from the same snapshot with the same token; a node restore therefore needs
--token.

--bump-revision N raises the revision by N and marks it compacted, as etcdutl
does, so that watchers such as kube-apiserver's never see the revision go back
and list afresh; 1000000000 is the usual choice for a Kubernetes cluster.

Output: -o json (or yaml) prints {"token", "clusterID", "initialCluster",
"snapshot", "members": [{"name", "id", "address", "peerURLs", "dataDir", "stateDir",
"restoreDir", "asideDir", "written", "source", "runtime", "copy", "stop", "swap",
"start"}]}, where stop, swap and start are shell commands to run as root on the host
and stateDir (runtime systemd) is the folder that really holds dataDir.

Exit status: 0 when every folder was written, 1 when writing failed (nothing is
left behind), 2 for a bad flag, a damaged snapshot, or a folder in the way.

Examples:
  # every host's folder, in the bundles init wrote
  etcd-staticpod snapshot restore ./etcd.db --out ./etcd-bundles

  # on the node etcd02 itself, with the token the first restore printed
  etcd-staticpod snapshot restore /root/etcd.db --config cluster.yaml --node etcd02 --root / --token 3f9ac0d2e1b4

  # for a Kubernetes cluster's etcd
  etcd-staticpod snapshot restore ./etcd.db --out ./etcd-bundles --bump-revision 1000000000`,
		Flags: restoreFlags(),
		Action: withTrailingFlags(restoreFlags, func(c *cli.Context) error {
			file, format, err := argAndFormat(c, "FILE")
			if err != nil {
				return err
			}
			for _, name := range []string{"out", "config", "node", "root", "token", "bump-revision"} {
				if c.IsSet(name) && strings.TrimSpace(c.String(name)) == "" {
					return badArgs(fmt.Errorf("--%s %q: must not be empty", name, c.String(name)))
				}
			}
			var bump uint64
			if c.IsSet("bump-revision") {
				if bump, err = strconv.ParseUint(c.String("bump-revision"), 10, 63); err != nil || bump == 0 || bump > snapshot.MaxRevisionBump {
					return badArgs(fmt.Errorf("--bump-revision %q: want a whole number from 1 to %d (1<<62), such as 1000000000", c.String("bump-revision"), uint64(snapshot.MaxRevisionBump)))
				}
			}
			cl, err := loadRestoreSpec(c)
			if err != nil {
				return badArgs(err)
			}
			release, err := holdFolders(c, c.String("out"), c.String("root"), false)
			if err != nil {
				return err
			}
			defer release()
			res, err := snapshot.Restore(snapshot.RestoreOptions{
				Cluster:      cl,
				Snapshot:     file,
				Out:          c.String("out"),
				Node:         c.String("node"),
				Root:         c.String("root"),
				Token:        c.String("token"),
				RevisionBump: bump,
				Context:      c.Context,
				WriteDelay:   testWriteDelay(),
			})
			if err != nil {
				return err
			}
			return printRestored(c.App.Writer, format, res, c.String("out"), c.String("root"), file)
		}),
	}
}

// loadRestoreSpec reads --config, else OUT/cluster.yaml, defaulted and
// validated.
func loadRestoreSpec(c *cli.Context) (*spec.Cluster, error) {
	r, err := spec.Resolve(spec.Source{Config: c.String("config"), Out: c.String("out"), Required: true})
	if err != nil {
		return nil, err
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "warning:", w)
	}
	return r.Cluster, nil
}

// savedDoc is the JSON and YAML document of snapshot save and status; its
// field names are part of the command-line interface.
type savedDoc struct {
	Path           string `json:"path"`
	Endpoint       string `json:"endpoint,omitempty"`
	Member         string `json:"member,omitempty"`
	Revision       int64  `json:"revision"`
	TotalKeys      int    `json:"totalKeys"`
	Size           int64  `json:"size"`
	SHA256         string `json:"sha256"`
	StorageVersion string `json:"storageVersion"`
	Hash           uint32 `json:"hash"`
	Took           string `json:"took,omitempty"`
	// Kept and Removed are set with --dir.
	Kept    *[]string `json:"kept,omitempty"`
	Removed *[]string `json:"removed,omitempty"`
}

func printSaved(w io.Writer, format string, r *snapshot.SaveResult, inDir *snapshot.DirResult) error {
	d := savedDoc{
		Path: r.Path, Endpoint: r.Source.Endpoint, Member: r.Source.Name,
		Revision: r.Revision, TotalKeys: r.TotalKeys, Size: r.Size, SHA256: r.SHA256,
		StorageVersion: r.StorageVersion, Hash: r.Hash,
	}
	if r.Source.Endpoint != "" {
		d.Took = formatTook(r.Took)
	}
	if inDir != nil {
		kept, removed := nonNil(inDir.Kept), nonNil(inDir.Removed)
		d.Kept, d.Removed = &kept, &removed
	}
	switch format {
	case "json", "yaml":
		return writeDoc(w, format, d)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "FILE\t%s\n", d.Path)
	if d.Endpoint != "" {
		from := d.Endpoint
		if d.Member != "" {
			from = d.Member + " (" + d.Endpoint + ")"
		}
		fmt.Fprintf(tw, "FROM\t%s\n", from)
	}
	fmt.Fprintf(tw, "REVISION\t%d\n", d.Revision)
	fmt.Fprintf(tw, "TOTAL KEYS\t%d\n", d.TotalKeys)
	fmt.Fprintf(tw, "SIZE\t%s (%d bytes)\n", humanBytes(d.Size), d.Size)
	fmt.Fprintf(tw, "SHA256\t%s\n", d.SHA256)
	fmt.Fprintf(tw, "STORAGE VERSION\t%s\n", dash(d.StorageVersion))
	fmt.Fprintf(tw, "HASH\t%08x\n", d.Hash)
	if d.Took != "" {
		fmt.Fprintf(tw, "TOOK\t%s\n", d.Took)
	}
	if inDir != nil {
		fmt.Fprintf(tw, "KEPT\t%s\n", dash(strings.Join(inDir.Kept, " ")))
		fmt.Fprintf(tw, "REMOVED\t%s\n", dash(strings.Join(inDir.Removed, " ")))
	}
	return tw.Flush()
}

// restoredDoc is the JSON and YAML document of snapshot restore.
type restoredDoc struct {
	Token          string              `json:"token"`
	ClusterID      string              `json:"clusterID"`
	InitialCluster string              `json:"initialCluster"`
	Snapshot       snapshot.Info       `json:"snapshot"`
	Members        []restoredMemberDoc `json:"members"`
}

type restoredMemberDoc struct {
	ID string `json:"id"`
	snapshot.RestoredMember
}

func printRestored(w io.Writer, format string, r *snapshot.RestoreResult, out, root, file string) error {
	if format != "table" {
		d := restoredDoc{Token: r.Token, ClusterID: etcdops.FormatID(r.ClusterID), InitialCluster: r.InitialCluster, Snapshot: r.Snapshot}
		for _, m := range r.Members {
			d.Members = append(d.Members, restoredMemberDoc{ID: etcdops.FormatID(m.ID), RestoredMember: m})
		}
		return writeDoc(w, format, d)
	}
	fmt.Fprintf(w, "Restored %s (revision %d, %d keys, SHA-256 %s) for %d of %d members\n",
		file, r.Snapshot.Revision, r.Snapshot.TotalKeys, r.Snapshot.SHA256, len(r.Members), r.AllHosts)
	fmt.Fprintf(w, "with the new cluster token %s (cluster ID %s; every member has a new ID).\n\n", r.Token, etcdops.FormatID(r.ClusterID))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tMEMBER ID\tPEER URLS\tON THE HOST\tWRITTEN TO")
	for _, m := range r.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, etcdops.FormatID(m.ID), strings.Join(m.PeerURLs, ","), m.RestoreDir, m.Written)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.WriteRunbook(w, out, root != "")
}

// progressBar draws the transfer on a terminal, at most ten times a
// second; on anything else it draws nothing.
type progressBar struct {
	w     io.Writer
	on    bool
	drawn bool
	last  time.Time
}

func newProgressBar(w io.Writer) *progressBar {
	return &progressBar{w: w, on: isTerminal(w)}
}

// isTerminal reports whether w is a character device other than
// /dev/null, which is what a terminal looks like from its file mode.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}

func (p *progressBar) update(done, total int64) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.drawn = true
	if total <= 0 {
		fmt.Fprintf(p.w, "\rsaving snapshot: %s", humanBytes(done))
		return
	}
	const width = 30
	frac := min(float64(done)/float64(total), 1)
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %s of %s", strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100, humanBytes(done), humanBytes(total))
}

// finish clears the bar, so that notes and errors start on a clean line.
func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func statusFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json or yaml"},
	}
}

func restoreFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "out", Value: "./" + layout.DefaultOut, Usage: "bundle `DIR` written by init: its " + layout.SpecFile + " and host folders"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "cluster spec `FILE` (default: OUT/" + layout.SpecFile + ")", TakesFile: true},
		&cli.StringFlag{Name: "node", Usage: "restore only this host `NAME`"},
		&cli.StringFlag{Name: "root", Usage: "with --node: the host's filesystem root `DIR` instead of OUT/NAME, such as / on the node", TakesFile: true},
		&cli.StringFlag{Name: "token", Usage: "new cluster `TOKEN` (default: a random one, printed)"},
		&cli.StringFlag{Name: "bump-revision", Usage: "raise the restored revision by `N` and mark it compacted"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json or yaml"},
		waitLockFlag(),
	}
}
