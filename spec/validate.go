package spec

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"k8s.io/apimachinery/pkg/util/validation"
)

// MinValidity is the shortest certificate lifetime accepted: anything less
// expires before the cluster is up and is a typo (1ns, 60s for 60d).
const MinValidity = time.Hour

// HostSystemDirs are the folders on an etcd host that hold what kubelet and
// kubeadm read: the etcd data folder may neither be nor hold nor lie inside
// any of them (nor the certificate folder), or a restore, a wipe of the data
// folder or etcd itself would touch them.
// The most specific come first, so that an error names the closest.
var hostSystemDirs = []struct{ dir, what string }{
	{layout.StaticPodDir, "kubelet's static Pod folder"},
	{layout.KubeletDropInDir, "kubelet's drop-in folder"},
	{layout.KubeletStateDir, "kubelet's state folder"},
	{layout.KubernetesDir, "kubeadm's folder"},
	{"/etc", "the system's configuration"},
}

// HostSystemDirs returns the folders the etcd data folder keeps away from.
func HostSystemDirs() []string {
	var out []string
	for _, d := range hostSystemDirs {
		out = append(out, d.dir)
	}
	return out
}

var (
	// extraArgNameRE is an etcd flag name as etcd spells them.
	extraArgNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	// envNameRE is a portable environment variable name (POSIX, and what
	// a shell can export).
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// kubernetesVersionRE is what kubeadm reads as kubernetesVersion: a
	// version, or a release label such as stable-1.36.
	kubernetesVersionRE = regexp.MustCompile(`^(v[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+-]*|(stable|latest)(-[0-9]+(\.[0-9]+)?)?)$`)
)

// CheckText refuses a value that would change meaning where it is written:
// a control character (a carriage return ends a line in a systemd unit, a
// newline in YAML or a printed shell command), a Unicode line or paragraph
// separator, a bidirectional override or a byte that is not UTF-8. The
// error names field and quotes the value.
func CheckText(field, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%s %q: is not valid UTF-8", field, value)
	}
	for _, r := range value {
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Bidi_Control) || r == '\uFEFF' {
			return fmt.Errorf("%s %q: contains the control character %U", field, value, r)
		}
	}
	return nil
}

// CheckValidity refuses a certificate lifetime that is not positive or
// shorter than MinValidity; field names the flag or the spec field and
// text is the value as given.
func CheckValidity(field, text string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s %q: must be positive", field, text)
	}
	if d < MinValidity {
		return fmt.Errorf("%s %q: must be at least %s", field, text, MinValidity)
	}
	return nil
}

// textFields lists every string of the spec that ends up in a file, a file
// name or a printed command, with the name an error gives it.
func (c *Cluster) textFields() [][2]string {
	f := [][2]string{
		{"runtime", c.Runtime}, {"etcdBinary", c.EtcdBinary},
		{"encryptionAlgorithm", c.EncryptionAlgorithm}, {"certDir", c.CertDir},
		{"etcd.image", c.Etcd.Image}, {"etcd.imageRepository", c.Etcd.ImageRepository}, {"etcd.version", c.Etcd.Version},
		{"etcd.dataDir", c.Etcd.DataDir}, {"etcd.initialClusterState", c.Etcd.ClusterState},
		{"kubelet.cgroupDriver", c.Kubelet.CgroupDriver}, {"kubelet.containerRuntimeEndpoint", c.Kubelet.ContainerRuntimeEndpoint},
		{"kubelet.path", c.Kubelet.Path}, {"kubelet.configPatch", c.Kubelet.ConfigPatch},
		{"controlPlane.certDir", c.ControlPlane.CertDir}, {"controlPlane.kubeadmAPIVersion", c.ControlPlane.KubeadmAPIVersion},
		{"controlPlane.kubernetesVersion", c.ControlPlane.KubernetesVersion}, {"controlPlane.controlPlaneEndpoint", c.ControlPlane.ControlPlaneEndpoint},
		{"controlPlane.podSubnet", c.ControlPlane.PodSubnet}, {"controlPlane.serviceSubnet", c.ControlPlane.ServiceSubnet},
	}
	for i, h := range c.Hosts {
		where := fmt.Sprintf("hosts[%d].", i)
		f = append(f, [2]string{where + "name", h.Name}, [2]string{where + "address", h.Address})
		for _, s := range h.ServerCertSANs {
			f = append(f, [2]string{where + "serverCertSANs", s})
		}
		for _, s := range h.PeerCertSANs {
			f = append(f, [2]string{where + "peerCertSANs", s})
		}
	}
	for i, a := range c.Etcd.ExtraArgs {
		f = append(f, [2]string{fmt.Sprintf("etcd.extraArgs[%d].name", i), a.Name}, [2]string{fmt.Sprintf("etcd.extraArgs[%d].value", i), a.Value})
	}
	for i, a := range c.Etcd.ExtraEnv {
		f = append(f, [2]string{fmt.Sprintf("etcd.extraEnv[%d].name", i), a.Name}, [2]string{fmt.Sprintf("etcd.extraEnv[%d].value", i), a.Value})
	}
	for _, s := range c.ControlPlane.APIServerCertSANs {
		f = append(f, [2]string{"controlPlane.apiServerCertSANs", s})
	}
	if b := c.Backup; b != nil {
		f = append(f, [2]string{"backup.host", b.Host}, [2]string{"backup.schedule", b.Schedule}, [2]string{"backup.dir", b.Dir})
	}
	return append(f, c.StatefulSet.textFields()...)
}

