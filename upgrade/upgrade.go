// Package upgrade moves a running cluster to another etcd release one
// member at a time, the way its static Pods are meant to change: each
// host's manifest is rewritten from the cluster spec with the new image,
// kubelet restarts that member, and the next host waits until the member
// runs the new version, is healthy and has caught up with the leader.
// Followers go first and the leader last, so the cluster changes leader
// at most once.
package upgrade

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Defaults of Options.
const (
	DefaultWait = 5 * time.Minute
	DefaultPoll = 500 * time.Millisecond
)

// Options are what an upgrade works from; the CLI fills them.
type Options struct {
	// Current is the spec the cluster was made from (defaults set,
	// validated); Next is the same with the new etcd image.
	Current, Next *spec.Cluster
	// Out is the bundle folder: host folders DIR/NAME and DIR/cluster.yaml.
	Out string
	// Node limits the upgrade to one host; Root (with Node) is that
	// host's filesystem root, "/" on the node itself.
	Node, Root string
	// Exec runs after each host's files are rewritten, through sh -c, with
	// {name}, {address}, {manifest}, {folder}, {ssh-target} and
	// {scp-target} replaced (shell-quoted). With runtime systemd,
	// {manifest} is the host's etcd.conf.yml and the command's environment
	// holds EnvBinary (when Next carries an etcd binary), EnvBinaryPath and
	// EnvVersion: it swaps the binary on the host and restarts etcd.
	Exec string
	// CACert, Cert and Key replace the bundle's (or the node's) TLS files.
	CACert, Cert, Key string
	// Wait bounds each member's upgrade, from the rewrite until it has
	// caught up; RequestTimeout bounds each request.
	Wait, RequestTimeout time.Duration
	// ChecksBy is when the checks before anything is written (finding the
	// cluster, every member's health, status and version, all asked at
	// once) must end, so that a member that does not answer costs that
	// much and no more. Zero means RequestTimeout after Run starts.
	ChecksBy time.Time
	// Poll is the pause between checks while waiting on a member.
	Poll time.Duration
	// DryRun checks the cluster and prints the plan; nothing is written.
	DryRun bool
	// Log receives progress lines.
	Log io.Writer
	// WriteDelay holds each host's rewrite with its temp files on disk:
	// tests use it to interrupt a rewrite.
	WriteDelay time.Duration
}

// The environment an --exec command gets with runtime systemd.
const (
	// EnvBinary is the new etcd binary on this machine (--etcd-binary).
	EnvBinary = "ETCD_STATICPOD_ETCD_BINARY"
	// EnvBinaryPath is where the unit's ExecStart runs etcd on the host.
	EnvBinaryPath = "ETCD_STATICPOD_ETCD_PATH"
	// EnvVersion is the etcd version the member is to run, such as 3.6.16.
	EnvVersion = "ETCD_STATICPOD_ETCD_VERSION"
)

// inputErr is bad input: a flag, a spec field or a version the cluster
// cannot go to. Nothing has been changed.
func inputErr(format string, args ...any) error {
	return badinput.Errorf(format, args...)
}

// State is where a host stands.
type State string

// Host states.
const (
	// Upgraded: rewritten, restarted, running the new version and caught up.
	Upgraded State = "upgraded"
	// Current: it ran the new version already and its manifest was
	// unchanged, so it was left alone.
	Current State = "current"
	// Planned: what a dry run would do.
	Planned State = "planned"
	// Failed: its turn came and it did not finish; see Error.
	Failed State = "failed"
	// Pending: its turn never came.
	Pending State = "pending"
)

// HostResult is one host's outcome.
type HostResult struct {
	Name    string
	Address string
	// From is the version it ran before; To the one it runs now, when known.
	From, To string
	State    State
	// Leader is set for the host that led the cluster when its turn came.
	Leader bool
	Took   time.Duration
	Error  string
}

// Result is the outcome of a run, partial when Run fails.
type Result struct {
	Image   string
	Version string
	// Hosts come in the order they were upgraded, then the others.
	Hosts []HostResult
	// SpecRecorded is set when OUT/cluster.yaml now names the new image.
	SpecRecorded bool
}

