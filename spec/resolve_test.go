package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

const resolveDoc = `apiVersion: etcd-staticpod.io/v1alpha1
kind: EtcdCluster
hosts:
- name: etcd01
  address: 10.0.0.1
  serverCertSANs: [etcd01.example.internal]
  peerCertSANs: [10.9.0.1]
- name: etcd02
  address: 10.0.0.2
  serverCertSANs: [etcd02.example.internal]
`

func writeSpec(t *testing.T, path, doc string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestResolveSources: --config wins over the recorded spec, the recorded
// spec is read when there is no --config, and nothing at all is no spec
// unless one is required.
func TestResolveSources(t *testing.T) {
	out := t.TempDir()
	recorded := writeSpec(t, layout.Bundle(out).Spec(), resolveDoc)
	other := writeSpec(t, filepath.Join(t.TempDir(), "other.yaml"), strings.Replace(resolveDoc, "10.0.0.2", "10.0.0.3", 1))

	r, err := Resolve(Source{Out: out, Required: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != recorded || r.Hosts[1].Address != "10.0.0.2" {
		t.Errorf("recorded: path %s, hosts %+v", r.Path, r.Hosts)
	}
	if r.CertDir != layout.DefaultCertDir || r.Etcd.DataDir != layout.DefaultDataDir {
		t.Errorf("not defaulted: certDir %q, dataDir %q", r.CertDir, r.Etcd.DataDir)
	}
	r, err = Resolve(Source{Config: other, Out: out, Required: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != other || r.Hosts[1].Address != "10.0.0.3" {
		t.Errorf("--config: path %s, hosts %+v", r.Path, r.Hosts)
	}

	empty := t.TempDir()
	if r, err := Resolve(Source{Out: empty}); r != nil || err != nil {
		t.Errorf("no spec, not required: %+v, %v; want none", r, err)
	}
	for _, tc := range []struct {
		src  Source
		want string
	}{
		{Source{Out: empty, Required: true}, `--out "` + empty + `": no cluster.yaml there`},
		{Source{Out: recorded, Required: true}, `--out "` + recorded + `": not a folder`},
		{Source{Config: filepath.Join(empty, "nope.yaml")}, "read cluster spec"},
		{Source{Required: true}, "no cluster spec"},
	} {
		_, err := Resolve(tc.src)
		if err == nil || !badinput.Is(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want bad input containing %q", tc.src, err, tc.want)
		}
	}
}

// TestResolveMerge: hosts from flags replace the file's, keeping the extra
// SANs of a host with the same name and address only; Override applies
// before the defaults and Check after them, before validation.
func TestResolveMerge(t *testing.T) {
	out := t.TempDir()
	writeSpec(t, layout.Bundle(out).Spec(), resolveDoc)
	var checked *Cluster
	r, err := Resolve(Source{
		Out: out,
		Hosts: []Host{
			{Name: "etcd01", Address: "10.0.0.1"},
			{Name: "etcd02", Address: "10.0.0.22"},
			{Name: "etcd03", Address: "10.0.0.3"},
		},
		Override: func(c *Cluster) error {
			if c.Etcd.DataDir != "" {
				t.Errorf("Override saw a defaulted spec (dataDir %q)", c.Etcd.DataDir)
			}
			c.Etcd.DataDir = "/srv/etcd"
			return nil
		},
		Check: func(c *Cluster) error {
			if c.CertDir == "" {
				t.Error("Check saw a spec without defaults")
			}
			checked = c
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked != r.Cluster {
		t.Error("Check did not run on the spec returned")
	}
	if got := r.Hosts[0]; !slices.Equal(got.ServerCertSANs, []string{"etcd01.example.internal"}) || !slices.Equal(got.PeerCertSANs, []string{"10.9.0.1"}) {
		t.Errorf("etcd01 lost its SANs: %+v", got)
	}
	if got := r.Hosts[1]; got.ServerCertSANs != nil {
		t.Errorf("etcd02 moved to another address and kept its SANs: %+v", got)
	}
	if len(r.Hosts) != 3 || r.Etcd.DataDir != "/srv/etcd" {
		t.Errorf("hosts %+v, dataDir %q", r.Hosts, r.Etcd.DataDir)
	}

	// Errors from Override and Check are bad input as they are.
	flagErr := errors.New("--data-dir: wrong")
	for _, src := range []Source{
		{Out: out, Override: func(*Cluster) error { return flagErr }},
		{Out: out, Check: func(*Cluster) error { return flagErr }},
	} {
		if _, err := Resolve(src); !errors.Is(err, flagErr) || !badinput.Is(err) {
			t.Errorf("err = %v, want the flag's error as bad input", err)
		}
	}
}

// TestResolveValidation: a spec from a file alone is named in a
// validation error; one changed by flags is not, since the value may be a
// flag's.
func TestResolveValidation(t *testing.T) {
	path := writeSpec(t, filepath.Join(t.TempDir(), "c.yaml"), resolveDoc+"etcd:\n  dataDir: /etc\n")
	_, err := Resolve(Source{Config: path})
	if err == nil || !badinput.Is(err) || !strings.HasPrefix(err.Error(), "cluster spec "+path+": ") || !strings.Contains(err.Error(), `etcd.dataDir "/etc"`) {
		t.Errorf("file alone: %v", err)
	}
	_, err = Resolve(Source{Config: path, Override: func(*Cluster) error { return nil }})
	if err == nil || !badinput.Is(err) || strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `etcd.dataDir "/etc"`) {
		t.Errorf("with flags: %v", err)
	}
	r, err := Resolve(Source{Hosts: []Host{{Name: "a", Address: "10.0.0.1"}, {Name: "b", Address: "10.0.0.2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != "" || len(r.Warnings) == 0 {
		t.Errorf("two hosts from flags alone: path %q, warnings %v; want the even-number warning", r.Path, r.Warnings)
	}
}
