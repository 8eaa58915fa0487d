// Package membership scales a running cluster made from our bundles out and
// in: it adds a host (its bundle, then the member, as a learner that is
// promoted once in sync), promotes a learner, and removes a member, keeping
// the recorded spec (OUT/cluster.yaml) and the control plane's
// kubeadm-config.yaml in step with the cluster's member list.
//
// Every refusal happens before anything changes, on disk or in the
// cluster; it is a *badinput.Error when the command line, the spec or the
// member list are at fault. The cluster is changed before the spec is
// recorded, so a run that fails in between leaves a cluster that is ahead
// of the spec, and running the same command again finishes the job.
package membership

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Options are what every membership operation works from.
type Options struct {
	// Out is the bundle folder: the CA store, a folder per host, the
	// recorded spec. Default ./etcd-bundles.
	Out string
	// Config is the spec to start from; "" means Out/cluster.yaml. The
	// updated spec is always recorded in Out/cluster.yaml.
	Config string
	// CACert and CAKey name a CA kept outside Out/pki/etcd.
	CACert, CAKey string
	// Connect says how to reach the cluster. Without a bundle, a host
	// folder in Out is used for the certificates and, without endpoints,
	// for finding the members.
	Connect etcdops.Options
	// Log receives progress lines and the steps left to the operator.
	Log io.Writer
	// ChecksBy is when the look at the cluster before a change (finding
	// it, its member list, every member's health, all asked at once) must
	// end, so that a member that does not answer costs that much and no
	// more. Zero means one request timeout after the operation starts.
	ChecksBy time.Time
	// Warn receives warnings (default: Log).
	Warn io.Writer
}

// refuse is a refusal because of the command line, the spec, the local
// files or what the cluster already holds. Nothing was changed.
func refuse(format string, args ...any) error {
	return badinput.Errorf(format, args...)
}

// session is one operation's view: the spec, the cluster and its members.
type session struct {
	opts     Options
	spec     *spec.Cluster
	specPath string
	target   *etcdops.Target
	members  []etcdops.Member
}

// waitingSession starts the session of a command that waits for a member:
// the wait checked (0 means DefaultWait), the spec loaded.
func waitingSession(o Options, wait *time.Duration) (*session, error) {
	if *wait == 0 {
		*wait = DefaultWait
	}
	if *wait < 0 {
		return nil, refuse("--wait %q: must be positive", *wait)
	}
	c, path, err := loadSpec(o)
	if err != nil {
		return nil, err
	}
	return &session{opts: o, spec: c, specPath: path}, nil
}

func (o *Options) defaults() {
	if o.ChecksBy.IsZero() {
		o.ChecksBy = time.Now().Add(o.Connect.RequestTimeout())
	}
	if o.Out == "" {
		o.Out = layout.DefaultOut
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

func (s *session) logf(format string, args ...any) {
	fmt.Fprintf(s.opts.Log, format+"\n", args...)
}

// loadSpec reads, defaults and validates the spec the operation starts
// from: Config, else Out's recorded spec.
func loadSpec(o Options) (*spec.Cluster, string, error) {
	r, err := spec.Resolve(spec.Source{Config: o.Config, Out: o.Out, Required: true})
	if err != nil {
		return nil, "", err
	}
	return r.Cluster, r.Path, nil
}

// clone copies the spec deeply enough to change its host list and etcd
// settings.
func clone(c *spec.Cluster) *spec.Cluster {
	n := *c
	n.Hosts = slices.Clone(c.Hosts)
	return &n
}

// checkDeadline is the context of the checks before a change: it ends at
// o.ChecksBy.
func (o *Options) checkDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, o.ChecksBy)
}

// connect resolves the cluster and reads its member list with a
// linearizable request. avoid names hosts whose folders should not be the
// starting point (the host being removed).
func (s *session) connect(ctx context.Context, avoid ...string) error {
	co := s.opts.Connect
	if co.Bundle == "" {
		co.Bundle = s.bundleFolder(avoid)
		if co.Bundle == "" && len(co.Endpoints) == 0 {
			return refuse("--out %q: no host folder with %s or %s for the hosts of %s; give --endpoints with --cacert, --cert and --key", s.opts.Out, layout.Rel(layout.EtcdManifest), layout.Rel(layout.EtcdConfig), s.specPath)
		}
	}
	t, err := etcdops.Resolve(ctx, co)
	if err != nil {
		return err
	}
	for _, n := range t.Notes {
		s.logf("note: %s", n)
	}
	s.target = t
	ms, err := etcdops.Members(ctx, t)
	if err != nil {
		return fmt.Errorf("the cluster's member list: %w", err)
	}
	s.members = ms
	if len(co.Endpoints) == 0 {
		// Every member that serves clients, as found now.
		if eps := etcdops.ClientEndpoints(ms); len(eps) > 0 {
			t.Endpoints = eps
		}
	}
	return nil
}

// bundleFolder is the first host folder of the spec that holds a manifest
// (or, with runtime systemd, etcd.conf.yml), skipping avoid unless nothing
// else is there.
func (s *session) bundleFolder(avoid []string) string {
	var fallback string
	for _, h := range s.spec.Hosts {
		dir := layout.Bundle(s.opts.Out).Host(h.Name)
		if _, err := etcdops.ReadHost(dir); err != nil {
			continue
		}
		if slices.Contains(avoid, h.Name) {
			fallback = dir
			continue
		}
		return dir
	}
	return fallback
}

// urlIP is the IP address in a URL's host, or nil for a name.
func urlIP(u string) net.IP {
	p, err := url.Parse(u)
	if err != nil {
		return nil
	}
	return net.ParseIP(p.Hostname())
}

