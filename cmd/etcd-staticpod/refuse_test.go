package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
)

// refusal is one run of the built binary that must be refused.
type refusal struct {
	name string
	args []string
	code int
	want string // in the one error line
	// setup, when set, prepares the folder for the case and returns what
	// puts it back.
	setup func(t *testing.T) (undo func())
}

// maxRSS bounds a refused run's memory: reading a special or huge input
// used to take gigabytes; the binary itself needs a few tens of megabytes.
const maxRSS = 200 << 20

// checkRefusals runs each case through the built binary, at most 30 s (a
// read that blocks on a pipe fails the case instead of hanging the suite),
// and checks its exit status, its one error line, its memory, and that
// every one of dirs is exactly as it was.
func checkRefusals(t *testing.T, dirs []string, cases []refusal) {
	t.Helper()
	bin := binary(t)
	hashes := func() []string {
		var out []string
		for _, d := range dirs {
			out = append(out, treeHash(t, d))
		}
		return out
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				defer tc.setup(t)()
			}
			before := hashes()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd, rssFile := measured(ctx, t, bin, tc.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("%q: still running after 30 s", tc.args)
			}
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("%q: exit %d, want %d\n%s%s", tc.args, code, tc.code, stdout.String(), stderr.String())
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if !strings.HasPrefix(l, "warning: ") && l != "" {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "error: ") || !strings.Contains(errLines[0], tc.want) {
				t.Errorf("%q: stderr %q, want one error line containing %q", tc.args, stderr.String(), tc.want)
			}
			if strings.Contains(stdout.String()+stderr.String(), "PRIVATE KEY") {
				t.Errorf("%q printed key material", tc.args)
			}
			if rss := peakRSS(t, rssFile); rss > maxRSS {
				t.Errorf("%q: %d MiB resident, want at most %d", tc.args, rss>>20, maxRSS>>20)
			}
			if after := hashes(); !slices.Equal(after, before) {
				t.Errorf("%q changed %v", tc.args, dirs)
			}
		})
	}
}

