package etcdops

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdconf"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestReadHostSystemd: a host folder of runtime systemd has no manifest;
// its etcd.conf.yml gives the member's name, URLs and certificate folder
// as the manifest would.
func TestReadHostSystemd(t *testing.T) {
	c := &spec.Cluster{Runtime: spec.RuntimeSystemd, CertDir: "/srv/pki", Hosts: []spec.Host{{Name: "etcd01", Address: "10.107.88.15"}, {Name: "etcd02", Address: "2001:db8::16"}}}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Hosts {
		root := t.TempDir()
		if _, err := ReadHost(root); !os.IsNotExist(err) && err != nil && !errorsIsNotExist(err) {
			t.Fatalf("empty folder: %v", err)
		}
		m, err := etcdconf.For(c, h)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := etcdconf.Marshal(m)
		file := layout.OnHost(root, layout.EtcdConfig)
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadHost(root)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != h.Name || !slices.Equal(got.ClientURLs, []string{h.ClientURL()}) || !slices.Equal(got.PeerURLs, []string{h.PeerURL()}) || got.CertDir != "/srv/pki" || got.Path != file {
			t.Errorf("%s: read %+v", h.Name, got)
		}
		if v, _ := got.Flag("initial-cluster-state"); v != "new" {
			t.Errorf("%s: initial-cluster-state %q", h.Name, v)
		}
	}
}

func errorsIsNotExist(err error) bool {
	for e := err; e != nil; {
		if os.IsNotExist(e) {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}
