package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// keyBodies returns the base64 lines of every private key under dir.
func keyBodies(t *testing.T, dir string) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".key") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) >= 40 && !strings.HasPrefix(l, "-----") {
				keys[path] = append(keys[path], l)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestNoKeyMaterialLeaks: nothing the CLI prints holds a private key, and no
// host folder or archive holds the CA key.
func TestNoKeyMaterialLeaks(t *testing.T) {
	bin := binary(t)
	for _, alg := range []string{"RSA-2048", "ECDSA-P256"} {
		t.Run(alg, func(t *testing.T) {
			out := t.TempDir()
			var printed strings.Builder
			record := func(args ...string) int {
				stdout, stderr, code := etcdtest.Exec(t, bin, args...)
				printed.WriteString(stdout + stderr)
				return code
			}
			base := []string{"--hosts", threeHosts, "--encryption-algorithm", alg, "--out", out}
			if code := record(append([]string{"init"}, base...)...); code != 0 {
				t.Fatalf("init failed:\n%s", printed.String())
			}
			record(append([]string{"init", "--dry-run"}, base...)...)
			record(append([]string{"init", "phase", "certs", "all"}, base...)...)
			record(append([]string{"init", "phase", "certs", "all", "--dry-run", "--out", t.TempDir()}, base[:4]...)...)
			// Failing runs print errors that name key files.
			peer := filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/peer.key")
			server, _ := os.ReadFile(filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/server.key"))
			if err := os.WriteFile(peer, server, 0o600); err != nil {
				t.Fatal(err)
			}
			if code := record(append([]string{"init"}, base...)...); code == 0 {
				t.Fatal("a swapped key was accepted")
			}
			record("init", "--hosts", threeHosts, "--out", t.TempDir(), "--ca-cert", filepath.Join(out, "pki/etcd/ca.key"), "--ca-key", filepath.Join(out, "pki/etcd/ca.crt"))
			text := printed.String()
			if strings.Contains(text, "PRIVATE KEY") {
				t.Error("output holds a PEM key header")
			}
			keys := keyBodies(t, out)
			if len(keys) < 13 {
				t.Fatalf("found %d key files", len(keys))
			}
			for path, lines := range keys {
				for _, l := range lines {
					if strings.Contains(text, l) {
						t.Fatalf("output holds a line of %s", path)
					}
				}
			}
			// The CA key's lines appear in no file of a host folder, and in no archive.
			caKey := keys[filepath.Join(out, "pki/etcd/ca.key")]
			entries, _ := os.ReadDir(out)
			for _, e := range entries {
				path := filepath.Join(out, e.Name())
				if e.Name() == "pki" {
					continue
				}
				var blobs [][]byte
				switch {
				case e.IsDir():
					_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							b, _ := os.ReadFile(p)
							blobs = append(blobs, b)
						}
						return err
					})
				case strings.HasSuffix(e.Name(), ".tar.gz"):
					blobs = append(blobs, archiveFiles(t, path)...)
				}
				for _, b := range blobs {
					for _, l := range caKey {
						if bytes.Contains(b, []byte(l)) {
							t.Fatalf("%s holds the CA key", path)
						}
					}
				}
			}
		})
	}
}

func archiveFiles(t *testing.T, path string) [][]byte {
	t.Helper()
	entries, err := archive.ReadTarGz(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range entries {
		out = append(out, e.Data)
	}
	return out
}
