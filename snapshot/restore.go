package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.uber.org/zap"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// tokenPattern keeps a token usable inside a file name and a shell word.
var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// RestoreOptions say what to restore and for which hosts.
type RestoreOptions struct {
	// Cluster is the spec: its hosts are the members of the new cluster.
	Cluster *spec.Cluster
	// Snapshot is the file saved from the old cluster.
	Snapshot string
	// Out is the bundle folder; host NAME's root is Out/NAME.
	Out string
	// Node, when set, restores only that host.
	Node string
	// Root, with Node, is that host's root instead of Out/NAME (such as /
	// on the node itself).
	Root string
	// Token is the new cluster's initial-cluster-token; empty makes a
	// random one, which Node forbids: every member needs the same token.
	Token string
	// RevisionBump, when positive, raises the restored revision by this
	// much and marks it compacted, so that watchers such as kube-apiserver
	// see no revision go backwards and list again.
	RevisionBump uint64
	// Context calls the restore off (SIGINT, SIGTERM): whatever it had
	// written, restored folders already renamed into place included, is
	// removed and Restore returns the context's cause.
	Context context.Context
	// WriteDelay holds the restore with its temp folders filled and
	// checked, before they are finished: tests use it to widen that window.
	WriteDelay time.Duration
}

// MaxRevisionBump bounds RevisionBump. etcd's revision is an int64 and the
// bump is added to the snapshot's revision: a bump near 1<<63 wraps it
// negative. 1<<62 leaves as much again for the snapshot's own revision and
// for the writes after the restore (at a million writes a second, over a
// hundred thousand years), while any bump that matters to a watcher (the
// writes since the snapshot, typically 1e9) stays far below it.
const MaxRevisionBump = 1 << 62

// RestoredMember is one host's restored data folder.
type RestoredMember struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// ID is the member ID etcd derives from the name's peer URLs and the
	// token; a new token gives every member a new ID.
	ID       uint64   `json:"-"`
	PeerURLs []string `json:"peerURLs"`
	// DataDir is the member's --data-dir on the host (/var/lib/etcd).
	DataDir string `json:"dataDir"`
	// StateDir, with runtime systemd, is the folder that really holds
	// DataDir on the host: the unit's DynamicUser= makes StateDirectory=
	// in /var/lib/private, and DataDir is a link to it.
	StateDir string `json:"stateDir,omitempty"`
	// RestoreDir is the restored folder on the host, beside DataDir.
	RestoreDir string `json:"restoreDir"`
	// AsideDir is where the swap moves the old data: beside DataDir, or
	// beside StateDir with runtime systemd.
	AsideDir string `json:"asideDir"`
	// Written is where RestoreDir was written on this machine.
	Written string `json:"written"`
	// Source is the file the member's flags came from: its manifest (or
	// etcd.conf.yml), or "the cluster spec" when the host folder has none.
	Source string `json:"source"`
	// Runtime is how etcd runs on the host: static-pod or systemd.
	Runtime string `json:"runtime"`
	// Copy is the command that copies Written to the host from this
	// machine; empty when it was written in the host's own root (--root).
	Copy string `json:"copy,omitempty"`
	// Stop, Swap and Start are shell commands to run as root on the host,
	// Stop on every host before any Swap, and Start on every host last.
	Stop  []string `json:"stop"`
	Swap  []string `json:"swap"`
	Start []string `json:"start"`
}

// RestoreResult is what a restore wrote.
type RestoreResult struct {
	Token          string `json:"token"`
	ClusterID      uint64 `json:"-"`
	InitialCluster string `json:"initialCluster"`
	// Snapshot is the verified snapshot file.
	Snapshot Info `json:"snapshot"`
	// Members are the restored hosts, in the spec's order.
	Members []RestoredMember `json:"members"`
	// AllHosts is the number of members the new cluster has, which may be
	// more than Members with a node restore.
	AllHosts int `json:"allHosts"`
}

