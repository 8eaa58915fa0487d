package main

import (
	"bytes"
	"crypto/x509"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// binary returns the CLI built from this tree (ETCD_STATICPOD_BIN when make
// built it already).
func binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ETCD_STATICPOD_BIN"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "etcd-staticpod")
	if out, err := exec.Command("go", "build", "-o", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return p
}

// TestKilledInitRecovers kills `init` with SIGKILL at points spread over a
// whole run, runs it again, and checks that the result is complete and
// valid and that a CA, once on disk, never changed.
func TestKilledInitRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("kills dozens of processes")
	}
	bin := binary(t)
	for _, tc := range []struct {
		alg    string
		points int
	}{{"ECDSA-P256", 40}, {"RSA-2048", 12}} {
		t.Run(tc.alg, func(t *testing.T) {
			args := []string{"init", "--hosts", threeHosts, "--encryption-algorithm", tc.alg}
			// How long a whole run takes here, to spread the kill points over it.
			start := time.Now()
			if out, err := exec.Command(bin, append(args, "--out", t.TempDir())...).CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			full := time.Since(start)
			killedMidway := 0
			for i := 0; i < tc.points; i++ {
				out := t.TempDir()
				cmd := exec.Command(bin, append(args, "--out", out)...)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(full * time.Duration(i) / time.Duration(tc.points))
				_ = cmd.Process.Signal(syscall.SIGKILL)
				if err := cmd.Wait(); err != nil {
					killedMidway++
				}
				caBefore, caErr := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
				if o, err := exec.Command(bin, append(args, "--out", out)...).CombinedOutput(); err != nil {
					t.Fatalf("kill point %d/%d: re-run failed: %v\n%s", i, tc.points, err, o)
				}
				caAfter, err := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
				if err != nil {
					t.Fatal(err)
				}
				if caErr == nil && !bytes.Equal(caBefore, caAfter) {
					t.Fatalf("kill point %d: the CA changed", i)
				}
				checkComplete(t, out, caAfter)
			}
			t.Logf("%s: %d of %d runs were killed before they finished (a whole run takes %v here)", tc.alg, killedMidway, tc.points, full)
			if killedMidway == 0 {
				t.Error("no run was interrupted: the kill points missed the run")
			}
		})
	}
}

// TestKilledInWriteWindow kills runs with SIGKILL while their temp files
// are on disk (the hooks binary holds them there; for a new CA, the CA key
// is among them), then runs init again: the re-run removes them under its
// lock, says so, and leaves nothing behind; the CA never changed.
func TestKilledInWriteWindow(t *testing.T) {
	bin := hooksBinary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	initArgs := []string{"init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out}
	caKeyTemp := func(temps []string) bool {
		return slices.ContainsFunc(temps, func(p string) bool { return strings.HasPrefix(filepath.Base(p), ".ca.key.tmp-") })
	}
	anyTemp := func([]string) bool { return true }
	// kill waits until the run's temp files include what want looks for:
	// they appear one by one, and a busy machine can show the first alone.
	kill := func(want func([]string) bool, args ...string) []string {
		t.Helper()
		r := start(t, slowed(bin, time.Minute, args...))
		temps := untilTemps(t, out, r)
		for deadline := time.Now().Add(30 * time.Second); !want(temps) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			temps = tempsUnder(out)
		}
		if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = r.cmd.Wait()
		if left := tempsUnder(out); len(left) == 0 {
			t.Fatalf("%v: the kill left no temp file", args)
		}
		return temps
	}
	rerun := func() string {
		t.Helper()
		o, code := runBinary(t, binary(t), initArgs...)
		if code != 0 {
			t.Fatalf("re-run: exit %d\n%s", code, o)
		}
		if !strings.Contains(o, ", left by an interrupted run") {
			t.Errorf("the re-run did not say it removed the temp files:\n%s", o)
		}
		crt, err := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		checkComplete(t, out, crt)
		return string(crt)
	}
	temps := kill(caKeyTemp, initArgs...)
	if !caKeyTemp(temps) {
		t.Errorf("no temp copy of the CA key among %v", temps)
	}
	ca := rerun()
	for _, args := range [][]string{initArgs, {"certs", "renew", "all", "--out", out}, {"init", "phase", "bundle", "--out", out}} {
		kill(anyTemp, args...)
		if rerun() != ca {
			t.Fatalf("%v: the CA changed", args)
		}
	}
}

// checkComplete: the CA key matches the CA certificate, every host has
// every file, every certificate chains to the CA and matches its key, the
// archives match SHA256SUMS and hold no temp file, and nothing is left
// anywhere under out: no temp file, no lock file.
func checkComplete(t *testing.T, out string, caPEM []byte) {
	t.Helper()
	ca, err := certs.ParseCert(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, h := range []string{"etcd01", "etcd02", "etcd03"} {
		host := filepath.Join(out, h)
		for _, p := range certs.Leaves() {
			base := filepath.Join(host, "etc/kubernetes/pki", string(p.Files))
			crtPEM, err1 := os.ReadFile(base + ".crt")
			keyPEM, err2 := os.ReadFile(base + ".key")
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: %v %v", base, err1, err2)
			}
			crt, err := certs.ParseCert(crtPEM)
			if err != nil {
				t.Fatal(err)
			}
			key, err := certs.ParseKey(keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if err := certs.KeyMatches(crt, key); err != nil {
				t.Fatalf("%s: %v", base, err)
			}
			if _, err := crt.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatalf("%s: %v", base, err)
			}
		}
		for _, f := range []string{"etc/kubernetes/pki/etcd/ca.crt", "etc/kubernetes/manifests/etcd.yaml", "etc/kubernetes/kubeadmcfg.yaml",
			"etc/systemd/system/kubelet.service.d/kubelet.conf", "etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf"} {
			if _, err := os.Stat(filepath.Join(host, f)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(host + ".tar.gz"); err != nil {
			t.Fatal(err)
		}
		entries, err := archive.ReadTarGz(host + ".tar.gz")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if name := path.Base(e.Header.Name); atomicfile.IsTemp(name) || name == layout.LockFile {
				t.Errorf("%s.tar.gz holds %s", host, e.Header.Name)
			}
		}
	}
	noLeftovers(t, out)
	caStoreConsistent(t, out)
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil || !strings.Contains(string(sums), "etcd03.tar.gz") {
		t.Fatalf("SHA256SUMS: %v", err)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	cmd.Dir = out
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, o)
	}
}

// noLeftovers fails for any temp file or folder, or lock file, under dir.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && (atomicfile.IsTemp(d.Name()) || d.Name() == layout.LockFile) {
			t.Errorf("left behind: %s", path)
		}
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// caStoreConsistent: the CA store holds a CA whose key matches it.
func caStoreConsistent(t *testing.T, out string) {
	t.Helper()
	crt, err1 := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
	key, err2 := os.ReadFile(filepath.Join(out, "pki/etcd/ca.key"))
	if err1 != nil || err2 != nil {
		t.Fatalf("CA store: %v %v", err1, err2)
	}
	if _, err := certs.ParseAuthority(crt, key, time.Now()); err != nil {
		t.Fatalf("CA store: %v", err)
	}
}
