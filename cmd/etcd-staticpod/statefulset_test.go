package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/kube/kubetest"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// TestStatefulSetInit: init --runtime statefulset writes the objects and
// the client bundle, says how to apply them, and records the spec; a
// second run from the recorded spec changes nothing.
func TestStatefulSetInit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, code := runCLI(t, "init", "--runtime", "statefulset", "--namespace", "apps", "--replicas", "5", "--storage-class", "local-path",
		"--storage-size", "2Gi", "--encryption-algorithm", "ECDSA-P256", "--dir", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"kubectl apply -f " + out + "/statefulset/etcd.yaml", "https://etcd-client.apps.svc.cluster.local:2379"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	recorded, err := os.ReadFile(filepath.Join(out, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"runtime: statefulset\n", "  namespace: apps\n", "  replicas: 5\n", "  storageClass: local-path\n", "  storageSize: 2Gi\n"} {
		if !strings.Contains(string(recorded), want) {
			t.Errorf("cluster.yaml lacks %q:\n%s", want, recorded)
		}
	}
	stream, err := os.ReadFile(filepath.Join(out, "statefulset", "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"storageClassName: local-path", "replicas: 5", "etcd-4-peer.key:"} {
		if !strings.Contains(string(stream), want) {
			t.Errorf("etcd.yaml lacks %q", want)
		}
	}
	checkStatefulSetExpiry(t, out)
	before := treeHash(t, out)
	if _, stderr, code := runCLI(t, "init", "--out", out); code != 0 {
		t.Fatalf("second init: exit %d\n%s", code, stderr)
	}
	if treeHash(t, out) != before {
		t.Error("a second init from the recorded spec changed the output")
	}
}

// TestStatefulSetRefused: every bad StatefulSet setting is one line naming
// the flag or field and the value, exit 2, nothing written.
func TestStatefulSetRefused(t *testing.T) {
	bin := binary(t)
	sts := []string{"--runtime", "statefulset"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"hosts", append(sts, "--hosts", threeHosts), `hosts: runtime statefulset takes no hosts`},
		{"hosts with a StatefulSet flag", append(sts, "--hosts", threeHosts, "--replicas", "3"), `--hosts: runtime statefulset takes no hosts`},
		{"replicas zero", append(sts, "--replicas", "0"), `--replicas 0: want 1 to 15`},
		{"replicas too many", append(sts, "--replicas", "16"), `--replicas 16: want 1 to 15`},
		{"replicas not a number", append(sts, "--replicas", "three"), `invalid value "three" for flag -replicas`},
		{"namespace", append(sts, "--namespace", "Apps"), `statefulset.namespace "Apps": not a namespace name`},
		{"name", append(sts, "--name", "etcd.main"), `statefulset.name "etcd.main": not a DNS-1035 label`},
		{"name starting with a digit", append(sts, "--name", "3etcd"), `statefulset.name "3etcd": not a DNS-1035 label, as a Service's name must be`},
		{"name too long", append(sts, "--name", strings.Repeat("e", 53)), `statefulset.name "` + strings.Repeat("e", 53) + `": longer than 52 characters`},
		{"storage size", append(sts, "--storage-size", "lots"), `statefulset.storageSize "lots": not a quantity such as 1Gi or 500Mi`},
		{"storage size zero", append(sts, "--storage-size", "0"), `statefulset.storageSize "0": must be positive`},
		{"storage class", append(sts, "--storage-class", "Fast SSD"), `statefulset.storageClass "Fast SSD": not a StorageClass name`},
		{"cluster domain", append(sts, "--cluster-domain", "cluster_local"), `statefulset.clusterDomain "cluster_local": not a DNS domain`},
		{"empty namespace", append(sts, "--namespace", ""), `--namespace "": must not be empty`},
		{"flag without the runtime", []string{"--hosts", threeHosts, "--replicas", "3"}, `--replicas: only with --runtime statefulset`},
		{"monitoring", append(sts, "--monitoring"), `monitoring: not available with runtime statefulset`},
		{"reserved env", append(sts, "--extra-env", "POD_NAME=x"), `etcd.extraEnv "POD_NAME": the StatefulSet's container sets it itself`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"init", "--encryption-algorithm", "ECDSA-P256", "--out", out}, tc.args...)
			stdout, stderr, code := etcdtest.Exec(t, bin, args...)
			assertOneLine(t, args, stdout, stderr, code, tc.want)
			if code != 2 {
				t.Errorf("%v: exit %d, want 2", args, code)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%v made %s", args, out)
			}
		})
	}
}

