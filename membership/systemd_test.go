package membership_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// TestAddSystemd scales a cluster of runtime systemd out and in through the
// built binary: every member runs the etcd its bundle carries with
// --config-file, as its unit says, and the new host joins from the
// etcd.conf.yml `member add` wrote for it.
func TestAddSystemd(t *testing.T) {
	bin := etcdtest.CLIBinary(t)
	etcd := etcdtest.EtcdBinary(t)
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(bin), 3, "--runtime", "systemd", "--etcd-binary", etcd)
	c := etcdtest.Run(t, dir)
	for _, m := range c.Members {
		if !m.Systemd {
			t.Fatalf("%s does not run from etcd.conf.yml", m.Name)
		}
	}
	addr := etcdtest.Addr(97)
	out := []string{"--out", dir, "--timeout", requestTimeout.String()}
	args := func(cmd string, rest ...string) []string {
		return append(append([]string{"member", cmd}, out...), rest...)
	}
	wantRefusal(t, bin, dir, 2, `--etcd-binary "`+dir+`/missing": `, args("add", "etcd04="+addr, "--etcd-binary", dir+"/missing")...)

	stdout, stderr, code := etcdtest.Exec(t, bin, args("add", "etcd04="+addr, "--no-promote", "-o", "json")...)
	t.Logf("member add:\n%s", stderr)
	if code != 0 {
		t.Fatalf("member add: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var doc struct {
		Member struct {
			IsLearner bool `json:"isLearner"`
		} `json:"member"`
		Bundle string `json:"bundle"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || !doc.Member.IsLearner || doc.Bundle != filepath.Join(dir, "etcd04") {
		t.Errorf("member add -o json: %v\n%s", err, stdout)
	}
	start := "systemctl daemon-reload && systemctl enable --now --no-block " + layout.EtcdUnitName
	if !strings.Contains(stderr, start) || strings.Contains(stderr, "kubelet") || !strings.Contains(stderr, "initial-cluster-state: existing") {
		t.Errorf("member add does not print the systemd steps:\n%s", stderr)
	}

	// Made without --monitoring: member add creates no OUT/monitoring.
	if _, err := os.Stat(filepath.Join(dir, layout.MonitoringDir)); !os.IsNotExist(err) || strings.Contains(stderr, "[monitoring]") {
		t.Errorf("member add made %s (%v)", layout.MonitoringDir, err)
	}

	// The new host's bundle: the systemd layout with etcd, no static Pod.
	host := filepath.Join(dir, "etcd04")
	for _, p := range []string{layout.EtcdManifest, layout.KubeletDropIn} {
		if _, err := os.Stat(layout.OnHost(host, p)); err == nil {
			t.Errorf("the systemd bundle holds %s", p)
		}
	}
	for _, p := range []string{layout.EtcdUnit, "/etc/kubernetes/pki/etcd/server.crt", "/etc/kubernetes/pki/etcd/peer.key"} {
		if _, err := os.Stat(layout.OnHost(host, p)); err != nil {
			t.Errorf("the new bundle: %v", err)
		}
	}
	want, _ := os.ReadFile(etcd)
	if got, err := os.ReadFile(layout.OnHost(host, layout.EtcdBinary)); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the new bundle does not carry the etcd binary at %s: %v", layout.EtcdBinary, err)
	}
	var cfg struct {
		State   string `json:"initial-cluster-state"`
		Initial string `json:"initial-cluster"`
	}
	b, err := os.ReadFile(layout.OnHost(host, layout.EtcdConfig))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.State != "existing" || strings.Count(cfg.Initial, "=https://") != 4 || !strings.HasSuffix(cfg.Initial, ",etcd04=https://"+addr+":2380") {
		t.Errorf("etcd.conf.yml: initial-cluster-state %q, initial-cluster %q", cfg.State, cfg.Initial)
	}
	if b, err := os.ReadFile(filepath.Join(dir, layout.SpecFile)); err != nil || !bytes.Contains(b, []byte("etcdBinary: "+etcd)) {
		t.Errorf("the spec does not keep etcdBinary: %v\n%s", err, b)
	}

	// It starts from that file, as its unit would, and joins.
	joiner := c.Join(t, "etcd04")
	if !joiner.Systemd {
		t.Fatal("etcd04 does not run from etcd.conf.yml")
	}
	stdout, stderr, code = etcdtest.Exec(t, bin, args("promote", "etcd04", "--wait", "2m")...)
	if code != 0 {
		t.Fatalf("member promote: exit %d\n%s\n%s", code, stdout, stderr)
	}
	ms := members(t, dir)
	if len(ms) != 4 || slices.ContainsFunc(ms, func(m etcdops.Member) bool { return m.IsLearner || !m.Started() }) {
		t.Fatalf("members %+v", ms)
	}
	// Day 2 finds the cluster through the new host's folder.
	stdout, stderr, code = etcdtest.Exec(t, bin, "health", "--bundle", host, "-o", "json")
	if code != 0 || strings.Count(stdout, `"healthy": true`) != 4 {
		t.Errorf("health through etcd04's folder: exit %d\n%s\n%s", code, stdout, stderr)
	}

	stdout, stderr, code = etcdtest.Exec(t, bin, args("remove", "etcd04")...)
	if code != 0 {
		t.Fatalf("member remove: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, w := range []string{"systemctl disable --now " + layout.EtcdUnitName, "rm -rf /var/lib/private/etcd /var/lib/etcd"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("member remove does not say %q:\n%s", w, stdout)
		}
	}
	if len(members(t, dir)) != 3 {
		t.Errorf("members after remove: %+v", members(t, dir))
	}
}
