package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleLoads(t *testing.T) {
	c, err := Load(filepath.Join("..", "examples", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	warnings, err := c.Validate()
	if err != nil || len(warnings) != 0 {
		t.Fatalf("example: %v %v", err, warnings)
	}
	if len(c.Hosts) != 3 || c.Hosts[0].ServerCertSANs[0] != "etcd01.example.internal" || c.Hosts[2].Address != "10.107.88.17" {
		t.Errorf("hosts %+v", c.Hosts)
	}
	if c.CertificateValidity.Duration != 8760*time.Hour || c.CACertificateValidity.Duration != 87600*time.Hour {
		t.Errorf("validity %v %v", c.CertificateValidity, c.CACertificateValidity)
	}
	if c.Etcd.ExtraArgs[0] != (Arg{"quota-backend-bytes", "8589934592"}) || c.Etcd.ExtraEnv[0].Name != "GOMAXPROCS" {
		t.Errorf("etcd %+v", c.Etcd)
	}
	if c.EtcdImage() != "registry.k8s.io/etcd:3.6.8-0" || c.ControlPlane.PodSubnet != "10.244.0.0/16" {
		t.Errorf("image %s, control plane %+v", c.EtcdImage(), c.ControlPlane)
	}
	if got := c.InitialCluster(); got != "etcd01=https://10.107.88.15:2380,etcd02=https://10.107.88.16:2380,etcd03=https://10.107.88.17:2380" {
		t.Errorf("initial cluster %s", got)
	}
}

func TestDefaultsEqualExample(t *testing.T) {
	// The example spells out the defaults; a spec with only hosts must
	// default to the same values.
	c := &Cluster{Hosts: []Host{{Name: "a", Address: "10.0.0.1"}}}
	c.SetDefaults()
	if c.EncryptionAlgorithm != "RSA-2048" || c.CertDir != "/etc/kubernetes/pki" || c.Etcd.DataDir != "/var/lib/etcd" ||
		c.EtcdImage() != "registry.k8s.io/etcd:3.6.8-0" || c.Kubelet.CgroupDriver != "systemd" || c.ControlPlane.KubeadmAPIVersion != "v1beta4" {
		t.Errorf("defaults %+v", c)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts:\n- name: a\n  adress: 10.0.0.1\n", "line 5: field adress not found"},
		{"wrong type", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts: {a: b}\n", "line 3: cannot unmarshal"},
		{"bad duration", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\ncertificateValidity: forever\n", `certificateValidity "forever": not a duration`},
		{"explicit zero validity", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\ncertificateValidity: 0s\n", `certificateValidity "0s": must be positive`},
		{"nanosecond CA validity", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\ncaCertificateValidity: 1ns\n", `caCertificateValidity "1ns": must be at least 1h0m0s`},
		{"wrong kind", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: Cluster\n", `kind "Cluster"`},
		{"wrong version", "apiVersion: v1\nkind: EtcdCluster\n", `apiVersion "v1"`},
		{"empty", "", "empty"},
		{"two documents", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\n---\nkind: x\n", "more than one"},
		{"not yaml", "hosts: [", "did not find expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts string
		mut   func(*Cluster)
		want  string
	}{
		{"no hosts", "", nil, "hosts: at least one host"},
		{"empty name", "=10.0.0.1", nil, `hosts[0]: name "" is not a DNS-1123 label`},
		{"bad name", "Etcd_1=10.0.0.1", nil, `host "Etcd_1": name "Etcd_1" is not a DNS-1123 label`},
		{"dup name", "a=10.0.0.1,a=10.0.0.2", nil, `host "a": name "a" is used by hosts[0] too`},
		{"dup address", "a=10.0.0.1,b=10.0.0.1", nil, `host "b": address "10.0.0.1" is used by host "a" too`},
		{"dup address v6 spelling", "a=fd00::1,b=fd00:0::1", nil, `host "b": address "fd00:0::1" is used by host "a" too`},
		{"not an IP", "a=etcd.example.com", nil, `host "a": address "etcd.example.com" is not an IPv4 or IPv6 address`},
		{"zone", "a=fe80::1%eth0", nil, `host "a": address "fe80::1%eth0" has a zone`},
		{"unspecified", "a=0.0.0.0", nil, `address "0.0.0.0" is unspecified`},
		{"bad SAN", "a=10.0.0.1", func(c *Cluster) { c.Hosts[0].ServerCertSANs = []string{"not a name"} }, `host "a": serverCertSANs "not a name" is neither`},
		{"bad peer SAN", "a=10.0.0.1", func(c *Cluster) { c.Hosts[0].PeerCertSANs = []string{"-x-"} }, `host "a": peerCertSANs "-x-"`},
		{"algorithm", "a=10.0.0.1", func(c *Cluster) { c.EncryptionAlgorithm = "DSA" }, `encryptionAlgorithm "DSA": want one of`},
		{"zero validity", "a=10.0.0.1", func(c *Cluster) { c.CertificateValidity.Duration = -time.Hour }, `certificateValidity "-1h0m0s": must be positive`},
		{"relative cert dir", "a=10.0.0.1", func(c *Cluster) { c.CertDir = "pki" }, `certDir "pki": must be an absolute path`},
		{"cgroup driver", "a=10.0.0.1", func(c *Cluster) { c.Kubelet.CgroupDriver = "none" }, `kubelet.cgroupDriver "none"`},
		{"kubeadm api", "a=10.0.0.1", func(c *Cluster) { c.ControlPlane.KubeadmAPIVersion = "v1beta2" }, `controlPlane.kubeadmAPIVersion "v1beta2"`},
		{"pod subnet", "a=10.0.0.1", func(c *Cluster) { c.ControlPlane.PodSubnet = "10.244.0.0" }, `controlPlane.podSubnet "10.244.0.0"`},
		{"extra arg dashes", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ExtraArgs = []Arg{{Name: "--name", Value: "x"}} }, `etcd.extraArgs name "--name"`},
		{"cluster state", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ClusterState = "old" }, `etcd.initialClusterState "old"`},
		{"short validity", "a=10.0.0.1", func(c *Cluster) { c.CertificateValidity.Duration = time.Nanosecond }, `certificateValidity "1ns": must be at least 1h0m0s`},
		{"CR in kubelet path", "a=10.0.0.1", func(c *Cluster) { c.Kubelet.Path = "/usr/bin/kubelet\rExecStartPre=/bin/sh" }, `kubelet.path "/usr/bin/kubelet\rExecStartPre=/bin/sh": contains the control character U+000D`},
		{"NUL in data dir", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/var/lib/etcd\x00" }, `etcd.dataDir "/var/lib/etcd\x00": contains the control character U+0000`},
		{"DEL in env value", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ExtraEnv = []Arg{{Name: "A", Value: "x\x7f"}} }, `etcd.extraEnv[0].value "x\x7f": contains the control character U+007F`},
		{"C1 in SAN", "a=10.0.0.1", func(c *Cluster) { c.Hosts[0].ServerCertSANs = []string{"a\u0085b"} }, `hosts[0].serverCertSANs "a\u0085b": contains the control character U+0085`},
		{"line separator", "a=10.0.0.1", func(c *Cluster) { c.ControlPlane.KubernetesVersion = "v1.36.3\u2028" }, `controlPlane.kubernetesVersion "v1.36.3\u2028": contains the control character U+2028`},
		{"bidi override", "a=10.0.0.1", func(c *Cluster) { c.CertDir = "/etc/\u202epki" }, `certDir "/etc/\u202epki": contains the control character U+202E`},
		{"not UTF-8", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ExtraArgs = []Arg{{Name: "x", Value: "\xff"}} }, `etcd.extraArgs[0].value "\xff": is not valid UTF-8`},
		{"tab in extra arg", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ExtraArgs = []Arg{{Name: "log-level", Value: "debug\t"}} }, `etcd.extraArgs[0].value "debug\t": contains the control character U+0009`},
		{"extra arg name", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ExtraArgs = []Arg{{Name: "Log_Level", Value: "x"}} }, `etcd.extraArgs name "Log_Level": want an etcd flag name`},
		{"env name", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ExtraEnv = []Arg{{Name: "1GOMAXPROCS", Value: "2"}} }, `etcd.extraEnv name "1GOMAXPROCS": want an environment variable name`},
		{"env name with dot", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ExtraEnv = []Arg{{Name: "a.b", Value: "2"}} }, `etcd.extraEnv name "a.b"`},
		{"tag with blank", "a=10.0.0.1", func(c *Cluster) { c.Etcd.Version = "3.6 8" }, `etcd.version "3.6 8": is not an image tag`},
		{"tag too long", "a=10.0.0.1", func(c *Cluster) { c.Etcd.Version = strings.Repeat("1", 129) }, `is not an image tag`},
		{"tag leading dot", "a=10.0.0.1", func(c *Cluster) { c.Etcd.Version = ".3" }, `etcd.version ".3"`},
		{"repository upper case path", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ImageRepository = "registry.k8s.io/Mirror" }, `etcd.imageRepository "registry.k8s.io/Mirror": is not an image repository`},
		{"repository with tag", "a=10.0.0.1", func(c *Cluster) { c.Etcd.ImageRepository = "registry.k8s.io:x" }, `etcd.imageRepository "registry.k8s.io:x"`},
		{"image with blank", "a=10.0.0.1", func(c *Cluster) { c.Etcd.Image = "registry.k8s.io/etcd:3.6 8" }, `etcd.image "registry.k8s.io/etcd:3.6 8": is not an image reference`},
		{"reserved name pki", "pki=10.0.0.1", nil, `host "pki": name "pki" is reserved`},
		{"reserved name control-plane", "control-plane=10.0.0.1", nil, `host "control-plane": name "control-plane" is reserved`},
		{"reserved name monitoring", "monitoring=10.0.0.1", nil, `name "monitoring" is reserved`},
		{"reserved name statefulset", "statefulset=10.0.0.1", nil, `name "statefulset" is reserved`},
		{"reserved name sha256sums", "sha256sums=10.0.0.1", nil, `name "sha256sums" is reserved`},
		{"data dir root", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/" }, `etcd.dataDir "/": must not be the root folder`},
		{"data dir /etc", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/etc" }, `etcd.dataDir "/etc": is the system's configuration`},
		{"data dir /etc/kubernetes", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/etc/kubernetes" }, `etcd.dataDir "/etc/kubernetes": is kubeadm's folder`},
		{"data dir in manifests", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/etc/kubernetes/manifests/etcd" }, `lies inside /etc/kubernetes/manifests, kubelet's static Pod folder`},
		{"data dir is cert dir", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/etc/kubernetes/pki" }, `etcd.dataDir "/etc/kubernetes/pki": is the certificate folder`},
		{"data dir holds cert dir", "a=10.0.0.1", func(c *Cluster) { c.CertDir = "/srv/etcd/pki"; c.Etcd.DataDir = "/srv/etcd" }, `etcd.dataDir "/srv/etcd": holds /srv/etcd/pki, the certificate folder`},
		{"data dir holds kubelet", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/var/lib" }, `holds /var/lib/kubelet`},
		{"data dir in kubelet drop-ins", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/etc/systemd/system/kubelet.service.d/x" }, `lies inside /etc/systemd/system/kubelet.service.d`},
		{"data dir not clean", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/var/lib/etcd/" }, `etcd.dataDir "/var/lib/etcd/": want a clean absolute path`},
		{"data dir dot-dot", "a=10.0.0.1", func(c *Cluster) { c.Etcd.DataDir = "/var/lib/etcd/../kubelet" }, `want a clean absolute path`},
		{"endpoint port too big", "a=10.0.0.1", func(c *Cluster) { c.ControlPlane.ControlPlaneEndpoint = "10.0.0.9:65536" }, `controlPlane.controlPlaneEndpoint "10.0.0.9:65536": port "65536" is not a number from 1 to 65535`},
		{"endpoint port zero", "a=10.0.0.1", func(c *Cluster) { c.ControlPlane.ControlPlaneEndpoint = "k8s.example:0" }, `port "0"`},
		{"kubernetes version with blank", "a=10.0.0.1", func(c *Cluster) { c.ControlPlane.KubernetesVersion = "v1.36.3 --x" }, `controlPlane.kubernetesVersion "v1.36.3 --x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{}
			if tc.hosts != "" {
				hs, err := ParseHosts(tc.hosts)
				if err != nil {
					t.Fatal(err)
				}
				c.Hosts = hs
			}
			c.SetDefaults()
			if tc.mut != nil {
				tc.mut(c)
			}
			_, err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for name, mut := range map[string]func(*Cluster){
		"image by digest":     func(c *Cluster) { c.Etcd.Image = "registry.k8s.io/etcd@sha256:" + strings.Repeat("ab", 32) },
		"image tag and port":  func(c *Cluster) { c.Etcd.Image = "localhost:5000/mirror/etcd:3.6.8-0" },
		"repository IPv6":     func(c *Cluster) { c.Etcd.ImageRepository = "[fd00::1]:5000/k8s" },
		"repository path":     func(c *Cluster) { c.Etcd.ImageRepository = "registry.example.com/a__b/c-d" },
		"tag underscore":      func(c *Cluster) { c.Etcd.Version = "_v3.6.8-0" },
		"release label":       func(c *Cluster) { c.ControlPlane.KubernetesVersion = "stable-1.36" },
		"data dir elsewhere":  func(c *Cluster) { c.Etcd.DataDir = "/srv/etcd" },
		"kubelet path blanks": func(c *Cluster) { c.Kubelet.Path = "/opt/my kubelet/%h$x" },
		"unicode SAN-free":    func(c *Cluster) { c.Etcd.ExtraEnv = []Arg{{Name: "_X1", Value: "é ü"}} },
		"equal validities": func(c *Cluster) {
			c.CertificateValidity.Duration = time.Hour
			c.CACertificateValidity.Duration = time.Hour
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := &Cluster{Hosts: []Host{{Name: "a", Address: "10.0.0.1"}}}
			c.SetDefaults()
			mut(c)
			if _, err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLeafLongerThanCAWarns(t *testing.T) {
	c := &Cluster{Hosts: []Host{{Name: "a", Address: "10.0.0.1"}}, CertificateValidity: Duration{2 * time.Hour}, CACertificateValidity: Duration{time.Hour}}
	c.SetDefaults()
	w, err := c.Validate()
	if err != nil || len(w) != 1 || !strings.Contains(w[0], "certificateValidity 2h0m0s is longer than caCertificateValidity 1h0m0s") {
		t.Fatalf("%v %v", w, err)
	}
}

func TestEvenHostsWarn(t *testing.T) {
	c := &Cluster{Hosts: []Host{{Name: "a", Address: "10.0.0.1"}, {Name: "b", Address: "10.0.0.2"}}}
	c.SetDefaults()
	w, err := c.Validate()
	if err != nil || len(w) != 1 || !strings.Contains(w[0], "even number") {
		t.Fatalf("%v %v", w, err)
	}
}

func TestParseHostsAndArgs(t *testing.T) {
	if _, err := ParseHosts("a=1.2.3.4,,b=1.2.3.5"); err == nil {
		t.Error("empty entry accepted")
	}
	if _, err := ParseHosts("a1.2.3.4"); err == nil || !strings.Contains(err.Error(), `host "a1.2.3.4": want NAME=ADDRESS`) {
		t.Errorf("got %v", err)
	}
	hs, err := ParseHosts(" a=fd00::1 , b=10.0.0.2")
	if err != nil || hs[0].Name != "a" || hs[0].Address != "fd00::1" || hs[1].Name != "b" {
		t.Fatalf("%v %v", hs, err)
	}
	if hs[0].ClientURL() != "https://[fd00::1]:2379" || hs[0].PeerURL() != "https://[fd00::1]:2380" || !hs[0].IsIPv6() {
		t.Errorf("v6 URLs %s %s", hs[0].ClientURL(), hs[0].PeerURL())
	}
	a, err := ParseArg("--extra-arg", "initial-cluster=a=https://x:2380,b=https://y:2380")
	if err != nil || a.Name != "initial-cluster" || a.Value != "a=https://x:2380,b=https://y:2380" {
		t.Errorf("%v %v", a, err)
	}
	if _, err := ParseArg("--extra-arg", "snapshot-count"); err == nil || !strings.Contains(err.Error(), `--extra-arg "snapshot-count": want NAME=VALUE`) {
		t.Errorf("got %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c, err := Load(filepath.Join("..", "examples", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	b, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip differs:\n%+v\n%+v\n%s", c, back, b)
	}
	if !strings.Contains(string(b), "certificateValidity: 8760h0m0s") {
		t.Errorf("durations:\n%s", b)
	}
}

// TestSplitList: items of several comma-separated values, trimmed, in
// order, empty ones dropped.
func TestSplitList(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"a"}, []string{"a"}},
		{[]string{" a , b,,c ", "d", ",e,"}, []string{"a", "b", "c", "d", "e"}},
		{[]string{"https://10.0.0.1:2380,https://[fd00::1]:2380"}, []string{"https://10.0.0.1:2380", "https://[fd00::1]:2380"}},
	} {
		if got := SplitList(tc.in...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
