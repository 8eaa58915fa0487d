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

// defaultArgs are the flags kubeadm v1.36 computes for a new single-member
// cluster on h, before any extraArgs, sorted the way kubeadm sorts them
// (by name, then by value).
func defaultArgs(c *spec.Cluster, h spec.Host) []spec.Arg {
	lo := localhost(h)
	args := []spec.Arg{
		{Name: "name", Value: h.Name},
		{Name: "feature-gates", Value: "InitialCorruptCheck=true"},
		{Name: "listen-client-urls", Value: "https://" + net.JoinHostPort(lo, strconv.Itoa(spec.ClientPort)) + "," + h.ClientURL()},
		{Name: "advertise-client-urls", Value: h.ClientURL()},
		{Name: "listen-peer-urls", Value: h.PeerURL()},
		{Name: "initial-advertise-peer-urls", Value: h.PeerURL()},
		{Name: "data-dir", Value: c.Etcd.DataDir},
		{Name: "cert-file", Value: layout.Server.Cert(c.CertDir)},
		{Name: "key-file", Value: layout.Server.Key(c.CertDir)},
		{Name: "trusted-ca-file", Value: layout.CA.Cert(c.CertDir)},
		{Name: "client-cert-auth", Value: "true"},
		{Name: "peer-cert-file", Value: layout.Peer.Cert(c.CertDir)},
		{Name: "peer-key-file", Value: layout.Peer.Key(c.CertDir)},
		{Name: "peer-trusted-ca-file", Value: layout.CA.Cert(c.CertDir)},
		{Name: "peer-client-cert-auth", Value: "true"},
		{Name: "snapshot-count", Value: "10000"},
		{Name: "listen-metrics-urls", Value: "http://" + net.JoinHostPort(lo, strconv.Itoa(MetricsPort))},
		{Name: "watch-progress-notify-interval", Value: "5s"},
		// kubeadm init knows only this member; the guide's extraArgs widen it.
		{Name: "initial-cluster", Value: h.Name + "=" + h.PeerURL()},
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
	for _, a := range mergeArgs(defaultArgs(c, h), HostExtraArgs(c, h)) {
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
	args := []spec.Arg{
		{Name: "initial-cluster", Value: c.InitialCluster()},
		{Name: "initial-cluster-state", Value: c.Etcd.ClusterState},
		{Name: "name", Value: h.Name},
		{Name: "listen-peer-urls", Value: h.PeerURL()},
		{Name: "listen-client-urls", Value: h.ClientURL()},
		{Name: "advertise-client-urls", Value: h.ClientURL()},
		{Name: "initial-advertise-peer-urls", Value: h.PeerURL()},
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

// probeEndpoint is where the kubelet's probes reach etcd's health endpoints.
type probeEndpoint struct {
	host   string
	port   int32
	scheme string
}

// metricsProbe finds the probe endpoint the way kubeadm does: from the first
// URL of the last listen-metrics-urls in extra, falling back to the loopback
// of the host's family and port 2381. kubeadm silently ignores a URL it
// cannot parse; we report it, since the probes would then point at a port
// etcd does not listen on.
func metricsProbe(h spec.Host, extra []spec.Arg) (probeEndpoint, error) {
	ep := probeEndpoint{host: localhost(h), port: MetricsPort, scheme: "HTTP"}
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
		ep.scheme = "HTTPS"
	}
	if u.host != "" {
		ep.host = u.host
	}
	if u.port != 0 {
		ep.port = u.port
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
	return mergeArgs(defaultArgs(c, h), extra), nil
}
