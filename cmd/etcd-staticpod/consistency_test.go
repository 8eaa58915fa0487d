package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestRenewRefusesMovedHost: a spec that gives a host another address
// than the one its bundle was made for is refused by certs renew, naming
// both addresses and where the old one is recorded, with nothing written:
// from the bundle folder (OUT/cluster.yaml) and on a node (its manifest).
func TestRenewRefusesMovedHost(t *testing.T) {
	bin := binary(t)
	out := initBundle(t)
	moved := strings.Replace(threeHosts, "etcd02=10.107.88.16", "etcd02=10.107.88.26", 1)
	cl, err := spec.Load(filepath.Join(out, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	cl.Hosts[1].Address = "10.107.88.26"
	b, err := spec.Marshal(cl)
	if err != nil {
		t.Fatal(err)
	}
	config := writeFile(t, filepath.Join(t.TempDir(), "moved.yaml"), string(b))
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join(out, "etcd02"))); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml")
	recorded := filepath.Join(out, layout.SpecFile)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"--config, bundle folder", []string{"certs", "renew", "all", "--out", out, "--config", config},
			`host "etcd02": address 10.107.88.26 in the spec is not 10.107.88.16 recorded in ` + recorded},
		{"--config, one host", []string{"certs", "renew", "etcd-server", "--out", out, "--config", config, "--node", "etcd02"},
			`host "etcd02": address 10.107.88.26 in the spec is not 10.107.88.16 recorded in ` + recorded},
		{"--hosts over the recorded spec", []string{"certs", "renew", "all", "--out", out, "--hosts", moved},
			`address 10.107.88.26 in the spec is not 10.107.88.16`},
		{"on the node", []string{"certs", "renew", "all", "--config", config, "--node", "etcd02", "--root", root,
			"--ca-cert", filepath.Join(out, "pki/etcd/ca.crt"), "--ca-key", filepath.Join(out, "pki/etcd/ca.key")},
			`host "etcd02": address 10.107.88.26 in the spec is not 10.107.88.16 recorded in ` + manifest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeRoot := treeHash(t, out), treeHash(t, root)
			stdout, stderr, code := etcdtest.Exec(t, bin, tc.args...)
			assertOneLine(t, tc.args, stdout, stderr, code, tc.want)
			if treeHash(t, out) != before || treeHash(t, root) != beforeRoot {
				t.Error("a refused renewal wrote files")
			}
		})
	}
	// The hosts whose address did not change are renewed as usual.
	if stdout, stderr, code := etcdtest.Exec(t, bin, "certs", "renew", "all", "--out", out, "--config", config, "--node", "etcd01"); code != 0 {
		t.Errorf("renewing etcd01: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestCAKeyModeRepaired: a CA key that group or others can read is made
// 0600 before it is used, with one warning line on stderr, by every command
// that reads it: init, an init phase, certs renew, and a CA given by
// --ca-key; --dry-run only warns.
func TestCAKeyModeRepaired(t *testing.T) {
	bin := binary(t)
	out := initBundle(t)
	key := filepath.Join(out, "pki/etcd/ca.key")
	otherCert, otherKey := writeCA(t, t.TempDir(), time.Now(), 24*time.Hour)
	fresh := filepath.Join(t.TempDir(), "bundles")
	for _, tc := range []struct {
		name string
		key  string
		args []string
	}{
		{"init", key, []string{"init", "--out", out}},
		{"init phase", key, []string{"init", "phase", "certs", "etcd-server", "--out", out}},
		{"certs renew", key, []string{"certs", "renew", "etcd-peer", "--out", out, "--node", "etcd03"}},
		{"--ca-key", otherKey, []string{"init", "phase", "certs", "all", "--out", fresh, "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--ca-cert", otherCert, "--ca-key", otherKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []os.FileMode{0o644, 0o640} {
				if err := os.Chmod(tc.key, mode); err != nil {
					t.Fatal(err)
				}
				// --dry-run tells and changes nothing.
				_, stderr, code := etcdtest.Exec(t, bin, append(tc.args, "--dry-run")...)
				if code != 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "warning: CA key "+tc.key+" can be read by group or others") {
					t.Errorf("dry run: exit %d, stderr %q", code, stderr)
				}
				if fi, _ := os.Stat(tc.key); fi.Mode().Perm() != mode {
					t.Errorf("dry run changed the mode to %04o", fi.Mode().Perm())
				}
				stdout, stderr, code := etcdtest.Exec(t, bin, tc.args...)
				want := fmt.Sprintf("warning: CA key %s could be read by group or others (mode %04o); made it 0600\n", tc.key, mode)
				if code != 0 || stderr != want {
					t.Errorf("exit %d, stderr %q, want %q\n%s", code, stderr, want, stdout)
				}
				if fi, _ := os.Stat(tc.key); fi.Mode().Perm() != 0o600 {
					t.Errorf("mode %04o after the run, want 0600", fi.Mode().Perm())
				}
				// Once private, nothing more is said.
				if _, stderr, code := etcdtest.Exec(t, bin, append(tc.args, "--dry-run")...); code != 0 || stderr != "" {
					t.Errorf("a private key: exit %d, stderr %q", code, stderr)
				}
			}
		})
	}
}