// hasAddress reports whether any of the member's peer or client URLs is on
// the address.
func hasAddress(m etcdops.Member, addr string) bool {
	ip := net.ParseIP(addr)
	if ip == nil {
		return false
	}
	for _, u := range append(slices.Clone(m.PeerURLs), m.ClientURLs...) {
		if got := urlIP(u); got != nil && got.Equal(ip) {
			return true
		}
	}
	return false
}

// peerOn reports whether one of the member's peer URLs is on the address.
func peerOn(m etcdops.Member, addr string) bool {
	ip := net.ParseIP(addr)
	for _, u := range m.PeerURLs {
		if got := urlIP(u); got != nil && ip != nil && got.Equal(ip) {
			return true
		}
	}
	return false
}

// pairing puts the spec's hosts beside the cluster's members: a started
// member belongs to the host of its name, one not started yet (it has no
// name) to the host its peer URL is on.
type pairing struct {
	member map[string]etcdops.Member
	// strays are members of no host; missing are hosts with no member.
	strays  []etcdops.Member
	missing []spec.Host
	// conflicts say where a member and its host disagree on the address.
	conflicts []string
}

func pair(c *spec.Cluster, ms []etcdops.Member) pairing {
	p := pairing{member: map[string]etcdops.Member{}}
	for _, m := range ms {
		found := false
		for _, h := range c.Hosts {
			if _, taken := p.member[h.Name]; taken {
				continue
			}
			switch {
			case m.Started() && m.Name == h.Name:
				if ip := firstPeerIP(m); ip != nil && !ip.Equal(net.ParseIP(h.Address)) {
					p.conflicts = append(p.conflicts, fmt.Sprintf("member %s has peer URL %s but the spec gives it address %s", m.Name, strings.Join(m.PeerURLs, ","), h.Address))
				}
			case !m.Started() && peerOn(m, h.Address):
			default:
				continue
			}
			p.member[h.Name] = m
			found = true
			break
		}
		if !found {
			p.strays = append(p.strays, m)
		}
	}
	for _, h := range c.Hosts {
		if _, ok := p.member[h.Name]; !ok {
			p.missing = append(p.missing, h)
		}
	}
	return p
}

func firstPeerIP(m etcdops.Member) net.IP {
	for _, u := range m.PeerURLs {
		if ip := urlIP(u); ip != nil {
			return ip
		}
	}
	return nil
}

// describe names a member for messages: its name, or its ID and peer URLs
// while it has not started.
func describe(m etcdops.Member) string {
	if m.Started() {
		return fmt.Sprintf("%s (ID %s)", m.Name, m.IDString())
	}
	return fmt.Sprintf("%s (%s, not started)", m.IDString(), strings.Join(m.PeerURLs, ","))
}

// disagreement is the one-line complaint about a pairing, or "" when the
// spec and the member list agree.
func (p pairing) disagreement() string {
	var parts []string
	for _, h := range p.missing {
		parts = append(parts, fmt.Sprintf("host %s (%s) is not a member", h.Name, h.Address))
	}
	for _, m := range p.strays {
		parts = append(parts, fmt.Sprintf("member %s is not in the spec", describe(m)))
	}
	parts = append(parts, p.conflicts...)
	return strings.Join(parts, "; ")
}

// record writes the spec to Out/cluster.yaml, the control plane's
// kubeadm-config.yaml and, when Out/monitoring exists, Prometheus'
// prometheus.yml for its hosts through the phases that write them (one
// atomic batch, the spec first).
func (s *session) record(c *spec.Cluster) error {
	r, err := phases.NewRunner(phases.Options{Cluster: c, Out: s.opts.Out, Log: s.opts.Log, Warn: s.opts.Warn})
	if err != nil {
		return err
	}
	if err := r.Run([]phases.Phase{phases.Record(), phases.MonitoringTargets()}); err != nil {
		return fmt.Errorf("record the spec: %w", err)
	}
	if want := layout.Bundle(s.opts.Out).Spec(); !sameFile(s.specPath, want) {
		s.logf("note: %s is unchanged; %s records the new host list", s.specPath, want)
	}
	return nil
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// reconfigPatience bounds how long a membership change refused as
// "unhealthy cluster" is tried again: etcd wants five seconds of contact
// with the members, which a member that just restarted has not had.
const reconfigPatience = 20 * time.Second

// retryUnhealthy runs change until etcd stops refusing it as "unhealthy
// cluster" (see RetryUnhealthy).
func (s *session) retryUnhealthy(ctx context.Context, what string, change func() error) error {
	return RetryUnhealthy(ctx, s.logf, what, change)
}

// RetryUnhealthy runs change until etcd stops refusing it as "unhealthy
// cluster", which it does before proposing anything, so a retry cannot
// apply the change twice; for at most reconfigPatience. logf hears once
// that it waits.
func RetryUnhealthy(ctx context.Context, logf func(string, ...any), what string, change func() error) error {
	deadline := time.Now().Add(reconfigPatience)
	told := false
	for {
		err := change()
		if err == nil || !etcdops.IsUnhealthy(err) || time.Now().After(deadline) {
			return err
		}
		if !told {
			logf("[member] etcd refuses to %s until it has been in touch with every member for a few seconds; retrying for up to %v", what, reconfigPatience)
			told = true
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// etcdServers is kube-apiserver's --etcd-servers for the spec's hosts.
func etcdServers(c *spec.Cluster) string {
	var urls []string
	for _, h := range c.Hosts {
		urls = append(urls, h.ClientURL())
	}
	return strings.Join(urls, ",")
}