// NewImage is the image an upgrade moves to as the flags give it; an
// empty field was not given.
type NewImage struct {
	// Image is a whole reference (--image); it overrides the others.
	Image string
	// Version is the tag (--etcd-version), Repository the registry
	// (--image-repository).
	Version, Repository string
}

// NextSpec is current with the new image, checked: the image must name an
// etcd version, and a spec that sets etcd.image is only moved by a new
// image, never by a version or a repository it would override.
func NextSpec(current *spec.Cluster, img NewImage) (*spec.Cluster, error) {
	n := *current
	if current.Etcd.Image != "" && img.Image == "" {
		flag, value := "etcd-version", img.Version
		if img.Version == "" {
			flag, value = "image-repository", img.Repository
		}
		return nil, fmt.Errorf("--%s %q: the spec sets etcd.image %q, which overrides it; give --image", flag, value, current.Etcd.Image)
	}
	if img.Image != "" {
		n.Etcd.Image = img.Image
	}
	if img.Version != "" {
		n.Etcd.Version = img.Version
	}
	if img.Repository != "" {
		n.Etcd.ImageRepository = img.Repository
	}
	if _, err := ImageVersion(n.EtcdImage()); err != nil {
		flag, value := "etcd-version", img.Version
		if img.Image != "" {
			flag, value = "image", img.Image
		}
		return nil, fmt.Errorf("--%s %q: %w", flag, value, err)
	}
	if _, err := n.Validate(); err != nil {
		return nil, err
	}
	return &n, nil
}

// upgrader is one run.
type upgrader struct {
	o      Options
	target Version
	image  string
	t      *etcdops.Target
	// scope are the hosts this run upgrades, in spec order.
	scope []spec.Host
	// members by host name; endpoint is each member's first client URL.
	members  map[string]etcdops.Member
	endpoint map[string]string
	hosts    map[string]*HostResult
	order    []string
}

// Run upgrades the cluster. The result is returned also on failure, to
// say which hosts were upgraded.
func Run(ctx context.Context, o Options) (*Result, error) {
	u, err := newUpgrader(o)
	if err != nil {
		return nil, err
	}
	res := &Result{Image: u.image, Version: u.target.String()}
	if err := u.checkBinary(ctx); err != nil {
		return nil, err
	}
	checkCtx, cancel := context.WithDeadline(ctx, u.o.ChecksBy)
	defer cancel()
	if err := u.connect(checkCtx); err != nil {
		return res, err
	}
	todo, err := u.preflight(checkCtx)
	cancel()
	res.Hosts = u.results()
	if err != nil {
		return res, err
	}
	if o.DryRun {
		u.planDryRun(ctx, todo)
		res.Hosts = u.results()
		return res, nil
	}
	for len(todo) > 0 {
		h, err := u.next(ctx, todo)
		if err != nil {
			res.Hosts = u.results()
			return res, err
		}
		todo = slices.DeleteFunc(todo, func(x spec.Host) bool { return x.Name == h.Name })
		if err := u.step(ctx, h); err != nil {
			res.Hosts = u.results()
			return res, u.stopped(ctx, h, err)
		}
	}
	res.Hosts = u.results()
	recorded, err := u.record(ctx)
	res.SpecRecorded = recorded
	return res, err
}