// checkStatefulSetExpiry: check-expiration lists the certificates of a
// StatefulSet bundle folder, those inside the object stream's Secrets too,
// and --within says when they are due.
func checkStatefulSetExpiry(t *testing.T, out string) {
	t.Helper()
	stdout, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out, "-o", "json")
	if code != 0 {
		t.Fatalf("check-expiration: exit %d\n%s", code, stderr)
	}
	var doc struct {
		Certificates []struct {
			Name, Host, Path, Authority string
			Missing                     bool
		}
		CertificateAuthorities []struct{ Name, Host, Path string }
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range doc.Certificates {
		if c.Missing || c.Authority != "etcd-ca" {
			t.Errorf("%+v", c)
		}
		got = append(got, c.Host+"/"+c.Name+" "+strings.TrimPrefix(c.Path, out+"/"))
	}
	for _, want := range []string{
		"etcd-4/etcd-peer statefulset/etcd.yaml#etcd-members/etcd-4-peer.crt",
		"statefulset/etcd-healthcheck-client statefulset/etcd.yaml#etcd-healthcheck-client/tls.crt",
		"statefulset/client/etcd-client statefulset/client/client.crt",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("check-expiration lacks %s:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 2*5+3 || len(doc.CertificateAuthorities) != 3 {
		t.Errorf("%d certificates and %d CAs, want 13 and 3:\n%s", len(got), len(doc.CertificateAuthorities), stdout)
	}
	if _, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out, "--within", "400d"); code != 3 || !strings.Contains(stderr, "etcd-2/etcd-server") {
		t.Errorf("--within 400d: exit %d, want 3 naming etcd-2/etcd-server\n%s", code, stderr)
	}
}

