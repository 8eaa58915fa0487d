package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdconf"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/systemdunit"
)

// TestInitRuntimeSystemd: --runtime systemd gives each host etcd's config
// file and the unit (and the binary with --etcd-binary) instead of the
// kubelet settings and the static Pod; the files are those the packages
// render from the recorded spec, and the printed steps start etcd without
// blocking on quorum.
func TestInitRuntimeSystemd(t *testing.T) {
	bin := binary(t)
	etcdBin := os.Getenv("ETCD_BIN")
	if etcdBin == "" {
		t.Skip("ETCD_BIN is not set")
	}
	out := filepath.Join(t.TempDir(), "bundles")
	stdout, stderr, code := etcdtest.Exec(t, bin, "init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256",
		"--runtime", "systemd", "--etcd-binary", etcdBin, "--extra-env", "GOMAXPROCS=2", "--out", out)
	if code != 0 {
		t.Fatalf("init --runtime systemd: exit %d\n%s%s", code, stdout, stderr)
	}
	cl, err := spec.Load(filepath.Join(out, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	if cl.Runtime != spec.RuntimeSystemd || cl.EtcdBinary != etcdBin {
		t.Errorf("recorded runtime %q, etcdBinary %q", cl.Runtime, cl.EtcdBinary)
	}
	wantBin, err := os.ReadFile(etcdBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range cl.Hosts {
		root := filepath.Join(out, h.Name)
		for _, absent := range []string{"etc/kubernetes/manifests", "etc/systemd/system/kubelet.service.d", "var/lib/kubelet", "var/lib/etcd"} {
			if _, err := os.Lstat(filepath.Join(root, absent)); err == nil {
				t.Errorf("%s: %s is there with runtime systemd", h.Name, absent)
			}
		}
		m, err := etcdconf.For(cl, h)
		if err != nil {
			t.Fatal(err)
		}
		conf, _ := etcdconf.Marshal(m)
		unit, err := systemdunit.Unit(cl, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			path string
			want []byte
			mode os.FileMode
		}{
			{layout.EtcdConfig, conf, 0o644},
			{layout.EtcdUnit, unit, 0o644},
			{layout.EtcdBinary, wantBin, 0o755},
			{"/etc/kubernetes/pki/etcd/server.key", nil, 0o600},
		} {
			p := filepath.Join(root, f.path)
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: %v", h.Name, err)
				continue
			}
			if fi.Mode().Perm() != f.mode {
				t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), f.mode)
			}
			if f.want != nil {
				if got, _ := os.ReadFile(p); string(got) != string(f.want) {
					t.Errorf("%s differs from what etcdconf/systemdunit render", p)
				}
			}
		}
		if !strings.Contains(string(unit), "Environment=\"GOMAXPROCS=2\"") {
			t.Errorf("%s: the unit lacks the extra environment:\n%s", h.Name, unit)
		}
		if !strings.Contains(stdout, "systemctl daemon-reload && systemctl enable --now --no-block etcd.service'") {
			t.Errorf("init does not print the non-blocking start:\n%s", stdout)
		}
	}
	if strings.Contains(stdout, "restart kubelet") {
		t.Errorf("init prints kubelet steps with runtime systemd:\n%s", stdout)
	}
	// A run again from the recorded spec changes nothing.
	before := treeHash(t, out)
	if _, stderr, code := etcdtest.Exec(t, bin, "init", "--out", out, "--skip-phases", "bundle"); code != 0 {
		t.Fatalf("second init: exit %d\n%s", code, stderr)
	}
	if after := treeHash(t, out); after != before {
		t.Error("a second init from the recorded spec changed the bundles")
	}
}

