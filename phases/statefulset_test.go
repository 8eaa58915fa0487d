package phases

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

func stsSpec(t testing.TB, replicas int) *spec.Cluster {
	t.Helper()
	c := &spec.Cluster{Runtime: spec.RuntimeStatefulSet, EncryptionAlgorithm: "ECDSA-P256",
		StatefulSet: &spec.StatefulSet{Namespace: "apps", Replicas: replicas}}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func runInit(t testing.TB, c *spec.Cluster, out string) string {
	t.Helper()
	var log bytes.Buffer
	r, err := NewRunner(Options{Cluster: c, Out: out, Log: &log, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := List().Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ps); err != nil {
		t.Fatal(err)
	}
	return log.String()
}

// TestStatefulSetRun: init with runtime statefulset writes the CA store,
// the object stream and the client bundle, and nothing for hosts; no
// object carries the CA key; a second run keeps every byte; a run with
// more replicas keeps the members' certificates and adds the new ones.
func TestStatefulSetRun(t *testing.T) {
	c := stsSpec(t, 3)
	out := t.TempDir()
	runInit(t, c, out)
	var files []string
	filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(out, p)
			files = append(files, rel+" "+fi.Mode().Perm().String())
		}
		return err
	})
	want := "pki/etcd/ca.crt -rw-r--r-- pki/etcd/ca.key -rw------- statefulset/client/ca.crt -rw-r--r-- statefulset/client/client.crt -rw-r--r-- statefulset/client/client.key -rw------- statefulset/etcd.yaml -rw-------"
	if got := strings.Join(files, " "); got != want {
		t.Errorf("files:\n%s\nwant\n%s", got, want)
	}
	b := layout.Bundle(out)
	stream, err := os.ReadFile(b.StatefulSetManifest())
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := os.ReadFile(b.CAKey())
	if err != nil {
		t.Fatal(err)
	}
	noCAKeyIn(t, c, stream, caKey)

	runInit(t, c, out)
	again, _ := os.ReadFile(b.StatefulSetManifest())
	if !bytes.Equal(stream, again) {
		t.Error("a second run changed etcd.yaml")
	}

	c5 := stsSpec(t, 5)
	log := runInit(t, c5, out)
	if !strings.Contains(log, "Generated the certificates of etcd-3, etcd-4\n") {
		t.Errorf("log:\n%s", log)
	}
	five, _ := os.ReadFile(b.StatefulSetManifest())
	old, err := statefulset.ReadCredentials(c, stream)
	if err != nil {
		t.Fatal(err)
	}
	grown, err := statefulset.ReadCredentials(c5, five)
	if err != nil {
		t.Fatal(err)
	}
	if len(grown.Members) != 5 || !bytes.Equal(grown.Members[2].Peer.Key, old.Members[2].Peer.Key) || !bytes.Equal(grown.Client.Cert, old.Client.Cert) {
		t.Errorf("growing to 5 members did not keep the first three's certificates")
	}
	noCAKeyIn(t, c5, five, caKey)
}

// noCAKeyIn scans every value of every object in stream for the CA key:
// its bytes, and any PEM private key whose public key is the CA's.
func noCAKeyIn(t *testing.T, c *spec.Cluster, stream, caKeyPEM []byte) {
	t.Helper()
	caKey, err := certs.ParseKey(caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	finder := certs.NewKeyFinder(caKey.Public())
	creds, err := statefulset.ReadCredentials(c, stream)
	if err != nil {
		t.Fatal(err)
	}
	values := [][]byte{creds.CA, creds.Healthcheck.Cert, creds.Healthcheck.Key, creds.Client.Cert, creds.Client.Key}
	for _, m := range creds.Members {
		values = append(values, m.Server.Cert, m.Server.Key, m.Peer.Cert, m.Peer.Key)
	}
	keys := 0
	for _, v := range values {
		if bytes.Contains(v, bytes.TrimSpace(caKeyPEM)) {
			t.Fatal("an object holds the CA key's PEM")
		}
		for rest := v; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if strings.Contains(block.Type, "PRIVATE KEY") {
				keys++
				k, err := certs.ParseKey(pem.EncodeToMemory(block))
				if err != nil {
					t.Fatal(err)
				}
				if finder.IsKey(k) {
					t.Fatal("an object holds the CA's private key")
				}
			}
		}
	}
	if want := 2*len(creds.Members) + 2; keys != want {
		t.Errorf("scanned %d private keys, want %d", keys, want)
	}
}
