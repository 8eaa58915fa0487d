package manifests

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// MetricsPort is where kubeadm's etcd serves /livez and /readyz over plain HTTP.
const MetricsPort = 2381

// localhost is the loopback address of the host's IP family: kubeadm binds
// the metrics listener and the extra client listener to it.
func localhost(h spec.Host) string {
	if h.IsIPv6() {
		return "::1"
	}
	return "127.0.0.1"
}

// Member is what sets one member's etcd flags apart from another's, and one
// runtime's from another's: its name, its URLs and where it finds its
// certificates. Every other flag is the cluster's.
type Member struct {
	Name                string
	ListenClientURLs    string
	AdvertiseClientURLs string
	ListenPeerURLs      string
	AdvertisePeerURLs   string
	ListenMetricsURLs   string
	InitialCluster      string
	InitialClusterState string
	// The TLS files, as etcd's container sees them.
	CertFile, KeyFile, PeerCertFile, PeerKeyFile, TrustedCAFile string
}

// kubeadmMember is the member kubeadm v1.36 computes for a new
// single-member cluster on h: it listens on the host's address and its
// loopback and knows only itself.
func kubeadmMember(c *spec.Cluster, h spec.Host) Member {
	lo := localhost(h)
	return Member{
		Name:                h.Name,
		ListenClientURLs:    "https://" + net.JoinHostPort(lo, strconv.Itoa(spec.ClientPort)) + "," + h.ClientURL(),
		AdvertiseClientURLs: h.ClientURL(),
		ListenPeerURLs:      h.PeerURL(),
		AdvertisePeerURLs:   h.PeerURL(),
		ListenMetricsURLs:   "http://" + net.JoinHostPort(lo, strconv.Itoa(MetricsPort)),
		InitialCluster:      h.Name + "=" + h.PeerURL(),
		CertFile:            layout.Server.Cert(c.CertDir),
		KeyFile:             layout.Server.Key(c.CertDir),
		PeerCertFile:        layout.Peer.Cert(c.CertDir),
		PeerKeyFile:         layout.Peer.Key(c.CertDir),
		TrustedCAFile:       layout.CA.Cert(c.CertDir),
	}
}

// guideMember is the member the HA etcd guide makes of h: it knows every
// host and listens on the host's address alone.
func guideMember(c *spec.Cluster, h spec.Host) Member {
	m := kubeadmMember(c, h)
	m.ListenClientURLs = h.ClientURL()
	m.InitialCluster = c.InitialCluster()
	m.InitialClusterState = c.Etcd.ClusterState
	return m
}

// defaultArgs are the flags kubeadm v1.36 gives member m, before any
// extraArgs, sorted the way kubeadm sorts them (by name, then by value).
func defaultArgs(c *spec.Cluster, m Member) []spec.Arg {
	args := []spec.Arg{
		{Name: "name", Value: m.Name},
		{Name: "feature-gates", Value: "InitialCorruptCheck=true"},
		{Name: "listen-client-urls", Value: m.ListenClientURLs},
		{Name: "advertise-client-urls", Value: m.AdvertiseClientURLs},
		{Name: "listen-peer-urls", Value: m.ListenPeerURLs},
		{Name: "initial-advertise-peer-urls", Value: m.AdvertisePeerURLs},
		{Name: "data-dir", Value: c.Etcd.DataDir},
		{Name: "cert-file", Value: m.CertFile},
		{Name: "key-file", Value: m.KeyFile},
		{Name: "trusted-ca-file", Value: m.TrustedCAFile},
		{Name: "client-cert-auth", Value: "true"},
		{Name: "peer-cert-file", Value: m.PeerCertFile},
		{Name: "peer-key-file", Value: m.PeerKeyFile},
		{Name: "peer-trusted-ca-file", Value: m.TrustedCAFile},
		{Name: "peer-client-cert-auth", Value: "true"},
		{Name: "snapshot-count", Value: "10000"},
		{Name: "listen-metrics-urls", Value: m.ListenMetricsURLs},
		{Name: "watch-progress-notify-interval", Value: "5s"},
		// kubeadm init knows only this member; the guide's extraArgs widen it.
		{Name: "initial-cluster", Value: m.InitialCluster},
	}
	slices.SortStableFunc(args, func(a, b spec.Arg) int {
		if n := strings.Compare(a.Name, b.Name); n != 0 {
			return n
		}
		return strings.Compare(a.Value, b.Value)
	})
	return args
}

// mergeArgs applies kubeadm v1.36's rule: the defaults (already sorted) minus
// every one whose name appears in extra, then all of extra in the order
// given. Repeated names in extra are all kept, as kubeadm keeps them; etcd
// then uses the last.
func mergeArgs(defaults, extra []spec.Arg) []spec.Arg {
	overridden := make(map[string]bool, len(extra))
	for _, a := range extra {
		overridden[a.Name] = true
	}
	out := make([]spec.Arg, 0, len(defaults)+len(extra))
	for _, a := range defaults {
		if !overridden[a.Name] {
			out = append(out, a)
		}
	}
	return append(out, extra...)
}

// command renders etcd's command line from merged arguments.
func command(args []spec.Arg) []string {
	cmd := make([]string, 0, len(args)+1)
	cmd = append(cmd, "etcd")
	for _, a := range args {
		cmd = append(cmd, "--"+a.Name+"="+a.Value)
	}
	return cmd
}

