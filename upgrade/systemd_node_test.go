package upgrade_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// restart stands in for `systemctl restart etcd.service` on a member that
// Supervise restarts: it ends the member's etcd, which comes back with the
// binary its unit names at that moment.
func restart(t *testing.T, pids, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pids, name+".pid"))
	if err != nil {
		t.Error(err)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Error(err)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Errorf("restart %s: %v", name, err)
	}
}

// supervisedSystemd runs a loopback cluster of three runtime systemd
// members made by the built binary's init (with extra arguments), each
// restarted when its etcd ends as systemd would (Supervise). It returns
// the binary, the cluster and the folder of the members' PID files.
func supervisedSystemd(t *testing.T, extra ...string) (string, *etcdtest.Cluster, string) {
	t.Helper()
	bin := etcdtest.CLIBinary(t)
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(bin), 3, append([]string{"--runtime", "systemd"}, extra...)...)
	c := etcdtest.Run(t, dir)
	return bin, c, c.Supervise(t)
}

// upgradeSummary is the -o json summary of upgrade.
type upgradeSummary struct {
	Version      string `json:"version"`
	SpecRecorded bool   `json:"specRecorded"`
	Hosts        []struct {
		Name, From, To, State string
		Leader                bool
	} `json:"hosts"`
}

func parseSummary(t *testing.T, stdout string) upgradeSummary {
	t.Helper()
	var sum upgradeSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout)
	}
	return sum
}

// upgradedAll checks the -o json summary of a whole upgrade of three
// members from 3.6.8 to 3.6.16, the leader last and the spec recorded, and
// returns the hosts in the order they were upgraded.
func upgradedAll(t *testing.T, stdout string) []string {
	t.Helper()
	sum := parseSummary(t, stdout)
	if len(sum.Hosts) != 3 || !sum.SpecRecorded || sum.Version != "3.6.16" {
		t.Fatalf("summary %+v", sum)
	}
	var order []string
	for i, h := range sum.Hosts {
		order = append(order, h.Name)
		if h.State != "upgraded" || h.From != "3.6.8" || h.To != "3.6.16" || (h.Leader && i != 2) {
			t.Errorf("host %d: %+v; the leader goes last", i, h)
		}
	}
	return order
}