func newUpgrader(o Options) (*upgrader, error) {
	if o.Current == nil || o.Next == nil {
		return nil, errors.New("upgrade: no cluster spec")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Wait == 0 {
		o.Wait = DefaultWait
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = etcdops.DefaultTimeout
	}
	if o.ChecksBy.IsZero() {
		o.ChecksBy = time.Now().Add(o.RequestTimeout)
	}
	if o.Poll == 0 {
		o.Poll = DefaultPoll
	}
	if o.Out == "" {
		o.Out = layout.DefaultOut
	}
	u := &upgrader{o: o, image: o.Next.EtcdImage(), hosts: map[string]*HostResult{}}
	var err error
	if u.target, err = ImageVersion(u.image); err != nil {
		return nil, badinput.Wrap(err)
	}
	if o.Root != "" && o.Node == "" {
		return nil, inputErr("--root %q needs --node to say which host this is", o.Root)
	}
	u.scope = o.Next.Hosts
	if o.Node != "" {
		h, ok := o.Next.Host(o.Node)
		if !ok {
			return nil, inputErr("--node %q: no such host in the cluster spec", o.Node)
		}
		u.scope = []spec.Host{h}
	}
	return u, nil
}

func (u *upgrader) logf(format string, args ...any) {
	fmt.Fprintf(u.o.Log, "[upgrade] "+format+"\n", args...)
}

// hostRoot is the folder standing for the host's root: OUT/NAME, or Root.
func (u *upgrader) hostRoot(h spec.Host) string {
	if u.o.Root != "" {
		return u.o.Root
	}
	return layout.Bundle(u.o.Out).Host(h.Name)
}

// manifestFile is what runs etcd on the host, as this run rewrites it: its
// static Pod manifest, or, with runtime systemd, its etcd.conf.yml.
func (u *upgrader) manifestFile(h spec.Host) string {
	return layout.OnHost(u.hostRoot(h), u.runsFrom())
}

// runsFrom is the host path of the file etcd runs from.
func (u *upgrader) runsFrom() string {
	if u.o.Next.Systemd() {
		return layout.EtcdConfig
	}
	return layout.EtcdManifest
}

// hostFile renders what manifestFile should hold for the spec c.
func (u *upgrader) hostFile(c *spec.Cluster, h spec.Host) ([]byte, error) {
	if u.o.Next.Systemd() {
		return phases.EtcdConfigFile(c, h)
	}
	return phases.EtcdManifest(c, h)
}

// checkBinary runs the etcd binary of runtime systemd's bundles with
// --version: one of another release than the target is bad input. One that
// cannot run here (another architecture) is only noted.
func (u *upgrader) checkBinary(ctx context.Context) error {
	bin := u.o.Next.EtcdBinary
	if !u.o.Next.Systemd() || bin == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		u.logf("note: could not run %s --version here (%v); its release is checked once each member runs it", bin, err)
		return nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "etcd Version: "); ok {
			got, err := ParseVersion(strings.TrimSpace(v))
			if err == nil && got != u.target {
				return inputErr("--etcd-binary %q: it is etcd %s, not %s", bin, got, u.target)
			}
			return nil
		}
	}
	return inputErr("--etcd-binary %q: %s --version does not name an etcd version", bin, bin)
}

// connect finds the members from a host folder (or the node's files) and
// matches them with the spec's hosts.
func (u *upgrader) connect(ctx context.Context) error {
	opts := etcdops.Options{CACert: u.o.CACert, Cert: u.o.Cert, Key: u.o.Key, Timeout: u.o.RequestTimeout}
	if u.o.Root != "" {
		opts.Root = u.o.Root
	} else {
		for _, h := range u.o.Current.Hosts {
			if _, err := os.Stat(u.manifestFile(h)); err == nil {
				opts.Bundle = layout.Bundle(u.o.Out).Host(h.Name)
				break
			}
		}
		if opts.Bundle == "" {
			return inputErr("--out %q: no host folder with %s; give the folder init wrote", u.o.Out, layout.Rel(u.runsFrom()))
		}
	}
	t, err := etcdops.Resolve(ctx, opts)
	if err != nil {
		return badinput.Wrap(err)
	}
	if t.MemberListErr != nil {
		return fmt.Errorf("the cluster must be healthy before an upgrade: %w", t.MemberListErr)
	}
	for _, n := range t.Notes {
		u.logf("note: %s", n)
	}
	u.t = t
	u.members = map[string]etcdops.Member{}
	u.endpoint = map[string]string{}
	for _, m := range t.Members {
		switch {
		case !m.Started():
			return fmt.Errorf("member %s was added but has not started; start or remove it before upgrading", m.IDString())
		case m.IsLearner:
			return fmt.Errorf("member %s is a learner; promote or remove it before upgrading", m.Name)
		case len(m.ClientURLs) == 0:
			return fmt.Errorf("member %s advertises no client URL", m.Name)
		}
		if _, ok := u.o.Current.Host(m.Name); !ok {
			return fmt.Errorf("member %s is not in the cluster spec, so it cannot be upgraded; add it to the spec or remove it from the cluster", m.Name)
		}
		u.members[m.Name] = m
		u.endpoint[m.Name] = m.ClientURLs[0]
	}
	var eps []string
	for _, h := range u.o.Current.Hosts {
		ep, ok := u.endpoint[h.Name]
		if !ok {
			return fmt.Errorf("host %s of the cluster spec is not a member of the cluster (members: %s)", h.Name, strings.Join(slices.Sorted(maps.Keys(u.members)), ", "))
		}
		eps = append(eps, ep)
	}
	u.t.Endpoints = eps
	return nil
}