// TestRuntimeRefused: a bad runtime, or a setting runtime systemd cannot
// honour, is one line naming the field and the value, exit 2, nothing
// written, from flags and from the spec.
func TestRuntimeRefused(t *testing.T) {
	bin := binary(t)
	inputs := t.TempDir()
	notELF := writeFile(t, filepath.Join(inputs, "etcd.sh"), "#!/bin/sh\n")
	badSpec := writeFile(t, filepath.Join(inputs, "bad.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nruntime: docker\nhosts:\n- name: etcd01\n  address: 10.0.0.1\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"flag", []string{"--hosts", threeHosts, "--runtime", "sytemd"}, `runtime "sytemd": want one of static-pod, systemd, statefulset`},
		{"spec", []string{"--config", badSpec}, `runtime "docker": want one of static-pod, systemd, statefulset`},
		{"empty flag", []string{"--hosts", threeHosts, "--runtime", ""}, `--runtime "": want one of static-pod, systemd, statefulset`},
		{"binary with static Pods", []string{"--hosts", threeHosts, "--etcd-binary", "/usr/bin/true"}, `etcdBinary "/usr/bin/true": only with runtime systemd`},
		{"binary missing", []string{"--hosts", threeHosts, "--runtime", "systemd", "--etcd-binary", "/nonexistent/etcd"}, `etcdBinary "/nonexistent/etcd": stat /nonexistent/etcd: no such file or directory`},
		{"binary a folder", []string{"--hosts", threeHosts, "--runtime", "systemd", "--etcd-binary", inputs}, `etcdBinary "` + inputs + `": not a regular file`},
		{"binary not ELF", []string{"--hosts", threeHosts, "--runtime", "systemd", "--etcd-binary", notELF}, `etcdBinary "` + notELF + `": not an ELF executable`},
		{"data dir outside /var/lib", []string{"--hosts", threeHosts, "--runtime", "systemd", "--data-dir", "/data/etcd"}, `etcd.dataDir "/data/etcd": with runtime systemd it must lie under /var/lib/`},
		{"extra arg the file cannot say", []string{"--hosts", threeHosts, "--runtime", "systemd", "--extra-arg", "client-crl-file=/etc/crl.pem"}, `extra argument client-crl-file=/etc/crl.pem: etcd's config file has no such setting`},
		{"extra arg not a number", []string{"--hosts", threeHosts, "--runtime", "systemd", "--extra-arg", "snapshot-count=lots"}, `extra argument snapshot-count=lots: want a non-negative integer`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, existing := range []bool{false, true} {
				out := filepath.Join(t.TempDir(), "bundles")
				if existing {
					if _, stderr, code := etcdtest.Exec(t, bin, "init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out); code != 0 {
						t.Fatalf("init: %s", stderr)
					}
					// The recorded spec would otherwise take the place of --config.
					if tc.name == "spec" {
						continue
					}
				}
				before := treeHash(t, out)
				args := append([]string{"init", "--encryption-algorithm", "ECDSA-P256", "--out", out}, tc.args...)
				stdout, stderr, code := etcdtest.Exec(t, bin, args...)
				assertOneLine(t, args, stdout, stderr, code, tc.want)
				if code != 2 {
					t.Errorf("%v: exit %d, want 2", args, code)
				}
				if after := treeHash(t, out); after != before {
					t.Errorf("%v changed the output folder", args)
				}
			}
		})
	}
}

// TestCertsSystemdLayout: check-expiration and renew read the systemd
// layout: the host's name and certificate folder from etcd.conf.yml on a
// node, a moved address found in it, and a renewal that keeps the unit
// and the config file in the archives.
func TestCertsSystemdLayout(t *testing.T) {
	bin := binary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	if stdout, stderr, code := etcdtest.Exec(t, bin, "init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--runtime", "systemd", "--cert-dir", "/srv/pki", "--out", out); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code := etcdtest.Exec(t, bin, "certs", "check-expiration", "--root", filepath.Join(out, "etcd02"), "-o", "json")
	if code != 0 {
		t.Fatalf("check-expiration --root: exit %d\n%s", code, stderr)
	}
	var report struct {
		Certificates []struct {
			Host, Path string
			Missing    bool
		}
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Certificates) == 0 {
		t.Fatalf("no certificates listed:\n%s", stdout)
	}
	for _, c := range report.Certificates {
		if c.Host != "etcd02" || c.Missing || !strings.Contains(c.Path, "/srv/pki/") {
			t.Errorf("listed %+v, want etcd02's certificates under /srv/pki, found through etcd.conf.yml", c)
		}
	}
	before, _ := os.ReadFile(filepath.Join(out, "etcd01", "srv/pki/etcd/server.crt"))
	if stdout, stderr, code := etcdtest.Exec(t, bin, "certs", "renew", "all", "--out", out); code != 0 {
		t.Fatalf("renew: exit %d\n%s%s", code, stdout, stderr)
	}
	after, _ := os.ReadFile(filepath.Join(out, "etcd01", "srv/pki/etcd/server.crt"))
	if len(after) == 0 || string(after) == string(before) {
		t.Error("renew did not replace etcd01's server certificate")
	}
	list, err := exec.Command("tar", "-tzf", filepath.Join(out, "etcd01.tar.gz")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"etc/etcd/etcd.conf.yml", "etc/systemd/system/etcd.service", "srv/pki/etcd/server.key"} {
		if !strings.Contains(string(list), want+"\n") {
			t.Errorf("the renewed archive lacks %s", want)
		}
	}
	// A spec that moves etcd02 is refused by what its etcd.conf.yml says.
	if err := os.Remove(filepath.Join(out, "cluster.yaml")); err != nil {
		t.Fatal(err)
	}
	moved := writeFile(t, filepath.Join(t.TempDir(), "moved.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\nruntime: systemd\ncertDir: /srv/pki\nencryptionAlgorithm: ECDSA-P256\nhosts:\n- name: etcd01\n  address: 10.107.88.15\n- name: etcd02\n  address: 10.107.88.26\n- name: etcd03\n  address: 10.107.88.17\n")
	treeBefore := treeHash(t, out)
	args := []string{"certs", "renew", "all", "--out", out, "--config", moved}
	stdout, stderr, code = etcdtest.Exec(t, bin, args...)
	assertOneLine(t, args, stdout, stderr, code, `host "etcd02": address 10.107.88.26 in the spec is not 10.107.88.16 recorded in `+filepath.Join(out, "etcd02", "etc/etcd/etcd.conf.yml"))
	if treeHash(t, out) != treeBefore {
		t.Error("the refused renewal changed the bundles")
	}
}
