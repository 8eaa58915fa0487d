package spec

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate checks the defaulted spec. It returns warnings (things that work
// but are unwise) and the first error, which names the host, field and value.
func (c *Cluster) Validate() (warnings []string, err error) {
	if len(c.Hosts) == 0 {
		return nil, fmt.Errorf("hosts: at least one host is required (--hosts NAME=ADDRESS,... or hosts: in --config)")
	}
	names := map[string]int{}
	addrs := map[string]string{}
	for i, h := range c.Hosts {
		where := fmt.Sprintf("hosts[%d]", i)
		if h.Name != "" {
			where = fmt.Sprintf("host %q", h.Name)
		}
		if errs := validation.IsDNS1123Label(h.Name); len(errs) > 0 {
			return nil, fmt.Errorf("%s: name %q is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)", where, h.Name)
		}
		if j, dup := names[h.Name]; dup {
			return nil, fmt.Errorf("%s: name %q is used by hosts[%d] too", where, h.Name, j)
		}
		names[h.Name] = i
		if err := validateAddress(h.Address); err != nil {
			return nil, fmt.Errorf("%s: address %q %v", where, h.Address, err)
		}
		key := net.ParseIP(h.Address).String()
		if other, dup := addrs[key]; dup {
			return nil, fmt.Errorf("%s: address %q is used by host %q too", where, h.Address, other)
		}
		addrs[key] = h.Name
		for _, f := range []struct {
			field string
			sans  []string
		}{{"serverCertSANs", h.ServerCertSANs}, {"peerCertSANs", h.PeerCertSANs}} {
			for _, san := range f.sans {
				if err := validateSAN(san); err != nil {
					return nil, fmt.Errorf("%s: %s %q %v", where, f.field, san, err)
				}
			}
		}
	}
	if len(c.Hosts)%2 == 0 {
		warnings = append(warnings, fmt.Sprintf("%d hosts: an even number of members tolerates no more failures than %d; an odd number is recommended", len(c.Hosts), len(c.Hosts)-1))
	}
	if !slices.Contains(encryptionAlgorithms, c.EncryptionAlgorithm) {
		return nil, fmt.Errorf("encryptionAlgorithm %q: want one of %s", c.EncryptionAlgorithm, strings.Join(encryptionAlgorithms, ", "))
	}
	if c.CertificateValidity.Duration <= 0 {
		return nil, fmt.Errorf("certificateValidity %q: must be positive", c.CertificateValidity.String())
	}
	if c.CACertificateValidity.Duration <= 0 {
		return nil, fmt.Errorf("caCertificateValidity %q: must be positive", c.CACertificateValidity.String())
	}
	for _, p := range []struct{ field, value string }{
		{"certDir", c.CertDir}, {"etcd.dataDir", c.Etcd.DataDir}, {"controlPlane.certDir", c.ControlPlane.CertDir},
	} {
		if !strings.HasPrefix(p.value, "/") {
			return nil, fmt.Errorf("%s %q: must be an absolute path", p.field, p.value)
		}
	}
	for _, a := range c.Etcd.ExtraArgs {
		if a.Name == "" || strings.HasPrefix(a.Name, "-") || strings.ContainsAny(a.Name, "= \t") {
			return nil, fmt.Errorf("etcd.extraArgs name %q: want a flag name without leading dashes", a.Name)
		}
	}
	for _, e := range c.Etcd.ExtraEnv {
		if e.Name == "" || strings.ContainsAny(e.Name, "= \t") {
			return nil, fmt.Errorf("etcd.extraEnv name %q: want an environment variable name", e.Name)
		}
	}
	if c.Etcd.ClusterState != "new" && c.Etcd.ClusterState != "existing" {
		return nil, fmt.Errorf("etcd.initialClusterState %q: want new or existing", c.Etcd.ClusterState)
	}
	if c.Kubelet.CgroupDriver != "systemd" && c.Kubelet.CgroupDriver != "cgroupfs" {
		return nil, fmt.Errorf("kubelet.cgroupDriver %q: want systemd or cgroupfs", c.Kubelet.CgroupDriver)
	}
	if u, err := url.Parse(c.Kubelet.ContainerRuntimeEndpoint); err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("kubelet.containerRuntimeEndpoint %q: want a URL such as unix:///run/containerd/containerd.sock", c.Kubelet.ContainerRuntimeEndpoint)
	}
	if !strings.HasPrefix(c.Kubelet.Path, "/") {
		return nil, fmt.Errorf("kubelet.path %q: must be an absolute path", c.Kubelet.Path)
	}
	cp := c.ControlPlane
	if cp.KubeadmAPIVersion != "v1beta4" && cp.KubeadmAPIVersion != "v1beta3" {
		return nil, fmt.Errorf("controlPlane.kubeadmAPIVersion %q: want v1beta4 or v1beta3", cp.KubeadmAPIVersion)
	}
	if v := cp.KubernetesVersion; v != "" && !strings.HasPrefix(v, "v") && !strings.HasPrefix(v, "stable") && !strings.HasPrefix(v, "latest") {
		return nil, fmt.Errorf("controlPlane.kubernetesVersion %q: want a version such as v1.36.3", v)
	}
	for _, s := range []struct{ field, value string }{{"controlPlane.podSubnet", cp.PodSubnet}, {"controlPlane.serviceSubnet", cp.ServiceSubnet}} {
		if s.value == "" {
			continue
		}
		for _, cidr := range strings.Split(s.value, ",") {
			if _, _, err := net.ParseCIDR(cidr); err != nil {
				return nil, fmt.Errorf("%s %q: %q is not a CIDR", s.field, s.value, cidr)
			}
		}
	}
	if ep := cp.ControlPlaneEndpoint; ep != "" {
		host := ep
		if h, _, err := net.SplitHostPort(ep); err == nil {
			host = h
		}
		if validateSAN(host) != nil {
			return nil, fmt.Errorf("controlPlane.controlPlaneEndpoint %q: want HOST or HOST:PORT", ep)
		}
	}
	for _, san := range cp.APIServerCertSANs {
		if err := validateSAN(san); err != nil {
			return nil, fmt.Errorf("controlPlane.apiServerCertSANs %q %v", san, err)
		}
	}
	if err := c.validateBackup(); err != nil {
		return nil, err
	}
	return warnings, nil
}

func validateAddress(a string) error {
	if strings.Contains(a, "%") {
		return fmt.Errorf("has a zone; give a global IPv4 or IPv6 address")
	}
	ip := net.ParseIP(a)
	if ip == nil {
		return fmt.Errorf("is not an IPv4 or IPv6 address")
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("is unspecified; give the address the member is reached on")
	}
	return nil
}

func validateSAN(s string) error {
	if strings.Contains(s, "%") {
		return fmt.Errorf("has a zone; a certificate cannot hold it")
	}
	if net.ParseIP(s) != nil {
		return nil
	}
	if len(validation.IsDNS1123Subdomain(s)) == 0 || len(validation.IsWildcardDNS1123Subdomain(s)) == 0 {
		return nil
	}
	return fmt.Errorf("is neither an IP address nor a DNS name")
}