// PeerURLs are the peer URLs host h's member advertises: the last
// --initial-advertise-peer-urls of its manifest's command (etcd takes the
// last), where the guide's value meets the extra args. A member is added
// to the cluster with these.
func PeerURLs(c *spec.Cluster, h spec.Host) []string {
	value := ""
	for _, a := range mergeArgs(defaultArgs(c, kubeadmMember(c, h)), HostExtraArgs(c, h)) {
		if a.Name == "initial-advertise-peer-urls" {
			value = a.Value
		}
	}
	return spec.SplitList(value)
}

// HostExtraArgs returns the extraArgs the HA etcd guide writes into h's
// kubeadmcfg.yaml, followed by the user's c.Etcd.ExtraArgs. The first user
// argument named like a guide argument takes that argument's place, so the
// guide's order stays stable; every other user argument is appended in order.
func HostExtraArgs(c *spec.Cluster, h spec.Host) []spec.Arg {
	return memberExtraArgs(c, guideMember(c, h))
}

// memberExtraArgs are the guide's per-member arguments for m, then the
// user's, by HostExtraArgs' rule.
func memberExtraArgs(c *spec.Cluster, m Member) []spec.Arg {
	args := []spec.Arg{
		{Name: "initial-cluster", Value: m.InitialCluster},
		{Name: "initial-cluster-state", Value: m.InitialClusterState},
		{Name: "name", Value: m.Name},
		{Name: "listen-peer-urls", Value: m.ListenPeerURLs},
		{Name: "listen-client-urls", Value: m.ListenClientURLs},
		{Name: "advertise-client-urls", Value: m.AdvertiseClientURLs},
		{Name: "initial-advertise-peer-urls", Value: m.AdvertisePeerURLs},
	}
	guide := len(args)
	replaced := make([]bool, guide)
	for _, u := range c.Etcd.ExtraArgs {
		i := slices.IndexFunc(args[:guide], func(a spec.Arg) bool { return a.Name == u.Name })
		if i >= 0 && !replaced[i] {
			args[i].Value = u.Value
			replaced[i] = true
			continue
		}
		args = append(args, u)
	}
	return args
}

// ProbeEndpoint is where the kubelet's probes reach etcd's health
// endpoints; an empty Host is the Pod's IP.
type ProbeEndpoint struct {
	Host   string
	Port   int32
	Scheme string
}

// metricsProbe finds the probe endpoint the way kubeadm does: from the first
// URL of the last listen-metrics-urls in extra, falling back to the loopback
// of the host's family and port 2381. kubeadm silently ignores a URL it
// cannot parse; we report it, since the probes would then point at a port
// etcd does not listen on.
func metricsProbe(h spec.Host, extra []spec.Arg) (ProbeEndpoint, error) {
	return probeFrom(ProbeEndpoint{Host: localhost(h), Port: MetricsPort, Scheme: "HTTP"}, extra)
}

// MetricsProbe is where the probes of a Pod that runs etcd with args reach
// it: the first URL of the last listen-metrics-urls, on the Pod's IP unless
// the URL names a host.
func MetricsProbe(args []spec.Arg) (ProbeEndpoint, error) {
	return probeFrom(ProbeEndpoint{Port: MetricsPort, Scheme: "HTTP"}, args)
}

// probeFrom is ep with what the last listen-metrics-urls of args says.
func probeFrom(ep ProbeEndpoint, extra []spec.Arg) (ProbeEndpoint, error) {
	value, found := "", false
	for _, a := range extra {
		if a.Name == "listen-metrics-urls" {
			value, found = a.Value, true
		}
	}
	if !found {
		return ep, nil
	}
	first, _, _ := strings.Cut(value, ",")
	u, err := parseURL(first)
	if err != nil {
		return ep, fmt.Errorf("extra argument listen-metrics-urls=%s: %w", value, err)
	}
	if u.scheme == "https" {
		ep.Scheme = "HTTPS"
	}
	if u.host != "" {
		ep.Host = u.host
	}
	if u.port != 0 {
		ep.Port = u.port
	}
	return ep, nil
}

// EtcdArgs returns the flags the static Pod gives etcd on host h, in the
// Pod's order: kubeadm's defaults merged with the guide's per-host
// arguments and the user's extraArgs. Other runtimes start etcd with the
// same settings from this list, so that both make the same cluster.
func EtcdArgs(c *spec.Cluster, h spec.Host) ([]spec.Arg, error) {
	extra := HostExtraArgs(c, h)
	if _, err := metricsProbe(h, extra); err != nil {
		return nil, fmt.Errorf("etcd settings for host %q: %w", h.Name, err)
	}
	return mergeArgs(defaultArgs(c, kubeadmMember(c, h)), extra), nil
}

// MemberArgs returns the flags etcd gets as member m of a runtime that
// places its members itself (a StatefulSet): the static Pod's defaults and
// rules with m's name, URLs and certificate files, then the user's
// extraArgs.
func MemberArgs(c *spec.Cluster, m Member) ([]spec.Arg, error) {
	args := mergeArgs(defaultArgs(c, m), memberExtraArgs(c, m))
	if _, err := MetricsProbe(args); err != nil {
		return nil, fmt.Errorf("etcd settings for member %q: %w", m.Name, err)
	}
	return args, nil
}

// Command is etcd's command line with args, as a container runs it.
func Command(args []spec.Arg) []string { return command(args) }
