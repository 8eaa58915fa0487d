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
		{"bad duration", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\ncertificateValidity: forever\n", `invalid duration "forever"`},
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
