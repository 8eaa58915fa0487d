package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

const threeHosts = "etcd01=10.107.88.15,etcd02=10.107.88.16,etcd03=10.107.88.17"

// treeHash sums every path, mode and content below dir ("absent" if none).
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return "absent"
	}
	tree := etcdtest.Tree(t, dir)
	h := sha256.New()
	for _, path := range slices.Sorted(maps.Keys(tree)) {
		fmt.Fprintf(h, "%s %s\n", path, tree[path])
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeCA writes a CA certificate and key made at now with the given validity.
func writeCA(t *testing.T, dir string, now time.Time, validity time.Duration) (string, string) {
	t.Helper()
	ca, err := certs.NewAuthority("ECDSA-P256", validity, now)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := certs.EncodeKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, filepath.Join(dir, "ca.crt"), string(certs.EncodeCert(ca.Cert))), writeFile(t, filepath.Join(dir, "ca.key"), string(keyPEM))
}

// TestRejectsBadInput runs the built binary on every kind of bad input: each
// must exit non-zero with one error line naming what is wrong, and leave the
// output folder byte for byte as it was.
func TestRejectsBadInput(t *testing.T) {
	bin := binary(t)
	run := func(t *testing.T, args ...string) (string, string, int) { return etcdtest.Exec(t, bin, args...) }
	inputs := t.TempDir()
	otherCA := t.TempDir()
	otherCert, otherKey := writeCA(t, otherCA, time.Now(), time.Hour)
	expiredCert, expiredKey := writeCA(t, t.TempDir(), time.Now().Add(-48*time.Hour), time.Hour)
	goodCert, _ := writeCA(t, t.TempDir(), time.Now(), time.Hour)
	// A leaf certificate passed off as a CA.
	ca, _ := certs.NewAuthority("ECDSA-P256", time.Hour, time.Now())
	leaf, leafKey, _ := ca.IssueNew(certs.Request{Profile: certs.Leaves()[2], Validity: time.Hour}, "ECDSA-P256", time.Now())
	leafKeyPEM, _ := certs.EncodeKey(leafKey)
	leafCert := writeFile(t, filepath.Join(inputs, "leaf.crt"), string(certs.EncodeCert(leaf)))
	leafKeyFile := writeFile(t, filepath.Join(inputs, "leaf.key"), string(leafKeyPEM))
	garbage := writeFile(t, filepath.Join(inputs, "garbage.crt"), "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
	truncKey := writeFile(t, filepath.Join(inputs, "trunc.key"), string(leafKeyPEM[:len(leafKeyPEM)/2]))
	unknownField := writeFile(t, filepath.Join(inputs, "unknown.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts:\n- name: etcd01\n  address: 10.0.0.1\n  sans: [x]\n")
	wrongType := writeFile(t, filepath.Join(inputs, "type.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts: etcd01\n")
	noHosts := writeFile(t, filepath.Join(inputs, "nohosts.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts: []\n")
	badSAN := writeFile(t, filepath.Join(inputs, "san.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nhosts:\n- name: etcd01\n  address: 10.0.0.1\n  serverCertSANs: [\"bad name!\"]\n")
	_ = otherCA
	// Special and huge files where a file is expected: refused before being
	// read, without hanging on a pipe or filling memory.
	fifo := filepath.Join(inputs, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The exit status where it is settled (others accept any failure), and
	// the flags `init phase certs all` does not have.
	codes := map[string]int{
		"spec is /dev/zero": 2, "spec is a pipe": 2, "spec of 10 MB": 2, "kubelet patch is /dev/urandom": 2,
		"kubelet patch is a pipe": 2, "CA certificate is a pipe": 2, "CA key is /dev/zero": 2,
	}
	initOnly := map[string]bool{
		"unknown skip phase": true, "extra arg without =": true,
		"kubelet patch is /dev/urandom": true, "kubelet patch is a pipe": true,
	}
	hugeSpec := writeFile(t, filepath.Join(inputs, "huge.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\n#"+strings.Repeat("x", 10<<20)+"\n")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"duplicate names", []string{"--hosts", "etcd01=10.0.0.1,etcd01=10.0.0.2"}, `host "etcd01": name "etcd01" is used by hosts[0] too`},
		{"duplicate addresses", []string{"--hosts", "a=10.0.0.1,b=10.0.0.1"}, `host "b": address "10.0.0.1" is used by host "a" too`},
		{"address not an IP", []string{"--hosts", "a=etcd-a"}, `host "a": address "etcd-a" is not an IPv4 or IPv6 address`},
		{"name not a label", []string{"--hosts", "ETCD.1=10.0.0.1"}, `host "ETCD.1": name "ETCD.1" is not a DNS-1123 label`},
		{"no hosts", []string{"--config", noHosts}, "hosts: at least one host is required"},
		{"empty hosts entry", []string{"--hosts", "a=10.0.0.1,"}, "--hosts: hosts \"a=10.0.0.1,\": empty entry"},
		{"IPv6 zone", []string{"--hosts", "a=fe80::1%eth0"}, `host "a": address "fe80::1%eth0" has a zone`},
		{"bad extra SAN", []string{"--config", badSAN}, `host "etcd01": serverCertSANs "bad name!" is neither an IP address nor a DNS name`},
		{"unknown field", []string{"--config", unknownField}, "line 6: field sans not found"},
		{"wrong type", []string{"--config", wrongType}, "line 3: cannot unmarshal"},
		{"unknown algorithm", []string{"--hosts", threeHosts, "--encryption-algorithm", "RSA-1024"}, `encryptionAlgorithm "RSA-1024": want one of RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384`},
		{"zero validity", []string{"--hosts", threeHosts, "--certificate-validity", "0s"}, `--certificate-validity "0s": must be positive`},
		{"negative CA validity", []string{"--hosts", threeHosts, "--ca-certificate-validity", "-1h"}, `--ca-certificate-validity "-1h": must be positive`},
		{"bad duration", []string{"--hosts", threeHosts, "--certificate-validity", "1y"}, `--certificate-validity "1y": not a duration`},
		{"extra arg without =", []string{"--hosts", threeHosts, "--extra-arg", "snapshot-count"}, `--extra-arg "snapshot-count": want NAME=VALUE`},
		{"CA key does not match", []string{"--hosts", threeHosts, "--ca-cert", goodCert, "--ca-key", otherKey}, "CA key: the private key does not match the certificate's public key"},
		{"expired CA", []string{"--hosts", threeHosts, "--ca-cert", expiredCert, "--ca-key", expiredKey}, `CA certificate (CN "etcd-ca") expired on`},
		{"non-CA as CA", []string{"--hosts", threeHosts, "--ca-cert", leafCert, "--ca-key", leafKeyFile}, "is not a CA (basic constraints CA:FALSE)"},
		{"garbage PEM", []string{"--hosts", threeHosts, "--ca-cert", garbage, "--ca-key", otherKey}, "CA certificate: parse certificate"},
		{"truncated key", []string{"--hosts", threeHosts, "--ca-cert", otherCert, "--ca-key", truncKey}, "CA key: parse private key"},
		{"ca-cert alone", []string{"--hosts", threeHosts, "--ca-cert", otherCert}, "give both or neither"},
		{"root without node", []string{"--hosts", threeHosts, "--root", "/tmp/x"}, "needs --node"},
		{"unknown node", []string{"--hosts", threeHosts, "--node", "etcd09"}, `--node "etcd09": no such host`},
		{"unknown skip phase", []string{"--hosts", threeHosts, "--skip-phases", "certs/etcd-cert"}, `--skip-phases "certs/etcd-cert": no such phase`},
		{"spec is /dev/zero", []string{"--config", "/dev/zero"}, "/dev/zero: not a regular file"},
		{"spec is a pipe", []string{"--config", fifo}, fifo + ": not a regular file"},
		{"spec of 10 MB", []string{"--config", hugeSpec}, hugeSpec + ": larger than 1 MiB"},
		{"kubelet patch is /dev/urandom", []string{"--hosts", threeHosts, "--kubelet-config-patch", "/dev/urandom"}, "/dev/urandom: not a regular file"},
		{"kubelet patch is a pipe", []string{"--hosts", threeHosts, "--kubelet-config-patch", fifo}, fifo + ": not a regular file"},
		{"CA certificate is a pipe", []string{"--hosts", threeHosts, "--ca-cert", fifo, "--ca-key", otherKey}, fifo + ": not a regular file"},
		{"CA key is /dev/zero", []string{"--hosts", threeHosts, "--ca-cert", otherCert, "--ca-key", "/dev/zero"}, "/dev/zero: not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cmd := range [][]string{{"init"}, {"init", "phase", "certs", "all"}} {
				if initOnly[tc.name] && len(cmd) > 1 {
					continue
				}
				// An output folder that exists with content, and one that does not.
				existing := t.TempDir()
				out, _, code := run(t, append(append([]string{}, cmd...), "--hosts", "x=10.9.9.9", "--out", existing, "--encryption-algorithm", "ECDSA-P256")...)
				if code != 0 {
					t.Fatalf("setup failed: %s", out)
				}
				before := treeHash(t, existing)
				fresh := filepath.Join(t.TempDir(), "bundles")
				for _, dir := range []string{existing, fresh} {
					args := append(append(append([]string{}, cmd...), "--out", dir), tc.args...)
					stdout, stderr, code := run(t, args...)
					if code == 0 {
						t.Fatalf("%v: exit 0, want failure\n%s", args, stdout)
					}
					if want, ok := codes[tc.name]; ok && code != want {
						t.Errorf("%v: exit %d, want %d", args, code, want)
					}
					var errLines []string
					for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
						if !strings.HasPrefix(l, "warning: ") {
							errLines = append(errLines, l)
						}
					}
					if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "error: ") || !strings.Contains(errLines[0], tc.want) {
						t.Errorf("%v: stderr %q, want one error line containing %q", args, stderr, tc.want)
					}
					if strings.Contains(stderr+stdout, "PRIVATE KEY") {
						t.Errorf("key material printed")
					}
				}
				if after := treeHash(t, existing); after != before {
					t.Errorf("%v changed the existing output folder", cmd)
				}
				if got := treeHash(t, fresh); got != "absent" {
					t.Errorf("%v created the output folder", cmd)
				}
			}
		})
	}
}

func TestRerunKeepsAndRefuses(t *testing.T) {
	out := t.TempDir()
	base := []string{"init", "phase", "certs", "all", "--out", out, "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256"}
	if o, e, code := runCLI(t, base...); code != 0 {
		t.Fatal(o, e)
	}
	before := treeHash(t, out)
	stdout, _, code := runCLI(t, base...)
	if code != 0 || treeHash(t, out) != before {
		t.Fatalf("re-run changed the bundles (exit %d)\n%s", code, stdout)
	}
	if !strings.Contains(stdout, "Using the existing etcd-server certificate and key for etcd02") {
		t.Errorf("re-run output: %s", stdout)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--hosts", "etcd01=10.107.88.15,etcd02=10.107.88.26,etcd03=10.107.88.17", "--encryption-algorithm", "ECDSA-P256"}, `host "etcd02": existing etcd-server certificate`},
		{[]string{"--hosts", threeHosts, "--encryption-algorithm", "RSA-2048"}, "key is ECDSA-P256, want RSA-2048"},
	}
	for _, tc := range cases {
		args := append([]string{"init", "phase", "certs", "all", "--out", out}, tc.args...)
		_, stderr, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "to replace it, run `etcd-staticpod certs renew etcd-server --node etcd0") {
			t.Errorf("%v: exit %d, %s", tc.args, code, stderr)
		}
		if treeHash(t, out) != before {
			t.Errorf("%v changed the bundles", tc.args)
		}
	}
	// A host whose key no longer belongs to its certificate.
	peer := filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/peer.key")
	server := filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/server.key")
	b, _ := os.ReadFile(server)
	if err := os.WriteFile(peer, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before = treeHash(t, out)
	_, stderr, code := runCLI(t, base...)
	if code == 0 || !strings.Contains(stderr, "the key file does not belong to the certificate") {
		t.Errorf("swapped key: exit %d, %s", code, stderr)
	}
	if treeHash(t, out) != before {
		t.Error("swapped key: bundles changed")
	}
	// Another CA in the store is refused, never replaces the hosts' ca.crt.
	caDir := filepath.Join(out, "pki/etcd")
	writeCA(t, caDir, time.Now(), time.Hour)
	before = treeHash(t, out)
	_, stderr, code = runCLI(t, base...)
	if code == 0 || !strings.Contains(stderr, "is not the CA certificate") {
		t.Errorf("other CA: exit %d, %s", code, stderr)
	}
	if treeHash(t, out) != before {
		t.Error("other CA: bundles changed")
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "b")
	stdout, stderr, code := runCLI(t, "init", "phase", "certs", "all", "--dry-run", "--out", out, "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256")
	if code != 0 {
		t.Fatal(stderr)
	}
	if treeHash(t, out) != "absent" {
		t.Error("dry run wrote files")
	}
	for _, want := range []string{"would write " + out + "/pki/etcd/ca.key (0600", "would write " + out + "/etcd03/etc/kubernetes/pki/apiserver-etcd-client.crt (0644"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "PRIVATE KEY") {
		t.Error("dry run printed key material")
	}
}

func TestExistingCAFromFlags(t *testing.T) {
	caCert, caKey := writeCA(t, t.TempDir(), time.Now(), 24*time.Hour)
	out := t.TempDir()
	if o, e, code := runCLI(t, "init", "phase", "certs", "all", "--out", out, "--hosts", threeHosts, "--ca-cert", caCert, "--ca-key", caKey, "--encryption-algorithm", "ECDSA-P256"); code != 0 {
		t.Fatal(o, e)
	}
	want, _ := os.ReadFile(caCert)
	got, _ := os.ReadFile(filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/ca.crt"))
	if !bytes.Equal(want, got) {
		t.Error("host ca.crt is not the given CA")
	}
	if _, err := os.Stat(filepath.Join(out, "pki/etcd/ca.key")); !os.IsNotExist(err) {
		t.Error("the given CA key was copied into the CA store")
	}
}

func TestSinglePhaseNeedsCA(t *testing.T) {
	out := filepath.Join(t.TempDir(), "b")
	_, stderr, code := runCLI(t, "init", "phase", "certs", "etcd-server", "--out", out, "--hosts", threeHosts)
	if code == 0 || !strings.Contains(stderr, "run `etcd-staticpod init phase certs etcd-ca` first") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if treeHash(t, out) != "absent" {
		t.Error("files written")
	}
}
