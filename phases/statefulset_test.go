package phases

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

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

// noCAKeyIn scans every value of every object in stream (a Secret's data
// decoded, a ConfigMap's as it is, and every other string) for the CA key:
// its bytes, and any PEM private key whose public key is the CA's. Every
// private key the objects hold is looked at: 2 per member and 2 clients.
func noCAKeyIn(t *testing.T, c *spec.Cluster, stream, caKeyPEM []byte) {
	t.Helper()
	caKey, err := certs.ParseKey(caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	finder := certs.NewKeyFinder(caKey.Public())
	var values [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatal(err)
		}
		secret := obj["kind"] == "Secret"
		var walk func(v any, inData bool)
		walk = func(v any, inData bool) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					walk(x, inData || k == "data")
				}
			case []any:
				for _, x := range v {
					walk(x, inData)
				}
			case string:
				values = append(values, []byte(v))
				if secret && inData {
					raw, err := base64.StdEncoding.DecodeString(v)
					if err != nil {
						t.Fatalf("Secret data is not base64: %v", err)
					}
					values = append(values, raw)
				}
			}
		}
		walk(obj, false)
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
	if want := 2*c.StatefulSet.Replicas + 2; keys != want {
		t.Errorf("scanned %d private keys, want %d", keys, want)
	}
}