// TestStatefulSetRenew: certs renew replaces one member's pair, or every
// certificate, in the object stream and the client bundle; what it does
// not renew stays byte for byte; the new certificates are the same
// profiles, signed by the same CA.
func TestStatefulSetRenew(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if _, stderr, code := runCLI(t, "init", "--runtime", "statefulset", "--namespace", "apps", "--encryption-algorithm", "ECDSA-P256", "--out", out); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	cl, err := spec.Load(filepath.Join(out, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cl.SetDefaults()
	read := func() statefulset.Credentials {
		stream, err := os.ReadFile(filepath.Join(out, "statefulset", "etcd.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		creds, err := statefulset.ReadCredentials(cl, stream)
		if err != nil {
			t.Fatal(err)
		}
		return creds
	}
	before := read()
	stdout, stderr, code := runCLI(t, "certs", "renew", "etcd-peer", "--node", "etcd-1", "--out", out)
	if code != 0 {
		t.Fatalf("renew: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"etcd-members/etcd-1-peer.crt", "kubectl apply -f " + out + "/statefulset/etcd.yaml", "kubectl -n apps rollout restart statefulset/etcd"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	after := read()
	if bytes.Equal(after.Members[1].Peer.Key, before.Members[1].Peer.Key) || bytes.Equal(after.Members[1].Peer.Cert, before.Members[1].Peer.Cert) {
		t.Error("etcd-1's peer pair was not renewed")
	}
	after.Members[1].Peer = before.Members[1].Peer
	if d := cmp.Diff(before, after); d != "" {
		t.Errorf("renewing etcd-1's peer pair changed more:\n%s", d)
	}
	ca, err := certs.ParseCert(before.CA)
	if err != nil {
		t.Fatal(err)
	}
	renewed, _ := certs.ParseCert(read().Members[1].Peer.Cert)
	if err := renewed.CheckSignatureFrom(ca); err != nil || renewed.Subject.CommonName != "etcd-1" || !slices.Contains(renewed.DNSNames, "etcd-1.etcd.apps.svc.cluster.local") {
		t.Errorf("renewed peer certificate: CN %q, DNS %v, %v", renewed.Subject.CommonName, renewed.DNSNames, err)
	}

	if _, stderr, code := runCLI(t, "certs", "renew", "all", "--out", out); code != 0 {
		t.Fatalf("renew all: exit %d\n%s", code, stderr)
	}
	all := read()
	for i := range all.Members {
		if bytes.Equal(all.Members[i].Server.Cert, before.Members[i].Server.Cert) {
			t.Errorf("etcd-%d's server certificate was not renewed", i)
		}
	}
	bundle, err := os.ReadFile(filepath.Join(out, "statefulset", "client", "client.crt"))
	if err != nil || !bytes.Equal(bundle, all.Client.Cert) || bytes.Equal(bundle, before.Client.Cert) {
		t.Errorf("the client bundle does not hold the renewed client certificate (%v)", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"etcd-peer", "--node", "etcd-3"}, `--node "etcd-3": no such member (members: etcd-0 .. etcd-2)`},
		{[]string{"apiserver-etcd-client"}, `certificate "apiserver-etcd-client": with runtime statefulset, want all or one of etcd-server, etcd-peer, etcd-healthcheck-client, etcd-client`},
		{[]string{"all", "--root", "/"}, `--root "/": runtime statefulset has no hosts`},
		{[]string{"etcd-monitoring-client"}, `certificate "etcd-monitoring-client": with runtime statefulset, want all or one of`},
	} {
		before := treeHash(t, out)
		_, stderr, code := runCLI(t, append([]string{"certs", "renew", "--out", out}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %s; want 2 and %s", tc.args, code, stderr, tc.want)
		}
		if treeHash(t, out) != before {
			t.Errorf("%v changed the output", tc.args)
		}
	}

	// --within: nothing is due a year ahead of expiry; everything is
	// within 400 days of it.
	nothingDueWithin30d(t, out, "[renew] Kept etcd-server for etcd-2: valid until ")
	stdout, stderr, code = runCLI(t, "certs", "renew", "etcd-server", "--out", out, "--within", "400d")
	if code != 0 || !strings.Contains(stdout, "kubectl -n apps rollout restart statefulset/etcd") {
		t.Errorf("renew --within 400d: exit %d\n%s%s", code, stdout, stderr)
	}
	due := read()
	for i := range due.Members {
		if bytes.Equal(due.Members[i].Server.Cert, all.Members[i].Server.Cert) || !bytes.Equal(due.Members[i].Peer.Cert, all.Members[i].Peer.Cert) {
			t.Errorf("--within 400d, etcd-server: etcd-%d's server certificate kept or its peer certificate renewed", i)
		}
	}
}

// TestStatefulSetExpiryInCluster: check-expiration --kubeconfig reads the
// StatefulSet's Secrets from a real kube-apiserver too: the certificates
// the cluster holds, listed beside the bundle folder's, missing ones named.
func TestStatefulSetExpiryInCluster(t *testing.T) {
	s := kubetest.StartAPIServer(t, 51, 52)
	out := filepath.Join(t.TempDir(), "out")
	if _, stderr, code := runCLI(t, "init", "--runtime", "statefulset", "--encryption-algorithm", "ECDSA-P256", "--out", out); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	stream, err := os.ReadFile(filepath.Join(out, "statefulset", "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := statefulset.SecretData(stream)
	if err != nil {
		t.Fatal(err)
	}
	cs := s.Clientset(t)
	ctx := context.Background()
	// The members' Secret only: the clients' are missing from the cluster.
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "etcd-members"}, Data: secrets["etcd-members"],
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out, "--kubeconfig", s.Kubeconfig, "--within", "30d")
	if code != 3 {
		t.Fatalf("exit %d, want 3 for the Secrets missing from the cluster\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"secret/default/etcd-members/etcd-2-server.crt",
		"!MISSING! etcd-client ",
		"secret/default/etcd-client/tls.crt",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "cluster/etcd-client") || strings.Contains(stderr, "etcd-2/etcd-server") {
		t.Errorf("stderr should name only what is missing: %s", stderr)
	}
	if _, stderr, code := runCLI(t, "certs", "check-expiration", "--root", "/", "--kubeconfig", s.Kubeconfig); code != 2 || !strings.Contains(stderr, "--kubeconfig: reads a StatefulSet's Secrets; give --out, not --root") {
		t.Errorf("--root with --kubeconfig: exit %d, %s", code, stderr)
	}
}
