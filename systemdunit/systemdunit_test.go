package systemdunit

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/testtool"

	"github.com/google/go-cmp/cmp"

	"github.com/etcd-staticpod/etcd-staticpod/etcdconf"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const testdata = "../testdata/systemd"

// MaxExposure is the highest overall exposure systemd's offline security
// review may give the unit.
const MaxExposure = 1.5

func guideCluster(t *testing.T, mutate func(*spec.Cluster)) *spec.Cluster {
	t.Helper()
	c := &spec.Cluster{Hosts: []spec.Host{
		{Name: "etcd01", Address: "10.107.88.15"},
		{Name: "etcd02", Address: "10.107.88.16"},
		{Name: "etcd03", Address: "10.107.88.17"},
	}}
	if mutate != nil {
		mutate(c)
	}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatalf("guide cluster: %v", err)
	}
	return c
}

func unit(t *testing.T, c *spec.Cluster, h spec.Host) []byte {
	t.Helper()
	m, err := etcdconf.For(c, h)
	if err != nil {
		t.Fatal(err)
	}
	u, err := Unit(c, m)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestGolden(t *testing.T) {
	c := guideCluster(t, func(c *spec.Cluster) {
		c.Etcd.ExtraEnv = []spec.Arg{{Name: "GOMAXPROCS", Value: "2"}, {Name: "ODD", Value: `a "quoted" 100% \ value`}}
	})
	for _, h := range c.Hosts {
		got := unit(t, c, h)
		p := filepath.Join(testdata, h.Name+".etcd.service")
		if *update {
			if err := os.WriteFile(p, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read golden file (go test -update writes it): %v", err)
		}
		if d := cmp.Diff(string(want), string(got)); d != "" {
			t.Errorf("%s differs from the golden file (-want +got):\n%s", p, d)
		}
	}
}

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	return testtool.SystemdAnalyze(t)
}

// root writes the unit and a stand-in binary into a folder laid out as the
// host's root, for systemd-analyze --root.
func root(t *testing.T, unitText []byte) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{layout.EtcdUnit, unitText, 0o644},
		{layout.EtcdBinary, []byte("#!/bin/sh\n"), 0o755},
	} {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	// verify --root wants the system's own units (sysinit.target, ...)
	// under the root too.
	if err := os.MkdirAll(filepath.Join(dir, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(dir, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy the system's units: %v\n%s", err, out)
	}
	return dir
}

// TestVerify runs systemd-analyze verify on every host's unit: it parses
// each setting and checks that ExecStart's binary exists.
func TestVerify(t *testing.T) {
	sa := systemdAnalyze(t)
	c := guideCluster(t, func(c *spec.Cluster) {
		c.Etcd.ExtraEnv = []spec.Arg{{Name: "GOMAXPROCS", Value: "2"}}
	})
	for _, h := range c.Hosts {
		dir := root(t, unit(t, c, h))
		out, err := exec.Command(sa, "verify", "--root="+dir, filepath.Join(dir, layout.EtcdUnit)).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("%s: systemd-analyze verify: %v\n%s", h.Name, err, out)
		}
	}
	// verify does fail: the same unit without its binary.
	dir := root(t, unit(t, c, c.Hosts[0]))
	if err := os.Remove(filepath.Join(dir, layout.EtcdBinary)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", "--root="+dir, filepath.Join(dir, layout.EtcdUnit)).CombinedOutput(); err == nil {
		t.Errorf("systemd-analyze verify took a unit whose binary is missing:\n%s", out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) `)

// Exposure runs systemd's offline security review on a unit file and
// returns its overall exposure and the whole report.
func exposure(t *testing.T, sa, unitFile string) (float64, string) {
	t.Helper()
	out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager", unitFile).CombinedOutput()
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security %s: %v\n%s", unitFile, err, out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v, string(out)
}

// TestSecurityExposure asserts the unit's exposure (at most 1.5) and that
// the review does tell units apart: the typical hand-written unit in
// testdata (etcd as root, no hardening) rates far above it.
func TestSecurityExposure(t *testing.T) {
	sa := systemdAnalyze(t)
	c := guideCluster(t, nil)
	for _, h := range c.Hosts {
		dir := t.TempDir()
		p := filepath.Join(dir, layout.EtcdUnitName)
		if err := os.WriteFile(p, unit(t, c, h), 0o644); err != nil {
			t.Fatal(err)
		}
		v, report := exposure(t, sa, p)
		t.Logf("%s: overall exposure %.1f", h.Name, v)
		if v > MaxExposure {
			t.Errorf("%s: exposure %.1f above %.1f:\n%s", h.Name, v, MaxExposure, report)
		}
	}
	typical, _ := exposure(t, sa, filepath.Join(testdata, "typical-etcd.service"))
	t.Logf("typical hand-written unit: overall exposure %.1f", typical)
	if typical < 8 {
		t.Errorf("the typical hand-written unit rates %.1f; the review no longer tells it apart", typical)
	}
}

func TestStateDirs(t *testing.T) {
	for _, tc := range []struct {
		dataDir string
		want    string
		err     string
	}{
		{"/var/lib/etcd", "etcd", ""},
		{"/var/lib/etcd/member-data", "etcd/member-data", ""},
		{"/data/etcd", "", "must lie under /var/lib/"},
		{"/var/lib", "", "must lie under /var/lib/"},
	} {
		got, err := StateDirs(etcdconf.Config{DataDir: tc.dataDir})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), strconv.Quote(tc.dataDir)) {
				t.Errorf("%s: error %v, want %q naming it", tc.dataDir, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: %v %v, want [%s]", tc.dataDir, got, err, tc.want)
		}
	}
}
