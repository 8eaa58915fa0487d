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

// TestStatefulSetRenewDue: with a limit, only the StatefulSet's
// certificates that expire within it are renewed; with none due, the
// object stream and the client bundle keep every byte.
func TestStatefulSetRenewDue(t *testing.T) {
	c := stsSpec(t, 3)
	out := t.TempDir()
	runInit(t, c, out)
	b := layout.Bundle(out)
	renewDue := func(t *testing.T, names []string, member string, within time.Duration) ([]Renewal, string) {
		t.Helper()
		var log bytes.Buffer
		r, err := NewRunner(Options{Cluster: c, Out: out, Log: &log, Now: func() time.Time { return renewLater }})
		if err != nil {
			t.Fatal(err)
		}
		done, err := r.RenewStatefulSet(names, member, within)
		if err != nil {
			t.Fatalf("renew within %s: %v\n%s", within, err, log.String())
		}
		return done, log.String()
	}
	credentials := func() statefulset.Credentials {
		stream, err := os.ReadFile(b.StatefulSetManifest())
		if err != nil {
			t.Fatal(err)
		}
		creds, err := statefulset.ReadCredentials(c, stream)
		if err != nil {
			t.Fatal(err)
		}
		return creds
	}

	// 300 days after init, every certificate has 65 days left.
	before := snapshot(t, out)
	done, log := renewDue(t, StatefulSetRenewable(), "", 30*24*time.Hour)
	if got := changed(before, snapshot(t, out)); len(done) != 0 || len(got) != 0 {
		t.Errorf("nothing due within 30d: renewed %d, changed %v", len(done), got)
	}
	for _, want := range []string{"[renew] Kept etcd-peer for etcd-2: valid until ", ", not due within 30d", "[renew] Kept etcd-client for statefulset"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// etcd-1's peer pair renewed now, without a limit: valid another year.
	if done, _ := renewDue(t, []string{"etcd-peer"}, "etcd-1", -1); len(done) != 1 {
		t.Fatalf("renewed %d, want etcd-1's peer pair", len(done))
	}
	mid := credentials()

	// Within 90 days: everything but that pair.
	done, _ = renewDue(t, StatefulSetRenewable(), "", 90*24*time.Hour)
	if len(done) != 3*2+2-1 {
		t.Errorf("%d renewed within 90d, want 7: every member's pairs but etcd-1's peer, and both clients", len(done))
	}
	after := credentials()
	if !bytes.Equal(after.Members[1].Peer.Cert, mid.Members[1].Peer.Cert) || !bytes.Equal(after.Members[1].Peer.Key, mid.Members[1].Peer.Key) {
		t.Error("etcd-1's peer pair, valid a year, was renewed again")
	}
	if bytes.Equal(after.Members[1].Server.Cert, mid.Members[1].Server.Cert) || bytes.Equal(after.Members[0].Peer.Cert, mid.Members[0].Peer.Cert) || bytes.Equal(after.Client.Cert, mid.Client.Cert) {
		t.Error("a certificate due within 90d was not renewed")
	}
	bundle, err := os.ReadFile(filepath.Join(b.StatefulSetClient(), "client.crt"))
	if err != nil || !bytes.Equal(bundle, after.Client.Cert) {
		t.Errorf("the client bundle does not hold the renewed client certificate (%v)", err)
	}
}