// health checks every member and returns the unhealthy ones as an error.
func (u *upgrader) health(ctx context.Context) error {
	var bad []string
	for i, h := range etcdops.Health(ctx, u.t) {
		if !h.Healthy {
			bad = append(bad, fmt.Sprintf("%s (%s): %s", u.o.Current.Hosts[i].Name, h.Endpoint, h.Error))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("unhealthy: %s", strings.Join(bad, "; "))
	}
	return nil
}

// statuses reads every member's status, by host name.
func (u *upgrader) statuses(ctx context.Context) (map[string]etcdops.EndpointStatus, error) {
	out := map[string]etcdops.EndpointStatus{}
	var bad []string
	for i, s := range etcdops.Status(ctx, u.t) {
		name := u.o.Current.Hosts[i].Name
		if s.Error != "" {
			bad = append(bad, fmt.Sprintf("%s (%s): %s", name, s.Endpoint, s.Error))
		}
		out[name] = s
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("no status from %s", strings.Join(bad, "; "))
	}
	return out, nil
}

// preflight checks that the cluster is healthy and that every member can
// go to the target, and returns the hosts of the scope that need a turn.
func (u *upgrader) preflight(ctx context.Context) ([]spec.Host, error) {
	var healthErr, statusErr error
	var sts map[string]etcdops.EndpointStatus
	var wg sync.WaitGroup
	wg.Go(func() { healthErr = u.health(ctx) })
	wg.Go(func() { sts, statusErr = u.statuses(ctx) })
	wg.Wait()
	if healthErr != nil {
		return nil, fmt.Errorf("the cluster must be healthy before an upgrade: %w", healthErr)
	}
	if statusErr != nil {
		return nil, fmt.Errorf("the cluster must be healthy before an upgrade: %w", statusErr)
	}
	for _, h := range u.o.Current.Hosts {
		v, err := ParseVersion(sts[h.Name].Version)
		if err != nil {
			return nil, fmt.Errorf("member %s reports version %q: %w", h.Name, sts[h.Name].Version, err)
		}
		if err := CheckStep(v, u.target); err != nil {
			return nil, badinput.Wrap(fmt.Errorf("image %s: member %s: %w", u.image, h.Name, err))
		}
	}
	var todo []spec.Host
	for _, h := range u.scope {
		running := sts[h.Name].Version
		u.hosts[h.Name] = &HostResult{Name: h.Name, Address: h.Address, From: running, To: running, State: Pending}
		want, err := u.hostFile(u.o.Next, h)
		if err != nil {
			return nil, badinput.Wrap(err)
		}
		have, err := safefile.Read(u.manifestFile(h))
		if err != nil {
			return nil, inputErr("host %s: read its manifest: %w", h.Name, err)
		}
		if was, err := u.hostFile(u.o.Current, h); err == nil && !bytes.Equal(was, have) && !bytes.Equal(want, have) {
			u.logf("note: %s differs from what the spec makes for %s; the upgrade replaces it with the spec's for %s", u.manifestFile(h), u.o.Current.EtcdImage(), u.image)
		}
		if running == u.target.String() && bytes.Equal(want, have) {
			u.hosts[h.Name].State = Current
			u.order = append(u.order, h.Name)
			u.logf("%s runs %s already and %s is the spec's for it: nothing to do", h.Name, running, u.manifestFile(h))
			continue
		}
		todo = append(todo, h)
	}
	return todo, nil
}

// next picks the first host of todo that does not lead the cluster; the
// leader goes last.
func (u *upgrader) next(ctx context.Context, todo []spec.Host) (spec.Host, error) {
	sts, err := u.statuses(ctx)
	if err != nil {
		return spec.Host{}, u.stopped(ctx, todo[0], fmt.Errorf("before its turn: %w", err))
	}
	for _, h := range todo {
		if !sts[h.Name].IsLeader {
			return h, nil
		}
	}
	return todo[0], nil
}

func (u *upgrader) planDryRun(ctx context.Context, todo []spec.Host) {
	sts, _ := u.statuses(ctx)
	slices.SortStableFunc(todo, func(a, b spec.Host) int {
		switch {
		case sts[a.Name].IsLeader == sts[b.Name].IsLeader:
			return 0
		case sts[a.Name].IsLeader:
			return 1
		}
		return -1
	})
	for i, h := range todo {
		r := u.hosts[h.Name]
		r.State, r.To, r.Leader = Planned, u.target.String(), sts[h.Name].IsLeader
		u.order = append(u.order, h.Name)
		role := "follower"
		if r.Leader {
			role = "leader"
		}
		what := u.manifestFile(h)
		if u.o.Next.Systemd() && u.o.Next.EtcdBinary != "" {
			what += " and " + layout.OnHost(u.hostRoot(h), layout.EtcdBinary)
		}
		u.logf("[dry-run] %d. %s (%s, runs %s): would rewrite %s for %s and wait for it", i+1, h.Name, role, r.From, what, u.target)
		if u.o.Exec != "" {
			u.logf("[dry-run]    and run %s", u.expandFor(h))
		}
	}
}

// step upgrades one host and waits until it has caught up.
func (u *upgrader) step(ctx context.Context, h spec.Host) error {
	r := u.hosts[h.Name]
	u.order = append(u.order, h.Name)
	start := time.Now()
	defer func() { r.Took = time.Since(start) }()
	r.State = Failed
	// A signal calls the rewrite off; the member's own timeout does not.
	runCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, u.o.Wait)
	defer cancel()
	// The previous member has just caught up; a moment of doubt (a request
	// meeting the end of an election) is waited out, a real fault is not.
	var last error
	if err := u.poll(ctx, func(ctx context.Context) bool { last = u.health(ctx); return last == nil }); err != nil {
		r.Error = last.Error()
		return fmt.Errorf("the cluster is not healthy: %w", last)
	}
	sts, err := u.statuses(ctx)
	if err != nil {
		r.Error = err.Error()
		return err
	}
	if sts[h.Name].IsLeader {
		r.Leader = true
		u.handOver(ctx, h, sts)
	}
	if u.o.Next.Systemd() {
		u.logf("%s (%s): rewriting its %s for etcd %s (runs %s)", h.Name, u.endpoint[h.Name], u.rewritten(), u.target, r.From)
	} else {
		u.logf("%s (%s): rewriting its manifest for %s (runs %s)", h.Name, u.endpoint[h.Name], u.image, r.From)
	}
	if err := u.rewrite(runCtx, h); err != nil {
		r.Error = err.Error()
		return err
	}
	if u.o.Exec != "" {
		if err := u.exec(ctx, h); err != nil {
			r.Error = err.Error()
			return err
		}
	} else if u.o.Next.Systemd() {
		u.logf("%s: %s; waiting up to %s", h.Name, u.systemdSteps(h), u.o.Wait)
	} else if u.o.Root == "" {
		u.logf("%s: kubelet on %s must see the new manifest: copy %s to %s:%s (or use --exec); waiting up to %s", h.Name, h.Address, u.manifestFile(h), h.Name, layout.EtcdManifest, u.o.Wait)
	}
	if err := u.await(ctx, h, start); err != nil {
		r.Error = err.Error()
		return err
	}
	r.State, r.To, r.Error = Upgraded, u.target.String(), ""
	return nil
}

