// Package spec is the cluster description every phase works from: the hosts
// and the cluster-wide settings, loaded from a versioned YAML document and
// overridden by flags, then defaulted and validated before anything is written.
package spec

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// APIVersion and Kind identify our own cluster document.
const (
	APIVersion = "etcd-staticpod.io/v1alpha1"
	Kind       = "EtcdCluster"
)

// Defaults, chosen to match what kubeadm v1.36 writes for the HA etcd guide.
const (
	DefaultImageRepository          = "registry.k8s.io"
	DefaultEtcdVersion              = "3.6.8-0"
	DefaultEncryptionAlgorithm      = "RSA-2048"
	DefaultCertificateValidity      = 365 * 24 * time.Hour
	DefaultCACertificateValidity    = 10 * 365 * 24 * time.Hour
	DefaultCgroupDriver             = "systemd"
	DefaultContainerRuntimeEndpoint = "unix:///run/containerd/containerd.sock"
	DefaultKubeletPath              = "/usr/bin/kubelet"
	DefaultKubeadmAPIVersion        = "v1beta4"
	DefaultRuntime                  = RuntimeStaticPod
	ClientPort                      = 2379
	PeerPort                        = 2380
)

// How etcd runs on the hosts.
const (
	// RuntimeStaticPod is a kubelet static Pod, as the kubeadm guide does.
	RuntimeStaticPod = "static-pod"
	// RuntimeSystemd is a systemd service running etcd from its own
	// configuration file, without kubelet.
	RuntimeSystemd = "systemd"
	// RuntimeStatefulSet is a StatefulSet inside a Kubernetes cluster,
	// for applications that need an etcd of their own.
	RuntimeStatefulSet = "statefulset"
)

// Runtimes returns the accepted runtime values.
func Runtimes() []string { return []string{RuntimeStaticPod, RuntimeSystemd, RuntimeStatefulSet} }

// EncryptionAlgorithms lists the key types accepted, by kubeadm v1beta4's names.
var encryptionAlgorithms = []string{"RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384"}

// EncryptionAlgorithms returns the accepted --encryption-algorithm values.
func EncryptionAlgorithms() []string { return append([]string(nil), encryptionAlgorithms...) }

