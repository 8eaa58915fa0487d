package spec

import (
	"strings"
	"testing"
)

// The fuzz targets also run as ordinary tests over their seeds and the
// corpus in testdata/fuzz.

func FuzzParseHosts(f *testing.F) {
	for _, s := range []string{
		"etcd01=10.107.88.15,etcd02=10.107.88.16,etcd03=10.107.88.17",
		"a=fd00::1", "a=fe80::1%eth0", "=", ",", "a=1.2.3.4,,b=1.2.3.5", "a==b", " a = 10.0.0.1 ", "a=[::1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hosts, err := ParseHosts(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		c := &Cluster{Hosts: hosts}
		c.SetDefaults()
		if _, err := c.Validate(); err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		// A valid host list round-trips through its own URLs.
		for _, h := range c.Hosts {
			if h.IP() == nil || !strings.HasPrefix(h.PeerURL(), "https://") {
				t.Fatalf("valid host %+v has no usable address", h)
			}
		}
	})
}

func FuzzParseArg(f *testing.F) {
	for _, s := range []string{"snapshot-count=5000", "initial-cluster=a=https://x:2380,b=https://y:2380", "x=", "=x", "noequals", "", "a = b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseArg("--extra-arg", s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--extra-arg ") {
				t.Fatalf("error does not name the flag: %q", err)
			}
			return
		}
		if a.Name == "" || !strings.Contains(s, "=") {
			t.Fatalf("accepted %q as %+v", s, a)
		}
		if !strings.HasSuffix(s, a.Value) {
			t.Fatalf("value %q is not the text after '=' in %q", a.Value, s)
		}
	})
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts:\n- name: etcd01\n  address: 10.107.88.15\n",
		"apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\ncertificateValidity: 1h\netcd:\n  extraArgs:\n  - name: a\n    value: b\n",
		"apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts: [{name: a, address: '::1', serverCertSANs: [x]}]\n",
		"hosts: [", "{}", "---\n---\n", "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nunknown: 1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		c.SetDefaults()
		if _, err := c.Validate(); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}