// handOver moves leadership from the host, which is about to restart, to
// an upgraded member when there is one: one planned election instead of
// one after the leader is gone. etcd hands over on SIGTERM too, so a
// failure here only costs time.
func (u *upgrader) handOver(ctx context.Context, h spec.Host, sts map[string]etcdops.EndpointStatus) {
	var to string
	for _, name := range append(slices.Clone(u.order), u.hostNames()...) {
		if name != h.Name && sts[name].Error == "" && !sts[name].IsLearner {
			to = name
			break
		}
	}
	if to == "" {
		return
	}
	if err := etcdops.MoveLeader(ctx, u.t, u.endpoint[h.Name], u.members[to].ID, u.endpoint[to]); err != nil {
		u.logf("%s leads the cluster; moving leadership to %s failed (%v): etcd hands over itself when it stops", h.Name, to, err)
		return
	}
	u.logf("%s led the cluster: moved leadership to %s", h.Name, to)
}

func (u *upgrader) hostNames() []string {
	var names []string
	for _, h := range u.o.Current.Hosts {
		names = append(names, h.Name)
	}
	return names
}

// rewrite writes the host's manifest and kubeadmcfg.yaml from the new
// spec through init's own phases, and in bundle mode packs the archives
// again, in the same batch, so that NAME.tar.gz never ships the old
// version. Called off by ctx before the batch is put in place, it rolls
// back as init does: every file stays as it was.
func (u *upgrader) rewrite(ctx context.Context, h spec.Host) error {
	r, err := phases.NewRunner(phases.Options{Cluster: u.o.Next, Out: u.o.Out, Node: h.Name, Root: u.o.Root, Log: u.o.Log, Context: ctx, WriteDelay: u.o.WriteDelay})
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	ps := []phases.Phase{phases.EtcdLocal(), phases.KubeadmConfig()}
	if u.o.Next.Systemd() {
		// etcd.conf.yml and the unit, and the new binary when given:
		// with --root, writing it is the swap itself.
		ps = []phases.Phase{phases.Systemd(), phases.KubeadmConfig()}
	}
	if u.repack(h) {
		ps = append(ps, phases.Repack())
	}
	if err := r.Run(ps); err != nil {
		return fmt.Errorf("host %s: rewrite its files: %w", h.Name, err)
	}
	return nil
}