// TestSpecialInputFiles: a device, a named pipe or a huge file where the
// tool expects an input file is refused with one line, quickly and in
// little memory, by every kind of command.
func TestSpecialInputFiles(t *testing.T) {
	out := initBundle(t)
	inputs := t.TempDir()
	fifo := filepath.Join(inputs, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := writeFile(t, filepath.Join(inputs, "huge.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\n#"+strings.Repeat("x", 10<<20)+"\n")
	caCert := filepath.Join(out, "pki/etcd/ca.crt")
	server := filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/server.crt")
	checkRefusals(t, []string{out}, []refusal{
		{"init spec of 10 MB", []string{"init", "--out", out, "--config", huge}, 2, huge + ": larger than 1 MiB", nil},
		{"init spec /dev/zero", []string{"init", "--out", out, "--config", "/dev/zero"}, 2, "/dev/zero: not a regular file", nil},
		{"kubelet patch /dev/urandom", []string{"init", "phase", "kubelet", "--out", out, "--kubelet-config-patch", "/dev/urandom"}, 2, "/dev/urandom: not a regular file", nil},
		{"kubelet patch pipe", []string{"init", "phase", "kubelet", "--out", out, "--kubelet-config-patch", fifo}, 2, fifo + ": not a regular file", nil},
		{"init --ca-cert pipe", []string{"init", "phase", "certs", "all", "--out", out, "--ca-cert", fifo, "--ca-key", filepath.Join(out, "pki/etcd/ca.key")}, 2, fifo + ": not a regular file", nil},
		{"renew spec pipe", []string{"certs", "renew", "all", "--out", out, "--config", fifo}, 2, fifo + ": not a regular file", nil},
		{"renew --ca-key pipe", []string{"certs", "renew", "all", "--out", out, "--ca-cert", caCert, "--ca-key", fifo}, 2, fifo + ": not a regular file", nil},
		{"member add spec of 10 MB", []string{"member", "add", "etcd04=10.107.88.18", "--out", out, "--config", huge}, 2, huge + ": larger than 1 MiB", nil},
		{"health --cacert pipe", []string{"health", "--endpoints", "https://127.0.0.1:1", "--cacert", fifo}, 2, fifo + ": not a regular file", nil},
		{"snapshot status pipe", []string{"snapshot", "status", fifo}, 2, fifo + ": not a regular file", nil},
		{"snapshot status /dev/zero", []string{"snapshot", "status", "/dev/zero"}, 2, "/dev/zero: not a regular file", nil},
		{"snapshot restore pipe", []string{"snapshot", "restore", fifo, "--out", out}, 2, `snapshot file "` + fifo + `": not a regular file`, nil},
		{"snapshot restore /dev/urandom", []string{"snapshot", "restore", "/dev/urandom", "--out", out}, 2, `snapshot file "/dev/urandom": not a regular file`, nil},
		{"snapshot restore spec pipe", []string{"snapshot", "restore", filepath.Join(inputs, "none.db"), "--out", out, "--config", fifo}, 2, fifo + ": not a regular file", nil},
		{"check-expiration, a pipe as a certificate", []string{"certs", "check-expiration", "--out", out}, 2, `certificate file "` + server + `": not a regular file`, special(server, fifoAt)},
		{"check-expiration, a pipe as the CA", []string{"certs", "check-expiration", "--out", out}, 2, `certificate file "` + caCert + `": not a regular file`, special(caCert, fifoAt)},
		{"check-expiration, a folder as a certificate", []string{"certs", "check-expiration", "--out", out}, 2, `certificate file "` + server + `": not a regular file`, special(server, os.Mkdir)},
		{"check-expiration, a certificate of 2 MB", []string{"certs", "check-expiration", "--out", out}, 2, `certificate file "` + server + `": larger than 1 MiB`, special(server, func(p string, _ os.FileMode) error {
			return os.WriteFile(p, bytes.Repeat([]byte("x"), 2<<20), 0o644)
		})},
		{"check-expiration on a node, a pipe as a certificate", []string{"certs", "check-expiration", "--root", filepath.Join(out, "etcd02")}, 2, `certificate file "` + server + `": not a regular file`, special(server, fifoAt)},
	})
}

func fifoAt(path string, mode os.FileMode) error { return syscall.Mkfifo(path, uint32(mode)) }

// special moves the file at path aside and makes something else there
// instead; undoing puts the file back.
func special(path string, make func(string, os.FileMode) error) func(t *testing.T) func() {
	return func(t *testing.T) func() {
		t.Helper()
		aside := path + ".aside"
		if err := os.Rename(path, aside); err != nil {
			t.Fatal(err)
		}
		if err := make(path, 0o600); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.RemoveAll(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(aside, path); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// place writes data at path (making its folder) and returns what removes
// it, or puts back what was there.
func place(path string, data []byte) func(t *testing.T) func() {
	return func(t *testing.T) func() {
		t.Helper()
		old, err := os.ReadFile(path)
		had := err == nil
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return func() {
			if had {
				if err := os.WriteFile(path, old, 0o600); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// both runs setups in order and undoes them in reverse.
func both(a, b func(t *testing.T) func()) func(t *testing.T) func() {
	return func(t *testing.T) func() {
		undoA := a(t)
		undoB := b(t)
		return func() { undoB(); undoA() }
	}
}

// TestCAKeyUnderAnotherName: a copy of the CA key in a host folder or in
// control-plane/, under any name and in any PEM encoding, is refused by
// every command that writes or packs there, naming the file.
func TestCAKeyUnderAnotherName(t *testing.T) {
	out := initBundle(t)
	caKeyPEM, err := os.ReadFile(filepath.Join(out, "pki/etcd/ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.ParseKey(caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	caCert, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
	pki := func(host string) string { return filepath.Join(out, host, "etc/kubernetes/pki/etcd") }
	bak := filepath.Join(pki("etcd01"), "ca.key.bak")
	server := filepath.Join(pki("etcd02"), "server.key")
	peer := filepath.Join(pki("etcd03"), "peer.key")
	notes := filepath.Join(out, "control-plane/etc/kubernetes/pki/notes.txt")
	withCert := filepath.Join(out, "etcd02/etc/kubernetes/ca-bundle.pem")
	// The CA key alone where an interrupted run would have left a host key.
	lone := both(place(filepath.Join(pki("etcd01"), "server.crt"), nil), place(filepath.Join(pki("etcd01"), "server.key"), caKeyPEM))
	loneKey := func(t *testing.T) func() {
		undo := lone(t)
		if err := os.Remove(filepath.Join(pki("etcd01"), "server.crt")); err != nil {
			t.Fatal(err)
		}
		return undo
	}
	copyOf := "is a copy of the etcd CA's private key"
	checkRefusals(t, []string{out}, []refusal{
		{"ca.key.bak: init", []string{"init", "--out", out}, 2, bak + " " + copyOf, place(bak, caKeyPEM)},
		{"ca.key.bak: bundle", []string{"init", "phase", "bundle", "--out", out}, 2, bak + " " + copyOf, place(bak, caKeyPEM)},
		{"ca.key.bak: kubelet", []string{"init", "phase", "kubelet", "--out", out}, 2, bak + " " + copyOf, place(bak, caKeyPEM)},
		{"ca.key.bak: renew", []string{"certs", "renew", "all", "--out", out, "--node", "etcd01"}, 2, bak + " " + copyOf, place(bak, caKeyPEM)},
		{"over server.key: init", []string{"init", "--out", out}, 2, server + " " + copyOf, place(server, caKeyPEM)},
		{"over server.key: certs", []string{"init", "phase", "certs", "etcd-server", "--out", out}, 2, server + " " + copyOf, place(server, caKeyPEM)},
		{"over server.key: renew other", []string{"certs", "renew", "etcd-peer", "--out", out}, 2, server + " " + copyOf, place(server, caKeyPEM)},
		{"over server.key: on the node", []string{"init", "phase", "certs", "all", "--out", out, "--node", "etcd02", "--root", filepath.Join(out, "etcd02")}, 2, server + " " + copyOf, place(server, caKeyPEM)},
		{"over peer.key: init", []string{"init", "--out", out}, 2, peer + " " + copyOf, place(peer, caKeyPEM)},
		{"as a key a run left", []string{"init", "phase", "certs", "all", "--out", out}, 2, filepath.Join(pki("etcd01"), "server.key") + " " + copyOf, loneKey},
		{"as a key a run left, on the node", []string{"init", "phase", "certs", "all", "--out", out, "--node", "etcd01", "--root", filepath.Join(out, "etcd01")}, 2, filepath.Join(pki("etcd01"), "server.key") + " " + copyOf, loneKey},
		{"PKCS#8 in control-plane/", []string{"init", "phase", "kubeadm-config", "--out", out}, 2, notes + " " + copyOf, place(notes, pkcs8)},
		{"PKCS#8 in control-plane/: renew", []string{"certs", "renew", "apiserver-etcd-client", "--out", out}, 2, notes + " " + copyOf, place(notes, pkcs8)},
		{"after a certificate", []string{"init", "phase", "bundle", "--out", out}, 2, withCert + " " + copyOf, place(withCert, append(append([]byte{}, caCert...), caKeyPEM...))},
	})
	if _, stderr, code := runCLI(t, "init", "--out", out); code != 0 {
		t.Errorf("the folder put back: exit %d, %s", code, stderr)
	}
}

// TestSymlinkOutOfTree: a symbolic link inside a host folder that leads out
// of OUT (or of --root) is refused by every phase that would write through
// it, naming the link and where it points; the place it points to stays
// untouched. A link that stays inside is followed, and --out itself may be
// a link.
func TestSymlinkOutOfTree(t *testing.T) {
	out := initBundle(t)
	outside := t.TempDir()
	// link replaces the folder at rel in out with a link to an empty folder
	// outside; moved, with a link to the folder itself, moved outside.
	link := func(rel string) func(t *testing.T) func() { return linkOut(out, outside, rel, false) }
	moved := func(rel string) func(t *testing.T) func() { return linkOut(out, outside, rel, true) }
	refused := func(rel string) string {
		return filepath.Join(out, rel) + ": a symbolic link to " + filepath.Join(outside, filepath.Base(rel)) + ", outside " + out
	}
	etc, pki, varLib, manifests := "etcd02/etc", "etcd02/etc/kubernetes/pki", "etcd02/var/lib", "etcd02/etc/kubernetes/manifests"
	cases := []refusal{
		{"init", []string{"init", "--out", out}, 2, refused(etc), link(etc)},
		{"certs etcd-ca", []string{"init", "phase", "certs", "etcd-ca", "--out", out}, 2, refused(pki), link(pki)},
		{"certs all", []string{"init", "phase", "certs", "all", "--out", out}, 2, refused(pki), link(pki)},
		{"certs etcd-peer", []string{"init", "phase", "certs", "etcd-peer", "--out", out}, 2, refused(etc), link(etc)},
		{"kubelet", []string{"init", "phase", "kubelet", "--out", out}, 2, refused(etc), link(etc)},
		{"etcd local, manifest", []string{"init", "phase", "etcd", "local", "--out", out}, 2, refused(manifests), link(manifests)},
		{"etcd local, data folder", []string{"init", "phase", "etcd", "local", "--out", out}, 2, refused(varLib), link(varLib)},
		{"kubeadm-config", []string{"init", "phase", "kubeadm-config", "--out", out}, 2, refused(etc), link(etc)},
		{"kubeadm-config, control-plane/", []string{"init", "phase", "kubeadm-config", "--out", out}, 2, refused("control-plane/etc"), link("control-plane/etc")},
		{"bundle", []string{"init", "phase", "bundle", "--out", out}, 2, filepath.Join(out, etc) + ": a symbolic link; only regular files and folders can be archived", link(etc)},
		{"certs renew", []string{"certs", "renew", "etcd-server", "--out", out, "--node", "etcd02"}, 2, refused(pki), moved(pki)},
		{"init, the folder moved", []string{"init", "--out", out}, 2, refused(etc), moved(etc)},
		{"CA store", []string{"init", "phase", "certs", "etcd-ca", "--out", out}, 2, refused("pki"), link("pki")},
		{"snapshot restore", []string{"snapshot", "restore", filepath.Join(outside, "none.db"), "--out", out}, 2, refused(varLib), link(varLib)},
		{"on a node, --root", []string{"init", "phase", "kubelet", "--out", out, "--node", "etcd02", "--root", filepath.Join(out, "etcd02")}, 2,
			filepath.Join(out, etc) + ": a symbolic link to " + filepath.Join(outside, "etc") + ", outside " + filepath.Join(out, "etcd02"), link(etc)},
	}
	checkRefusals(t, []string{out, outside}, cases)

	// Links that stay inside the tree are followed, as on a node whose /var/run is a link to /run.
	root := filepath.Join(out, "etcd03")
	if err := os.Rename(filepath.Join(root, "var/lib"), filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../lib", filepath.Join(root, "var/lib")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, "init", "phase", "etcd", "local", "--out", out, "--node", "etcd03", "--root", root); code != 0 {
		t.Errorf("a link inside --root: exit %d, %s", code, stderr)
	}
	// --out may be a link to the bundle folder.
	linked := filepath.Join(t.TempDir(), "bundles")
	if err := os.Symlink(out, linked); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, "init", "--out", linked, "--skip-phases", "bundle"); code != 0 {
		t.Errorf("--out a link: exit %d, %s", code, stderr)
	}
	dangling := filepath.Join(t.TempDir(), "gone")
	if err := os.Symlink(filepath.Join(outside, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	checkRefusals(t, []string{outside}, []refusal{
		{"--out a dangling link", []string{"init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", dangling}, 2, dangling + ": a symbolic link to " + filepath.Join(outside, "nowhere") + ", which does not resolve", nil},
	})
}

// linkOut replaces the folder at rel in out with a symbolic link to a
// folder outside: an empty one, or (move) the folder itself, moved there.
func linkOut(out, outside, rel string, move bool) func(t *testing.T) func() {
	return func(t *testing.T) func() {
		t.Helper()
		path := filepath.Join(out, rel)
		target := filepath.Join(outside, filepath.Base(rel))
		aside := path + ".aside"
		if move {
			aside = target
		}
		if err := os.Rename(path, aside); err != nil {
			t.Fatal(err)
		}
		if !move {
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if !move {
				if err := os.Remove(target); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Rename(aside, path); err != nil {
				t.Fatal(err)
			}
		}
	}
}
