package phases

import (
	"bytes"
	"os"
	"slices"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestRecord: the spec and the kubeadm-config.yaml made from it land
// together with their modes; the kubeadm-config.yaml is the one init's
// kubeadm-config phase writes for the same spec, and the spec reads back.
func TestRecord(t *testing.T) {
	c := guideCluster(t)
	out := t.TempDir()
	runAll(t, Options{Cluster: c, Out: out}, "bundle")
	initial, err := os.ReadFile(layout.Bundle(out).KubeadmConfig())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(Options{Cluster: c, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run([]Phase{Record()}); err != nil {
		t.Fatal(err)
	}
	b := layout.Bundle(out)
	got, err := os.ReadFile(b.KubeadmConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, initial) {
		t.Errorf("Record wrote another kubeadm-config.yaml than init:\n%s\nwant\n%s", got, initial)
	}
	checkMode(t, b.KubeadmConfig(), 0o600)
	checkMode(t, b.Spec(), 0o644)
	back, err := spec.Load(b.Spec())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Hosts[0].ServerCertSANs, c.Hosts[0].ServerCertSANs) || len(back.Hosts) != len(c.Hosts) {
		t.Errorf("recorded hosts %+v, want %+v", back.Hosts, c.Hosts)
	}

	// A host less: both files follow.
	less := *c
	less.Hosts = c.Hosts[:2]
	r, err = NewRunner(Options{Cluster: &less, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run([]Phase{Record()}); err != nil {
		t.Fatal(err)
	}
	want, err := manifests.ExternalEtcdConfig(&less)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(b.KubeadmConfig()); !bytes.Equal(got, want) {
		t.Errorf("kubeadm-config.yaml after a host left:\n%s", got)
	}
	if back, err := spec.Load(b.Spec()); err != nil || len(back.Hosts) != 2 {
		t.Errorf("recorded spec after a host left: %+v, %v", back, err)
	}
}