// repack reports whether the rewrite of h's files must pack the archives
// again: in bundle mode, once they have been packed and while every host
// has its folder.
func (u *upgrader) repack(h spec.Host) bool {
	if u.o.Root != "" {
		return false
	}
	if _, err := os.Stat(layout.Bundle(u.o.Out).Archive(h.Name)); err != nil {
		return false // never packed: nothing stale to replace
	}
	for _, o := range u.o.Next.Hosts {
		if _, err := os.Stat(layout.Bundle(u.o.Out).Host(o.Name)); err != nil {
			u.logf("not packing the archives again: %s has no folder in %s", o.Name, u.o.Out)
			return false
		}
	}
	return true
}

// exec runs the --exec command for the host.
func (u *upgrader) exec(ctx context.Context, h spec.Host) error {
	line := u.expandFor(h)
	u.logf("%s: running %s", h.Name, line)
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Stdout, cmd.Stderr = u.o.Log, u.o.Log
	if u.o.Next.Systemd() {
		cmd.Env = append(os.Environ(), EnvBinaryPath+"="+layout.EtcdBinary, EnvVersion+"="+u.target.String())
		if u.o.Next.EtcdBinary != "" {
			cmd.Env = append(cmd.Env, EnvBinary+"="+u.o.Next.EtcdBinary)
		}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("--exec for %s: %w", h.Name, err)
	}
	return nil
}

// rewritten names what a systemd host's rewrite writes.
func (u *upgrader) rewritten() string {
	if u.o.Next.EtcdBinary != "" {
		return layout.EtcdConfig + ", " + layout.EtcdUnitName + " and " + layout.EtcdBinary
	}
	return layout.EtcdConfig + " and " + layout.EtcdUnitName
}