// target reaches the members of c where they serve: an upgrade leaves the
// host folders naming the spec's ports, the members serve on the test's.
func target(t *testing.T, c *etcdtest.Cluster) *etcdops.Target {
	t.Helper()
	tgt, err := etcdops.Resolve(context.Background(), etcdops.Options{Bundle: filepath.Join(c.Dir, "etcd01"), Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	return tgt
}

// checkRuns checks that every member of c runs version and is healthy.
func checkRuns(t *testing.T, c *etcdtest.Cluster, version string) {
	t.Helper()
	ctx := context.Background()
	tgt := target(t, c)
	for _, st := range etcdops.Status(ctx, tgt) {
		if st.Error != "" || st.Version != version {
			t.Errorf("%s: version %q, %s; want %s", st.Endpoint, st.Version, st.Error, version)
		}
	}
	for _, h := range etcdops.Health(ctx, tgt) {
		if !h.Healthy {
			t.Errorf("%s unhealthy: %s", h.Endpoint, h.Error)
		}
	}
}

// followersFirst names the members of c with the leader last.
func followersFirst(t *testing.T, c *etcdtest.Cluster) []string {
	t.Helper()
	var names []string
	var leader string
	for i, st := range etcdops.Status(context.Background(), target(t, c)) {
		if st.Error != "" {
			t.Fatalf("%s: %s", st.Endpoint, st.Error)
		}
		if st.IsLeader {
			leader = c.Members[i].Name
			continue
		}
		names = append(names, c.Members[i].Name)
	}
	if leader == "" {
		t.Fatal("no member leads")
	}
	return append(names, leader)
}

// TestUpgradeSystemdOnNode runs `upgrade --node NAME --root DIR` of
// runtime systemd on each host in turn, followers first, as on the node
// itself (the host folder stands for its /): the run puts the new etcd at
// the unit's ExecStart path under the root and rewrites etcd.conf.yml and
// the unit, prints that etcd.service is to be restarted and waits; the
// test restarts the member, which comes back on the new binary. The spec
// is left alone, as the run says.
func TestUpgradeSystemdOnNode(t *testing.T) {
	etcd := etcdtest.EtcdBinary(t)
	next := etcdtest.NextEtcdBinary(t)
	bin, c, pids := supervisedSystemd(t, "--etcd-binary", etcd)
	dir := c.Dir
	config := filepath.Join(dir, layout.SpecFile)
	specBefore, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	nextBytes, err := os.ReadFile(next)
	if err != nil {
		t.Fatal(err)
	}
	current, err := spec.Load(config)
	if err != nil {
		t.Fatal(err)
	}
	want := *current
	want.Etcd.Version, want.EtcdBinary = "3.6.16-0", next
	for _, name := range followersFirst(t, c) {
		root := filepath.Join(dir, name)
		onNode := layout.OnHost(root, layout.EtcdBinary)
		step := next + " is in place at " + onNode + "; run systemctl restart " + layout.EtcdUnitName + " on " + name
		restarted := false
		stdout, stderr, code := etcdtest.ExecAnswering(t, bin, func(line string) {
			if !strings.Contains(line, step) {
				return
			}
			// The new etcd is in place before the restart is asked for,
			// as an executable.
			got, err := os.ReadFile(onNode)
			if fi, _ := os.Stat(onNode); err != nil || !bytes.Equal(got, nextBytes) || fi.Mode().Perm() != layout.ModeExec {
				t.Errorf("%s before the restart: not etcd 3.6.16 with mode %v: %v", onNode, layout.ModeExec, err)
			}
			restart(t, pids, name)
			restarted = true
		}, "upgrade", "--etcd-version", "3.6.16-0", "--config", config, "--etcd-binary", next,
			"--node", name, "--root", root, "--wait", "1m", "--timeout", "5s", "-o", "json")
		t.Logf("upgrade --node %s --root:\n%s", name, stderr)
		if code != 0 {
			t.Fatalf("upgrade --node %s --root: exit %d\n%s\n%s", name, code, stdout, stderr)
		}
		sum := parseSummary(t, stdout)
		if !restarted {
			t.Fatalf("upgrade --node %s --root did not print %q", name, step)
		}
		if len(sum.Hosts) != 1 || sum.Hosts[0].Name != name || sum.Hosts[0].State != "upgraded" || sum.Hosts[0].From != "3.6.8" || sum.Hosts[0].To != "3.6.16" || sum.SpecRecorded {
			t.Errorf("upgrade --node %s --root: summary %+v", name, sum)
		}
		for _, w := range []string{
			name + ": runs 3.6.16 after ",
			"note: --root leaves the spec alone; once every node runs 3.6.16, set etcd.version to 3.6.16-0 in the spec you keep",
		} {
			if !strings.Contains(stderr, w) {
				t.Errorf("upgrade --node %s --root does not say %q", name, w)
			}
		}
		// etcd.conf.yml and the unit on the node are the spec's for the
		// new release.
		h, _ := want.Host(name)
		conf, err := phases.EtcdConfigFile(&want, h)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(layout.OnHost(root, layout.EtcdConfig)); err != nil || !bytes.Equal(got, conf) {
			t.Errorf("%s's %s is not the spec's: %v\n%s", name, layout.EtcdConfig, err, got)
		}
	}
	checkRuns(t, c, "3.6.16")
	if b, _ := os.ReadFile(config); !bytes.Equal(b, specBefore) {
		t.Errorf("a --root upgrade changed the spec:\n%s", b)
	}
	// --out's default, in the working folder, is no business of a node run.
	if _, err := os.Stat(layout.DefaultOut); err == nil {
		t.Errorf("a --root upgrade made ./%s", layout.DefaultOut)
	}

}

// installLine is the step an upgrade of runtime systemd prints for a
// host when the bundles carry no etcd binary: the release to install at
// the unit's ExecStart path, then the restart.
var installLine = regexp.MustCompile(`\[upgrade\] (etcd0\d): install etcd v3\.6\.16 \(github\.com/etcd-io/etcd/releases\) at ` +
	regexp.QuoteMeta(layout.EtcdBinary) + ` on (etcd0\d), then ssh root@(\S+) 'systemctl restart ` +
	regexp.QuoteMeta(layout.EtcdUnitName) + `' \(or use --exec\); waiting up to 1m0s$`)

// TestUpgradeSystemdNoBinary upgrades a cluster of runtime systemd whose
// bundles carry no etcd binary (init without --etcd-binary; the members
// run the release installed on the host, here ETCD_BIN) without
// --etcd-binary and without --exec: a dry run plans only etcd.conf.yml,
// and each host's turn names the release to install and the restart to
// run, and waits. The test does what the line says: it installs 3.6.16
// (ETCD_NEXT_BIN) at the unit's path in the host folder with one rename
// and restarts the member. Followers go first; the spec then records
// 3.6.16 and still no etcd binary.
func TestUpgradeSystemdNoBinary(t *testing.T) {
	next := etcdtest.NextEtcdBinary(t)
	bin, c, pids := supervisedSystemd(t)
	dir := c.Dir
	base := []string{"upgrade", "--etcd-version", "3.6.16-0", "--out", dir, "--timeout", "5s"}
	for _, m := range c.Members {
		if _, err := os.Stat(layout.OnHost(m.Bundle, layout.EtcdBinary)); err == nil {
			t.Fatalf("%s's folder carries an etcd binary", m.Name)
		}
	}

	before := etcdtest.Tree(t, dir)
	_, stderr, code := etcdtest.Exec(t, bin, append(base, "--dry-run")...)
	if code != 0 || strings.Count(stderr, layout.EtcdConfig+" for 3.6.16 and wait for it") != 3 || strings.Contains(stderr, layout.EtcdBinary) {
		t.Errorf("upgrade --dry-run: exit %d; want the plan of 3 rewrites of %s alone\n%s", code, layout.EtcdConfig, stderr)
	}
	if d := etcdtest.DiffTree(before, etcdtest.Tree(t, dir)); len(d) > 0 {
		t.Errorf("a dry run changed %v", d)
	}

	current, err := spec.Load(filepath.Join(dir, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{}
	for _, h := range current.Hosts {
		addr[h.Name] = h.Address
	}
	var turns []string
	stdout, stderr, code := etcdtest.ExecAnswering(t, bin, func(line string) {
		sub := installLine.FindStringSubmatch(line)
		if sub == nil {
			return
		}
		name := sub[1]
		if sub[2] != name || sub[3] != addr[name] {
			t.Errorf("the turn of %s names %s at %s: %s", name, sub[2], sub[3], line)
		}
		turns = append(turns, name)
		// The rewrite put no binary in the host folder: the operator
		// installs the release.
		path := layout.OnHost(filepath.Join(dir, name), layout.EtcdBinary)
		if _, err := os.Stat(path); err == nil {
			t.Errorf("the upgrade put a binary at %s", path)
		}
		b, err := os.ReadFile(next)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(path), 0o755)
		}
		if err == nil {
			err = os.WriteFile(path+".new", b, 0o755)
		}
		if err == nil {
			err = os.Rename(path+".new", path)
		}
		if err != nil {
			t.Error(err)
			return
		}
		restart(t, pids, name)
	}, append(base, "--wait", "1m", "-o", "json")...)
	t.Logf("upgrade without --etcd-binary:\n%s", stderr)
	if code != 0 {
		t.Fatalf("upgrade without --etcd-binary: exit %d\n%s\n%s", code, stdout, stderr)
	}
	order := upgradedAll(t, stdout)
	if !slices.Equal(turns, order) {
		t.Errorf("install steps printed for %v, hosts upgraded in the order %v", turns, order)
	}
	checkRuns(t, c, "3.6.16")
	recorded, err := spec.Load(filepath.Join(dir, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	if recorded.Etcd.Version != "3.6.16-0" || recorded.EtcdBinary != "" {
		t.Errorf("recorded etcd.version %q, etcdBinary %q; want 3.6.16-0 and none", recorded.Etcd.Version, recorded.EtcdBinary)
	}
	// Each host folder: etcd.conf.yml the spec's, kubeadmcfg.yaml
	// rewritten, the binary the test installed, and nothing else changed;
	// the archives packed again with the new etcd.conf.yml.
	after := etcdtest.Tree(t, dir)
	for _, name := range order {
		h, _ := recorded.Host(name)
		conf, err := phases.EtcdConfigFile(recorded, h)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(layout.OnHost(filepath.Join(dir, name), layout.EtcdConfig)); err != nil || !bytes.Equal(got, conf) {
			t.Errorf("%s's %s is not the spec's: %v", name, layout.EtcdConfig, err)
		}
		want := []string{"etc/etcd/etcd.conf.yml", "etc/kubernetes/kubeadmcfg.yaml", "usr", "usr/local", "usr/local/bin", "usr/local/bin/etcd"}
		for i := range want {
			want[i] = name + "/" + want[i]
		}
		if d := etcdtest.DiffTree(before, after, name); !slices.Equal(d, want) {
			t.Errorf("%s: changed %v, want %v", name, d, want)
		}
		archive := name + ".tar.gz"
		if d := etcdtest.DiffTree(before, after, archive); len(d) != 1 {
			t.Errorf("%s was not packed again", archive)
		}
		if got := archiveFile(t, filepath.Join(dir, archive), layout.EtcdConfig); !bytes.Equal(got, conf) {
			t.Errorf("%s holds another %s:\n%s", archive, layout.EtcdConfig, got)
		}
	}
}

// archiveFile is the content of host path p in a host archive, nil when
// it holds no such file.
func archiveFile(t *testing.T, file, p string) []byte {
	t.Helper()
	entries, err := archive.ReadTarGz(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Header.Typeflag == tar.TypeReg && "/"+strings.TrimPrefix(e.Header.Name, "./") == p {
			return e.Data
		}
	}
	return nil
}
