package phases

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestCAKeyCopyInQueueRefused: a copy of the CA key among the files a run
// queues (here under another name and encoding) is refused whether the run
// packs archives from the queue or only writes it, and nothing is written.
func TestCAKeyCopyInQueueRefused(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, func(c *spec.Cluster) { c.EncryptionAlgorithm = "ECDSA-P256" })
	runAll(t, Options{Cluster: c, Out: out})
	keyPEM, err := os.ReadFile(filepath.Join(out, "pki/etcd/ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	copyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	target := filepath.Join(out, "etcd02", "etc/kubernetes/notes.pem")
	leak := Phase{Name: "leak", Run: func(r *Runner) error { return r.WriteFile(target, copyPEM, layout.ModeKey, layout.ModeDir) }}
	before := etcdtest.Tree(t, out)
	for name, ps := range map[string][]Phase{
		"packed":  {leak, Bundle()},
		"written": {leak},
	} {
		r, err := NewRunner(Options{Cluster: c, Out: out})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(ps)
		var ce *CAKeyCopyError
		if !errors.As(err, &ce) || ce.Path != target || !badinput.Is(err) {
			t.Errorf("%s: %v, want the copy %s refused", name, err, target)
		}
		if after := etcdtest.Tree(t, out); !reflect.DeepEqual(before, after) {
			t.Errorf("%s: changed %v", name, etcdtest.DiffTree(before, after))
		}
	}
}