// Cluster is the whole input of the tool.
type Cluster struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`

	Hosts []Host `yaml:"hosts" json:"hosts"`

	// Runtime is how etcd runs: static-pod (default) or systemd on hosts,
	// or statefulset inside a Kubernetes cluster.
	Runtime string `yaml:"runtime,omitempty" json:"runtime,omitempty"`
	// EtcdBinary, with runtime systemd, is an etcd binary on the machine
	// that runs init, put into every host's bundle where the unit runs it.
	EtcdBinary string `yaml:"etcdBinary,omitempty" json:"etcdBinary,omitempty"`
	// StatefulSet, with runtime statefulset, places the members.
	StatefulSet *StatefulSet `yaml:"statefulset,omitempty" json:"statefulset,omitempty"`

	// EncryptionAlgorithm is the key type of every key made: RSA-2048 (default),
	// RSA-3072, RSA-4096, ECDSA-P256 or ECDSA-P384.
	EncryptionAlgorithm string `yaml:"encryptionAlgorithm,omitempty" json:"encryptionAlgorithm,omitempty"`
	// CertificateValidity is the lifetime of leaf certificates (default 8760h).
	CertificateValidity Duration `yaml:"certificateValidity,omitempty" json:"certificateValidity,omitempty"`
	// CACertificateValidity is the lifetime of a new CA (default 87600h).
	CACertificateValidity Duration `yaml:"caCertificateValidity,omitempty" json:"caCertificateValidity,omitempty"`
	// CertDir is where certificates live on an etcd host (default /etc/kubernetes/pki).
	CertDir string `yaml:"certDir,omitempty" json:"certDir,omitempty"`

	Etcd         Etcd         `yaml:"etcd,omitempty" json:"etcd,omitempty"`
	Kubelet      Kubelet      `yaml:"kubelet,omitempty" json:"kubelet,omitempty"`
	ControlPlane ControlPlane `yaml:"controlPlane,omitempty" json:"controlPlane,omitempty"`

	// Monitoring makes init write OUT/monitoring/: a Prometheus scrape
	// configuration, alerting rules and the client certificate they use.
	Monitoring bool `yaml:"monitoring,omitempty" json:"monitoring,omitempty"`
	// Backup, when set, gives one host systemd units that save a snapshot
	// on a schedule.
	Backup *Backup `yaml:"backup,omitempty" json:"backup,omitempty"`
	// InstallCLI puts this command into every host's bundle at
	// /usr/local/bin/etcd-staticpod (implied by Backup).
	InstallCLI bool `yaml:"installCLI,omitempty" json:"installCLI,omitempty"`
}

// Host is one etcd member.
type Host struct {
	Name    string `yaml:"name" json:"name"`
	Address string `yaml:"address" json:"address"`
	// ServerCertSANs and PeerCertSANs are added to the default SANs of this
	// host's etcd-server and etcd-peer certificates.
	ServerCertSANs []string `yaml:"serverCertSANs,omitempty" json:"serverCertSANs,omitempty"`
	PeerCertSANs   []string `yaml:"peerCertSANs,omitempty" json:"peerCertSANs,omitempty"`
}

// Etcd holds the settings of the static Pod.
type Etcd struct {
	// Image overrides ImageRepository and Version when set.
	Image           string `yaml:"image,omitempty" json:"image,omitempty"`
	ImageRepository string `yaml:"imageRepository,omitempty" json:"imageRepository,omitempty"`
	Version         string `yaml:"version,omitempty" json:"version,omitempty"`
	DataDir         string `yaml:"dataDir,omitempty" json:"dataDir,omitempty"`
	// ExtraArgs are added after the defaults; one with a default's name replaces it.
	ExtraArgs []Arg `yaml:"extraArgs,omitempty" json:"extraArgs,omitempty"`
	ExtraEnv  []Arg `yaml:"extraEnv,omitempty" json:"extraEnv,omitempty"`
	// ClusterState is initial-cluster-state: "new" (default) or "existing".
	ClusterState string `yaml:"initialClusterState,omitempty" json:"initialClusterState,omitempty"`
}

// Kubelet holds the standalone kubelet's settings.
type Kubelet struct {
	CgroupDriver             string `yaml:"cgroupDriver,omitempty" json:"cgroupDriver,omitempty"`
	ContainerRuntimeEndpoint string `yaml:"containerRuntimeEndpoint,omitempty" json:"containerRuntimeEndpoint,omitempty"`
	Path                     string `yaml:"path,omitempty" json:"path,omitempty"`
	// ConfigPatch is a file with a partial KubeletConfiguration merged over ours.
	ConfigPatch string `yaml:"configPatch,omitempty" json:"configPatch,omitempty"`
}

// ControlPlane holds what goes into the external-etcd kubeadm config.
type ControlPlane struct {
	CertDir              string   `yaml:"certDir,omitempty" json:"certDir,omitempty"`
	KubeadmAPIVersion    string   `yaml:"kubeadmAPIVersion,omitempty" json:"kubeadmAPIVersion,omitempty"`
	KubernetesVersion    string   `yaml:"kubernetesVersion,omitempty" json:"kubernetesVersion,omitempty"`
	ControlPlaneEndpoint string   `yaml:"controlPlaneEndpoint,omitempty" json:"controlPlaneEndpoint,omitempty"`
	PodSubnet            string   `yaml:"podSubnet,omitempty" json:"podSubnet,omitempty"`
	ServiceSubnet        string   `yaml:"serviceSubnet,omitempty" json:"serviceSubnet,omitempty"`
	APIServerCertSANs    []string `yaml:"apiServerCertSANs,omitempty" json:"apiServerCertSANs,omitempty"`
}

// Arg is a NAME=VALUE pair, kept in the order given.
type Arg struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
}

// Duration is a time.Duration written as "8760h" in YAML and JSON.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q", string(b))
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as Go prints it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// IsZero lets omitempty drop an unset duration.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// ParseArg splits NAME=VALUE; the value may be empty, the name may not.
func ParseArg(field, s string) (Arg, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return Arg{}, fmt.Errorf("%s %q: want NAME=VALUE", field, s)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return Arg{}, fmt.Errorf("%s %q: the name before '=' is empty", field, s)
	}
	return Arg{Name: name, Value: value}, nil
}

// ParseHost parses NAME=ADDRESS.
func ParseHost(s string) (Host, error) {
	name, addr, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return Host{}, fmt.Errorf("host %q: want NAME=ADDRESS", s)
	}
	return Host{Name: strings.TrimSpace(name), Address: strings.TrimSpace(addr)}, nil
}

// ParseHosts parses a comma-separated NAME=ADDRESS list.
func ParseHosts(s string) ([]Host, error) {
	var hosts []Host
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			return nil, fmt.Errorf("hosts %q: empty entry in the list", s)
		}
		h, err := ParseHost(part)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// SplitList splits comma-separated lists, as flags and etcd's own flags
// give them, into their items, trimmed of spaces; empty items are dropped.
func SplitList(values ...string) []string {
	var out []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// SetDefaults fills every unset field with its default.
func (c *Cluster) SetDefaults() {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = Kind
	}
	setString(&c.Runtime, DefaultRuntime)
	setString(&c.EncryptionAlgorithm, DefaultEncryptionAlgorithm)
	if c.CertificateValidity.Duration == 0 {
		c.CertificateValidity.Duration = DefaultCertificateValidity
	}
	if c.CACertificateValidity.Duration == 0 {
		c.CACertificateValidity.Duration = DefaultCACertificateValidity
	}
	setString(&c.CertDir, layout.DefaultCertDir)
	setString(&c.Etcd.ImageRepository, DefaultImageRepository)
	setString(&c.Etcd.Version, DefaultEtcdVersion)
	setString(&c.Etcd.DataDir, layout.DefaultDataDir)
	setString(&c.Etcd.ClusterState, "new")
	setString(&c.Kubelet.CgroupDriver, DefaultCgroupDriver)
	setString(&c.Kubelet.ContainerRuntimeEndpoint, DefaultContainerRuntimeEndpoint)
	setString(&c.Kubelet.Path, DefaultKubeletPath)
	setString(&c.ControlPlane.CertDir, layout.DefaultCertDir)
	setString(&c.ControlPlane.KubeadmAPIVersion, DefaultKubeadmAPIVersion)
	if c.Backup != nil {
		c.Backup.setDefaults()
	}
	if c.InKubernetes() && c.StatefulSet == nil {
		c.StatefulSet = &StatefulSet{}
	}
	if c.StatefulSet != nil {
		c.StatefulSet.setDefaults()
	}
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// Systemd reports whether etcd runs as a systemd service.
func (c *Cluster) Systemd() bool { return c.Runtime == RuntimeSystemd }

// EtcdImage is the image the static Pod runs.
func (c *Cluster) EtcdImage() string {
	if c.Etcd.Image != "" {
		return c.Etcd.Image
	}
	return c.Etcd.ImageRepository + "/etcd:" + c.Etcd.Version
}

// Host returns the host with that name.
func (c *Cluster) Host(name string) (Host, bool) {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// IP returns the parsed address; valid only after Validate.
func (h Host) IP() net.IP { return net.ParseIP(h.Address) }

// IsIPv6 reports whether the host's address is an IPv6 literal.
func (h Host) IsIPv6() bool { return h.IP() != nil && h.IP().To4() == nil }

// HostPort joins the address and a port, bracketing IPv6.
func (h Host) HostPort(port int) string { return net.JoinHostPort(h.Address, strconv.Itoa(port)) }

// ClientURL is the member's advertised client URL.
func (h Host) ClientURL() string { return "https://" + h.HostPort(ClientPort) }

// PeerURL is the member's advertised peer URL.
func (h Host) PeerURL() string { return "https://" + h.HostPort(PeerPort) }

// InitialCluster is etcd's --initial-cluster value for every host.
func (c *Cluster) InitialCluster() string {
	parts := make([]string, len(c.Hosts))
	for i, h := range c.Hosts {
		parts[i] = h.Name + "=" + h.PeerURL()
	}
	return strings.Join(parts, ",")
}