// Validate checks the defaulted spec. It returns warnings (things that work
// but are unwise) and the first error, which names the host, field and value.
func (c *Cluster) Validate() (warnings []string, err error) {
	if len(c.Hosts) == 0 && !c.InKubernetes() {
		return nil, fmt.Errorf("hosts: at least one host is required (--hosts NAME=ADDRESS,... or hosts: in --config)")
	}
	for _, f := range c.textFields() {
		if err := CheckText(f[0], f[1]); err != nil {
			return nil, err
		}
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
		if reserved := layout.ReservedNames(); slices.Contains(reserved, h.Name) {
			return nil, fmt.Errorf("%s: name %q is reserved: the bundle folder uses the names %s for its own content", where, h.Name, strings.Join(reserved, ", "))
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
	if !slices.Contains(Runtimes(), c.Runtime) {
		return nil, fmt.Errorf("runtime %q: want one of %s", c.Runtime, strings.Join(Runtimes(), ", "))
	}
	stsWarnings, err := c.validateStatefulSet()
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, stsWarnings...)
	if len(c.Hosts)%2 == 0 && !c.InKubernetes() {
		warnings = append(warnings, fmt.Sprintf("%d hosts: an even number of members tolerates no more failures than %d; an odd number is recommended", len(c.Hosts), len(c.Hosts)-1))
	}
	if c.EtcdBinary != "" {
		if !c.Systemd() {
			return nil, fmt.Errorf("etcdBinary %q: only with runtime %s (a static Pod runs the image's etcd)", c.EtcdBinary, RuntimeSystemd)
		}
		if !path.IsAbs(c.EtcdBinary) {
			return nil, fmt.Errorf("etcdBinary %q: must be an absolute path", c.EtcdBinary)
		}
	}
	if !slices.Contains(encryptionAlgorithms, c.EncryptionAlgorithm) {
		return nil, fmt.Errorf("encryptionAlgorithm %q: want one of %s", c.EncryptionAlgorithm, strings.Join(encryptionAlgorithms, ", "))
	}
	if err := CheckValidity("certificateValidity", c.CertificateValidity.String(), c.CertificateValidity.Duration); err != nil {
		return nil, err
	}
	if err := CheckValidity("caCertificateValidity", c.CACertificateValidity.String(), c.CACertificateValidity.Duration); err != nil {
		return nil, err
	}
	if c.CertificateValidity.Duration > c.CACertificateValidity.Duration {
		// As kubeadm: a warning. A new CA ends first, and leaves are cut
		// to end with their CA when signed.
		warnings = append(warnings, fmt.Sprintf("certificateValidity %s is longer than caCertificateValidity %s: certificates signed by a new CA end when it does", c.CertificateValidity, c.CACertificateValidity))
	}
	for _, p := range []struct{ field, value string }{
		{"certDir", c.CertDir}, {"etcd.dataDir", c.Etcd.DataDir}, {"controlPlane.certDir", c.ControlPlane.CertDir},
	} {
		if !strings.HasPrefix(p.value, "/") {
			return nil, fmt.Errorf("%s %q: must be an absolute path", p.field, p.value)
		}
	}
	if err := c.validateDataDir(); err != nil {
		return nil, err
	}
	if err := c.validateImage(); err != nil {
		return nil, err
	}
	for _, a := range c.Etcd.ExtraArgs {
		if !extraArgNameRE.MatchString(a.Name) {
			return nil, fmt.Errorf("etcd.extraArgs name %q: want an etcd flag name without leading dashes (lower-case letters, digits and '-')", a.Name)
		}
	}
	for _, e := range c.Etcd.ExtraEnv {
		if !envNameRE.MatchString(e.Name) {
			return nil, fmt.Errorf("etcd.extraEnv name %q: want an environment variable name (letters, digits and '_', not starting with a digit)", e.Name)
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
	// An absolute path also keeps systemd's ExecStart= prefixes (@, -, :,
	// +, !) out of the first word; the drop-in escapes %, $, blanks, quotes
	// and backslashes.
	if !strings.HasPrefix(c.Kubelet.Path, "/") {
		return nil, fmt.Errorf("kubelet.path %q: must be an absolute path", c.Kubelet.Path)
	}
	cp := c.ControlPlane
	if cp.KubeadmAPIVersion != "v1beta4" && cp.KubeadmAPIVersion != "v1beta3" {
		return nil, fmt.Errorf("controlPlane.kubeadmAPIVersion %q: want v1beta4 or v1beta3", cp.KubeadmAPIVersion)
	}
	if v := cp.KubernetesVersion; v != "" && !kubernetesVersionRE.MatchString(v) {
		return nil, fmt.Errorf("controlPlane.kubernetesVersion %q: want a version such as v1.36.3 or a label such as stable-1.36", v)
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
		if err := validateHostPort(ep); err != nil {
			return nil, fmt.Errorf("controlPlane.controlPlaneEndpoint %q: %v", ep, err)
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

// validateDataDir keeps the etcd data folder away from the folders kubelet
// and kubeadm read: a restore renames the data folder and a reset wipes it.
func (c *Cluster) validateDataDir() error {
	d := c.Etcd.DataDir
	if path.Clean(d) != d {
		return fmt.Errorf("etcd.dataDir %q: want a clean absolute path such as %s (no trailing '/', '.', '..' or '//')", d, layout.DefaultDataDir)
	}
	if d == "/" {
		return fmt.Errorf("etcd.dataDir %q: must not be the root folder", d)
	}
	protected := append([]struct{ dir, what string }{{path.Clean(c.CertDir), "the certificate folder (certDir)"}}, hostSystemDirs...)
	for _, p := range protected {
		if d == p.dir {
			return fmt.Errorf("etcd.dataDir %q: is %s", d, p.what)
		}
	}
	for _, p := range protected {
		if within(d, p.dir) {
			return fmt.Errorf("etcd.dataDir %q: lies inside %s, %s", d, p.dir, p.what)
		}
	}
	for _, p := range protected {
		if within(p.dir, d) {
			return fmt.Errorf("etcd.dataDir %q: holds %s, %s", d, p.dir, p.what)
		}
	}
	return nil
}

// within reports whether child lies below parent (both clean and absolute).
func within(child, parent string) bool {
	return strings.HasPrefix(child, strings.TrimSuffix(parent, "/")+"/")
}

// validateImage checks the etcd image: etcd.image as a whole reference, or
// imageRepository and version as the parts of REPOSITORY/etcd:VERSION.
func (c *Cluster) validateImage() error {
	if c.Etcd.Image != "" {
		if err := validateReference(c.Etcd.Image); err != nil {
			return fmt.Errorf("etcd.image %q: %v", c.Etcd.Image, err)
		}
	}
	if err := validateRepository(c.Etcd.ImageRepository); err != nil {
		return fmt.Errorf("etcd.imageRepository %q: %v", c.Etcd.ImageRepository, err)
	}
	if err := validateTag(c.Etcd.Version); err != nil {
		return fmt.Errorf("etcd.version %q: %v", c.Etcd.Version, err)
	}
	return nil
}

// validateHostPort checks HOST or HOST:PORT with a port etcd's clients can
// dial (1-65535).
func validateHostPort(ep string) error {
	host := ep
	if h, port, err := net.SplitHostPort(ep); err == nil {
		host = h
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	if validateSAN(host) != nil {
		return fmt.Errorf("want HOST or HOST:PORT")
	}
	return nil
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