// NewToken is a random cluster token.
func NewToken() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a cluster token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Restore checks the hosts and verifies the snapshot, then writes for
// every host (or for o.Node) a data folder made from it with the member's
// own name and peer URLs, the whole initial cluster and the new token,
// beside the member's data folder in the host's root:
// HOSTROOT/var/lib/etcd.restore-TOKEN.
// The members' flags come from each host's static Pod manifest, which is
// what etcd will run with, or from the spec where a host folder has none.
// Nothing is overwritten: a restored folder that exists already is an
// error before anything is written, and a failure removes what this run
// wrote.
func Restore(o RestoreOptions) (*RestoreResult, error) {
	if o.Context == nil {
		o.Context = context.Background()
	}
	c := o.Cluster
	if c == nil || len(c.Hosts) == 0 {
		return nil, errors.New("restore: no hosts in the cluster spec")
	}
	if o.Root != "" && o.Node == "" {
		return nil, inputErr("--root", o.Root, "needs --node to say which host this is")
	}
	if o.RevisionBump > MaxRevisionBump {
		return nil, inputErr("--bump-revision", strconv.FormatUint(o.RevisionBump, 10), "at most %d (1<<62): etcd's revision is a signed 64-bit number", uint64(MaxRevisionBump))
	}
	hosts := c.Hosts
	if o.Node != "" {
		h, ok := c.Host(o.Node)
		if !ok {
			return nil, inputErr("--node", o.Node, "no such host in the cluster spec")
		}
		hosts = []spec.Host{h}
		if o.Token == "" {
			return nil, inputErr("--node", o.Node, "every member must be restored with the same cluster token: give --token (the one printed by the restore of the first host)")
		}
	}
	token := o.Token
	if token == "" {
		var err error
		if token, err = NewToken(); err != nil {
			return nil, err
		}
	} else if !tokenPattern.MatchString(token) {
		return nil, inputErr("--token", token, "want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}

	res := &RestoreResult{Token: token, AllHosts: len(c.Hosts)}
	read := map[string]memberFlags{}
	for _, h := range hosts {
		root := layout.Bundle(o.Out).Host(h.Name)
		rootFlag := "--out"
		if o.Root != "" {
			root, rootFlag = o.Root, "--root"
		}
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			what := "no host folder " + root + "; run init first"
			if o.Root != "" {
				what = root + " is not a folder"
			}
			return nil, inputErr(rootFlag, flagValue(o), "%s", what)
		}
		f, err := hostFlags(c, h, root)
		if err != nil {
			return nil, err
		}
		read[h.Name] = f
		dataDir := path.Clean(f.dataDir)
		if !path.IsAbs(dataDir) || dataDir == "/" {
			return nil, inputErr("--data-dir", f.dataDir, "of %s: want an absolute path below /", f.source)
		}
		restoreDir := layout.RestoreDir(dataDir, token)
		m := RestoredMember{
			Name: h.Name, Address: h.Address, PeerURLs: f.peerURLs,
			DataDir: dataDir, RestoreDir: restoreDir, AsideDir: layout.AsideDir(dataDir, token),
			Written: filepath.Join(root, filepath.FromSlash(restoreDir)), Source: f.source,
			Runtime: spec.RuntimeStaticPod,
		}
		if f.systemd {
			m.Runtime = spec.RuntimeSystemd
			m.StateDir = layout.DynamicStateDir(dataDir)
			m.AsideDir = layout.AsideDir(m.StateDir, token)
		}
		// A link on the way must not take the restored data out of the tree.
		tree := o.Out
		if o.Root != "" {
			tree = o.Root
		}
		if err := safefile.Beneath(tree, filepath.Dir(m.Written)); err != nil {
			return nil, &badinput.Error{What: rootFlag, Value: flagValue(o), Err: err}
		}
		if _, err := os.Lstat(m.Written); err == nil {
			return nil, inputErr("--token", token, "%s exists; refusing to overwrite it: choose another token or remove it", m.Written)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("restore %s: %w", m.Written, err)
		}
		m.Stop, m.Swap, m.Start = hostSteps(c, m)
		if o.Root == "" {
			m.Copy = copyCommand(h, m)
		}
		res.Members = append(res.Members, m)
	}

	initial, err := restoredCluster(c, o, read)
	if err != nil {
		return nil, err
	}
	res.InitialCluster = initial.String()
	rc, err := membership.NewClusterFromURLsMap(zap.NewNop(), token, initial)
	if err != nil {
		return nil, inputErr("--initial-cluster", res.InitialCluster, "%w", err)
	}
	res.ClusterID = uint64(rc.ID())
	for i := range res.Members {
		if m := rc.MemberByName(res.Members[i].Name); m != nil {
			res.Members[i].ID = uint64(m.ID)
		}
	}

	// Read last, as it reads the whole file.
	if err := restoreAll(o, res); err != nil {
		return nil, err
	}
	return res, nil
}

// restoredCluster is the new cluster: exactly the spec's hosts, each with
// the peer URLs its own file advertises. A file's --initial-cluster is the
// cluster of that member's first start, which member add and remove leave
// behind, so it only stands in for hosts whose files are out of view (a
// restore on the node itself, --root), before the spec.
func restoredCluster(c *spec.Cluster, o RestoreOptions, read map[string]memberFlags) (types.URLsMap, error) {
	var started types.URLsMap
	for _, f := range read {
		if o.Root == "" {
			break
		}
		ic, err := types.NewURLsMap(f.initialCluster)
		if err != nil || len(ic) == 0 {
			return nil, inputErr("--initial-cluster", f.initialCluster, "of %s: not NAME=URL,...", f.source)
		}
		started = ic
	}
	initial := types.URLsMap{}
	for _, h := range c.Hosts {
		f, ok := read[h.Name]
		switch {
		case ok:
		case o.Root != "" && started[h.Name] != nil:
			initial[h.Name] = started[h.Name]
			continue
		default:
			var err error
			if f, err = hostFlags(c, h, layout.Bundle(o.Out).Host(h.Name)); err != nil {
				return nil, err
			}
		}
		urls, err := types.NewURLs(f.peerURLs)
		if err != nil {
			return nil, inputErr("--initial-advertise-peer-urls", strings.Join(f.peerURLs, ","), "of %s: %v", f.source, err)
		}
		initial[h.Name] = urls
	}
	return initial, nil
}

func flagValue(o RestoreOptions) string {
	if o.Root != "" {
		return o.Root
	}
	return o.Out
}

// memberFlags are the flags of a member that a restore needs.
type memberFlags struct {
	peerURLs       []string
	dataDir        string
	initialCluster string
	source         string
	// systemd: the host runs etcd as a systemd service.
	systemd bool
}

// hostFlags reads the member's flags from the host's manifest (or, with
// runtime systemd, its etcd.conf.yml), which is what etcd runs with, or,
// when the host folder has neither, from what init would write for the
// spec.
func hostFlags(c *spec.Cluster, h spec.Host, root string) (memberFlags, error) {
	m, err := etcdops.ReadHost(root)
	systemd := c.Systemd()
	switch {
	case err == nil:
		systemd = filepath.Base(m.Path) == path.Base(layout.EtcdConfig)
	case errors.Is(err, os.ErrNotExist):
		pod, perr := manifests.EtcdPod(c, h, manifests.HostExtraArgs(c, h))
		if perr != nil {
			return memberFlags{}, perr
		}
		m = &etcdops.Manifest{Command: pod.Spec.Containers[0].Command, Path: "the cluster spec"}
	default:
		return memberFlags{}, &badinput.Error{What: "manifest", Value: layout.OnHost(root, layout.EtcdManifest), Err: err}
	}
	what := "manifest"
	if systemd {
		what = "etcd config file"
	}
	f := memberFlags{source: m.Path, systemd: systemd}
	get := func(name string) (string, error) {
		v, ok := m.Flag(name)
		if !ok || strings.TrimSpace(v) == "" {
			return "", inputErr(what, m.Path, "no --%s for host %s", name, h.Name)
		}
		return strings.TrimSpace(v), nil
	}
	name, err := get("name")
	if err != nil {
		return f, err
	}
	if name != h.Name {
		return f, inputErr(what, m.Path, "runs member --name=%s, but it is in the folder of host %s", name, h.Name)
	}
	peers, err := get("initial-advertise-peer-urls")
	if err != nil {
		return f, err
	}
	urls, err := types.NewURLs(strings.Split(peers, ","))
	if err != nil {
		return f, inputErr(what, m.Path, "--initial-advertise-peer-urls=%s: %v", peers, err)
	}
	f.peerURLs = urls.StringSlice()
	if f.dataDir, err = get("data-dir"); err != nil {
		return f, err
	}
	if f.initialCluster, err = get("initial-cluster"); err != nil {
		return f, err
	}
	return f, nil
}

// hostSteps are the commands that stop the member's static Pod, swap the
// restored folder in and start the Pod again, all on the host; with
// runtime systemd, they stop and start etcd.service and swap the folder
// the unit's DynamicUser= really keeps the data in.
func hostSteps(c *spec.Cluster, m RestoredMember) (stop, swap, start []string) {
	if m.Runtime == spec.RuntimeSystemd {
		unit := layout.EtcdUnitName
		// systemctl stop returns once etcd has exited.
		stop = []string{"systemctl stop " + unit}
		sd, r, a := shellcmd.Quote(m.StateDir), shellcmd.Quote(m.RestoreDir), shellcmd.Quote(m.AsideDir)
		// The restored folder stays root's: on start, systemd finds the
		// state folder's owner is not the service's user and changes the
		// owner of everything in it (StateDirectory=), and its mode to
		// StateDirectoryMode=.
		swap = []string{"{ [ ! -e " + sd + " ] || mv " + sd + " " + a + "; } && mkdir -p -m 0700 " + shellcmd.Quote(path.Dir(m.StateDir)) + " && mv " + r + " " + sd}
		// --no-block: etcd reports ready only once a quorum runs, so a
		// blocking start on the first host would wait for the others.
		start = []string{"systemctl start --no-block " + unit}
		return stop, swap, start
	}
	manifest := layout.EtcdManifest
	stop = []string{
		// kubelet stops a static Pod whose manifest leaves its staticPodPath.
		"mv " + manifest + " " + layout.ParkedManifest,
		"while crictl --runtime-endpoint " + shellcmd.Quote(c.Kubelet.ContainerRuntimeEndpoint) + " ps -q --name etcd | grep -q .; do sleep 1; done",
	}
	d, r, a := shellcmd.Quote(m.DataDir), shellcmd.Quote(m.RestoreDir), shellcmd.Quote(m.AsideDir)
	swap = []string{"{ [ ! -e " + d + " ] || mv " + d + " " + a + "; } && mv " + r + " " + d}
	start = []string{"mv " + layout.ParkedManifest + " " + manifest}
	return stop, swap, start
}

// copyCommand copies a restored folder from this machine to its host,
// keeping its modes.
func copyCommand(h spec.Host, m RestoredMember) string {
	return shellcmd.Join("scp", "-rp", m.Written, shellcmd.SCPTarget("root", h.Address, path.Dir(m.RestoreDir)+"/"))
}

// WriteRunbook writes what the operator does with a restore: stop every
// member, swap each restored folder in, start them, check, clean up. out
// is the bundle folder; local says the commands run on the node itself
// (--root), not through ssh from the machine that restored.
func (r *RestoreResult) WriteRunbook(w io.Writer, out string, local bool) error {
	fmt.Fprintln(w, "\nEvery member must be restored from this same snapshot with this same token, and no")
	fmt.Fprintln(w, "member may run on its old data once one runs on restored data.")
	on := func(m RestoredMember, cmds []string) string {
		line := strings.Join(cmds, " && ")
		if local {
			return "  " + line
		}
		return "  " + shellcmd.Join("ssh", shellcmd.SSHTarget("root", m.Address), line)
	}
	if len(r.Members) < r.AllHosts {
		fmt.Fprintf(w, "Restore every other host the same way, with --token %s and this snapshot (SHA-256 %s):\n", r.Token, r.Snapshot.SHA256)
		fmt.Fprintf(w, "  etcd-staticpod snapshot restore SNAPSHOT --config %s --node NAME --root / --token %s\n", layout.SpecFile, r.Token)
	}
	systemd := r.Members[0].Runtime == spec.RuntimeSystemd
	if systemd {
		fmt.Fprintln(w, "\n1. Stop etcd on EVERY host before any data is swapped (systemctl stop returns once etcd has exited):")
	} else {
		fmt.Fprintln(w, "\n1. Stop etcd on EVERY host before any data is swapped: kubelet stops the static Pod once its")
		fmt.Fprintln(w, "   manifest leaves /etc/kubernetes/manifests; wait until the container is gone.")
	}
	for _, m := range r.Members {
		fmt.Fprintln(w, on(m, m.Stop))
	}
	switch {
	case systemd:
		m := r.Members[0]
		if local {
			fmt.Fprintln(w, "2. Once etcd is stopped on every host, move the old data aside and the restored folder in.")
		} else {
			fmt.Fprintln(w, "2. Once etcd is stopped on every host, copy each restored folder to its host, then move the")
			fmt.Fprintln(w, "   old data aside and the restored folder in.")
		}
		fmt.Fprintf(w, "   The unit's DynamicUser= keeps the data in %s (%s is a link to it), so the\n", m.StateDir, m.DataDir)
		fmt.Fprintln(w, "   restored folder goes there. Leave it owned by root: when etcd starts, systemd sees that the")
		fmt.Fprintln(w, "   state folder is not the service user's and gives it and everything in it to that user, with")
		fmt.Fprintln(w, "   mode 0700 (StateDirectory=, StateDirectoryMode=). Do not chown it yourself: a folder the")
		fmt.Fprintln(w, "   user owns already is taken as it is, files below included.")
	case local:
		fmt.Fprintln(w, "2. Once etcd is stopped on every host, move the old data folder aside and the restored one in:")
	default:
		fmt.Fprintln(w, "2. Once etcd is stopped on every host, copy each restored folder to its host, move the old")
		fmt.Fprintln(w, "   data folder aside and the restored one in:")
	}
	for _, m := range r.Members {
		if m.Copy != "" {
			fmt.Fprintln(w, "  "+m.Copy)
		}
		fmt.Fprintln(w, on(m, m.Swap))
	}
	if systemd {
		fmt.Fprintln(w, "3. Start etcd on every host (--no-block: each reports ready only once a quorum runs).")
	} else {
		fmt.Fprintln(w, "3. Start etcd on every host: move the manifests back.")
	}
	for _, m := range r.Members {
		fmt.Fprintln(w, on(m, m.Start))
	}
	fmt.Fprintln(w, "4. Check the new cluster; once it is healthy the old data folders can go:")
	if local {
		fmt.Fprintln(w, "  etcd-staticpod health && etcd-staticpod members")
	} else {
		fmt.Fprintf(w, "  etcd-staticpod health --bundle %s && etcd-staticpod members --bundle %s\n",
			filepath.Join(out, r.Members[0].Name), filepath.Join(out, r.Members[0].Name))
	}
	for _, m := range r.Members {
		fmt.Fprintln(w, on(m, []string{"rm -rf " + shellcmd.Quote(m.AsideDir)}))
	}
	return nil
}