// systemdSteps says what puts the new etcd into service on a systemd
// host when no --exec does it: the binary copied to the unit's ExecStart
// path in one rename (or the release installed there), then a restart.
func (u *upgrader) systemdSteps(h spec.Host) string {
	restart := "systemctl restart " + layout.EtcdUnitName
	if u.o.Root != "" {
		if u.o.Next.EtcdBinary != "" {
			return fmt.Sprintf("%s is in place at %s; run %s on %s", u.o.Next.EtcdBinary, layout.OnHost(u.o.Root, layout.EtcdBinary), restart, h.Name)
		}
		return fmt.Sprintf("install etcd v%s at %s on %s, then run %s", u.target, layout.EtcdBinary, h.Name, restart)
	}
	if u.o.Next.EtcdBinary == "" {
		return fmt.Sprintf("install etcd v%s (github.com/etcd-io/etcd/releases) at %s on %s, then %s (or use --exec)", u.target, layout.EtcdBinary, h.Name, shellcmd.Join("ssh", shellcmd.SSHTarget("root", h.Address), restart))
	}
	tmp := layout.EtcdBinary + ".new"
	return fmt.Sprintf("copy the new etcd and restart it (or use --exec): %s && %s",
		shellcmd.Join("scp", "-p", u.o.Next.EtcdBinary, shellcmd.SCPTarget("root", h.Address, tmp)),
		shellcmd.Join("ssh", shellcmd.SSHTarget("root", h.Address), "mv "+tmp+" "+layout.EtcdBinary+" && "+restart))
}

func (u *upgrader) expandFor(h spec.Host) string {
	return Expand(u.o.Exec, execVars(h, u.manifestFile(h), u.hostRoot(h)))
}

// execVars are what --exec's placeholders stand for on host h.
func execVars(h spec.Host, manifest, folder string) map[string]string {
	return map[string]string{
		"name":     h.Name,
		"address":  h.Address,
		"manifest": manifest,
		"folder":   folder,
		// root@ADDRESS as ssh takes it, and as scp takes it before :PATH
		// (an IPv6 address in brackets).
		"ssh-target": shellcmd.SSHTarget("root", h.Address),
		"scp-target": strings.TrimSuffix(shellcmd.SCPTarget("root", h.Address, ""), ":"),
	}
}

// Expand replaces {key} in cmd with the shell-quoted value.
func Expand(cmd string, vars map[string]string) string {
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, "{"+k+"}", shellcmd.Quote(v))
	}
	return strings.NewReplacer(pairs...).Replace(cmd)
}

// await waits until the member runs the target version, is healthy, and
// has applied everything the leader had when the member came back.
func (u *upgrader) await(ctx context.Context, h spec.Host, start time.Time) error {
	ep := u.endpoint[h.Name]
	want := u.target.String()
	var last string
	down := false
	err := u.poll(ctx, func(ctx context.Context) bool {
		s := etcdops.EndpointStatusOf(ctx, u.t, ep)
		switch {
		case s.Error != "":
			last = s.Error
			if !down {
				down = true
				u.logf("%s: stopped answering after %s (%s)", h.Name, since(start), s.Error)
			}
			return false
		case s.Version != want:
			last = "runs " + s.Version
			return false
		}
		return true
	})
	if err != nil {
		if u.o.Next.Systemd() {
			return fmt.Errorf("%s did not report version %s within %s (last: %s); its unit runs %s: is etcd %s there, and was etcd.service restarted?", h.Name, want, u.o.Wait, last, layout.EtcdBinary, want)
		}
		return fmt.Errorf("%s did not report version %s within %s (last: %s); its manifest names %s", h.Name, want, u.o.Wait, last, u.image)
	}
	u.logf("%s: runs %s after %s", h.Name, want, since(start))

	err = u.poll(ctx, func(ctx context.Context) bool {
		hl := etcdops.CheckHealth(ctx, u.t, ep)
		last = hl.Error
		return hl.Healthy
	})
	if err != nil {
		return fmt.Errorf("%s runs %s but is not healthy within %s: %s", h.Name, want, u.o.Wait, last)
	}

	var target uint64
	err = u.poll(ctx, func(ctx context.Context) bool {
		sts, err := u.statuses(ctx)
		if err != nil {
			last = err.Error()
			return false
		}
		for _, s := range sts {
			if s.IsLeader {
				target = s.RaftIndex
				return true
			}
		}
		last = "no member leads"
		return false
	})
	if err != nil {
		return fmt.Errorf("%s runs %s but the leader's raft index could not be read within %s: %s", h.Name, want, u.o.Wait, last)
	}
	var applied uint64
	err = u.poll(ctx, func(ctx context.Context) bool {
		s := etcdops.EndpointStatusOf(ctx, u.t, ep)
		applied = s.RaftAppliedIndex
		last = s.Error
		return s.Error == "" && s.RaftAppliedIndex >= target
	})
	if err != nil {
		return fmt.Errorf("%s runs %s but did not catch up with the leader within %s: applied raft index %d of %d (%s)", h.Name, want, u.o.Wait, applied, target, last)
	}
	u.logf("%s: healthy and caught up (applied raft index %d, leader at %d) after %s", h.Name, applied, target, since(start))
	return nil
}

