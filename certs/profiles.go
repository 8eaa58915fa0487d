// Package certs is the etcd PKI: a declarative table of the certificates each
// host needs, the CA, issuing, PEM encoding, checking existing files against
// the spec.
package certs

import (
	"crypto/x509"
	"net"
	"slices"

	certutil "k8s.io/client-go/util/cert"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Profile describes one kind of certificate. The table below is the single
// source of what gets issued; phases and checks are derived from it.
type Profile struct {
	// Name is the phase and renewal name, as kubeadm spells it.
	Name string
	// Files are the pair's files below the cert dir.
	Files layout.CertFiles
	// Short is a one-line description for help text.
	Short string
	// CommonName is the subject CN for a host.
	CommonName func(h spec.Host) string
	// Usages are the extended key usages.
	Usages []x509.ExtKeyUsage
	// AltNames returns the SANs for a host; nil for client certificates.
	AltNames func(h spec.Host) *certutil.AltNames
}

// CA returns the etcd CA's profile. Its key stays in the CA store.
func CA() Profile {
	return Profile{
		Name:       "etcd-ca",
		Files:      layout.CA,
		Short:      "the self-signed CA that signs every etcd certificate",
		CommonName: func(spec.Host) string { return "etcd-ca" },
	}
}

// Leaves returns the per-host certificates in kubeadm's order.
func Leaves() []Profile {
	return []Profile{
		{
			Name:       "etcd-server",
			Files:      layout.Server,
			Short:      "the certificate etcd serves clients with",
			CommonName: hostName,
			Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			AltNames:   func(h spec.Host) *certutil.AltNames { return memberAltNames(h, h.ServerCertSANs) },
		},
		{
			Name:       "etcd-peer",
			Files:      layout.Peer,
			Short:      "the certificate etcd members talk to each other with",
			CommonName: hostName,
			Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			AltNames:   func(h spec.Host) *certutil.AltNames { return memberAltNames(h, h.PeerCertSANs) },
		},
		{
			Name:       "etcd-healthcheck-client",
			Files:      layout.HealthcheckClient,
			Short:      "the client certificate for health checks",
			CommonName: func(spec.Host) string { return "kube-etcd-healthcheck-client" },
			Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
		{
			Name:       "apiserver-etcd-client",
			Files:      layout.APIServerEtcdClient,
			Short:      "the client certificate kube-apiserver uses to reach etcd",
			CommonName: func(spec.Host) string { return "kube-apiserver-etcd-client" },
			Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
	}
}

// MonitoringClient is the client certificate Prometheus scrapes every
// member's /metrics with. It names no host, is made only for `init
// --monitoring`, and its key stays in OUT/monitoring: no etcd host needs it.
func MonitoringClient() Profile {
	return Profile{
		Name:       "etcd-monitoring-client",
		Files:      layout.MonitoringClient,
		Short:      "the client certificate Prometheus scrapes the members' /metrics with",
		CommonName: func(spec.Host) string { return "etcd-monitoring-client" },
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// ApplicationClient is the client certificate applications reach etcd run
// as a StatefulSet with (runtime statefulset). It names no host.
func ApplicationClient() Profile {
	return Profile{
		Name:       "etcd-client",
		Files:      layout.ApplicationClient,
		Short:      "the client certificate applications reach the StatefulSet's etcd with",
		CommonName: func(spec.Host) string { return "etcd-client" },
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// Leaf returns the leaf profile with that name.
func Leaf(name string) (Profile, bool) {
	for _, p := range Leaves() {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// APIServerClient is kube-apiserver's client certificate, the one the
// control-plane node gets a copy of.
func APIServerClient() Profile {
	p, _ := Leaf("apiserver-etcd-client")
	return p
}

func hostName(h spec.Host) string { return h.Name }

// memberAltNames are kubeadm's etcd SANs: the host name, localhost, the
// host's address and both loopbacks, then the extra SANs.
func memberAltNames(h spec.Host, extra []string) *certutil.AltNames {
	alt := &certutil.AltNames{
		DNSNames: []string{h.Name, "localhost"},
		IPs:      []net.IP{h.IP(), net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, san := range extra {
		if ip := net.ParseIP(san); ip != nil {
			alt.IPs = append(alt.IPs, ip)
		} else {
			alt.DNSNames = append(alt.DNSNames, san)
		}
	}
	dedupe(alt)
	return alt
}

// dedupe follows kubeadm: DNS names become a sorted set, IPs keep their
// first-seen order.
func dedupe(alt *certutil.AltNames) {
	slices.Sort(alt.DNSNames)
	alt.DNSNames = slices.Compact(alt.DNSNames)
	seen := map[string]bool{}
	ips := alt.IPs[:0]
	for _, ip := range alt.IPs {
		if !seen[ip.String()] {
			seen[ip.String()] = true
			ips = append(ips, ip)
		}
	}
	alt.IPs = ips
}