// poll calls check until it returns true or ctx ends.
func (u *upgrader) poll(ctx context.Context, check func(context.Context) bool) error {
	tick := time.NewTicker(u.o.Poll)
	defer tick.Stop()
	for {
		if check(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// stopped says, in one line, where the upgrade stopped and where every
// host stands, with the health of the rest of the cluster.
func (u *upgrader) stopped(ctx context.Context, at spec.Host, cause error) error {
	var done, left []string
	for _, h := range u.scope {
		switch r := u.hosts[h.Name]; {
		case r == nil:
		case r.State == Upgraded || r.State == Current:
			done = append(done, h.Name)
		case h.Name != at.Name:
			left = append(left, h.Name)
		}
	}
	msg := fmt.Sprintf("upgrade to %s stopped at %s: %v; upgraded: %s; not touched: %s", u.image, at.Name, cause, listOrNone(done), listOrNone(left))
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*u.o.RequestTimeout)
	defer cancel()
	if err := u.health(hctx); err != nil {
		msg += "; cluster " + err.Error()
	} else {
		msg += "; every member is healthy"
	}
	return errors.New(msg)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// results lists the hosts in the order they were handled, then the rest.
func (u *upgrader) results() []HostResult {
	var out []HostResult
	for _, name := range u.order {
		out = append(out, *u.hosts[name])
	}
	for _, h := range u.scope {
		if r, ok := u.hosts[h.Name]; ok && !slices.Contains(u.order, h.Name) {
			out = append(out, *r)
		}
	}
	return out
}

// record writes the new image into OUT/cluster.yaml once every member
// runs the target version; a --node run leaves it until the last host.
func (u *upgrader) record(ctx context.Context) (bool, error) {
	if u.o.Root != "" {
		field := "etcd.version to " + u.o.Next.Etcd.Version
		if u.o.Next.Etcd.Image != "" {
			field = "etcd.image to " + u.o.Next.Etcd.Image
		}
		u.logf("note: --root leaves the spec alone; once every node runs %s, set %s in the spec you keep", u.target, field)
		return false, nil
	}
	sts, err := u.statuses(ctx)
	if err != nil {
		return false, fmt.Errorf("upgrade to %s: every host is done, but: %w", u.image, err)
	}
	var behind []string
	for _, h := range u.o.Current.Hosts {
		if v := sts[h.Name].Version; v != u.target.String() {
			behind = append(behind, h.Name+" runs "+v)
		}
	}
	file := layout.Bundle(u.o.Out).Spec()
	if len(behind) > 0 {
		u.logf("%s keeps %s until every member runs %s (%s)", file, u.o.Current.EtcdImage(), u.target, strings.Join(behind, ", "))
		return false, nil
	}
	b, err := spec.Marshal(u.o.Next)
	if err != nil {
		return false, err
	}
	if err := atomicfile.WriteFile(file, b, layout.ModeSpec); err != nil {
		return false, fmt.Errorf("record the new version in %s: %w", file, err)
	}
	u.logf("every member runs %s; recorded %s in %s", u.target, u.image, file)
	return true, nil
}
