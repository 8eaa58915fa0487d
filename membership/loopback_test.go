package membership_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/membership"
	"github.com/etcd-staticpod/etcd-staticpod/monitoring"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/testtool"
)

// New hosts join on port 2380 of their own loopback address, since the
// member list is told that URL before the member runs; these addresses
// are in this package's range, above the first hosts'.
var (
	addr4 = etcdtest.Addr(94)
	addr5 = etcdtest.Addr(95)
)

// requestTimeout keeps a check of a stopped member short.
const requestTimeout = 2 * time.Second

func opts(dir string) membership.Options {
	return membership.Options{Out: dir, Connect: etcdops.Options{Timeout: requestTimeout}}
}

// wantRefusal runs the command and wants the exit status and one error
// line containing want, with nothing under dir changed.
func wantRefusal(t *testing.T, bin, dir string, code int, want string, args ...string) {
	t.Helper()
	before := etcdtest.Tree(t, dir)
	_, stderr, got := etcdtest.Exec(t, bin, args...)
	if got != code {
		t.Errorf("%q: exit %d, want %d; stderr: %s", args, got, code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "error: ") || !strings.Contains(last, want) {
		t.Errorf("%q: stderr %q, want an error line containing %q", args, stderr, want)
	}
	if strings.Contains(stderr, "PRIVATE KEY") {
		t.Errorf("%q: key material on stderr", args)
	}
	if d := etcdtest.DiffTree(before, etcdtest.Tree(t, dir)); len(d) > 0 {
		t.Errorf("%q changed %v", args, d)
	}
}

// urlHost matches the host:port of each URL in a flag value.
var urlHost = regexp.MustCompile(`(https?://)([^/,\s"']+)`)

// startJoiner runs the new host's etcd from its manifest, as kubelet
// would, on loopback: the other members' URLs point at the ports etcdtest
// gave them, the new member keeps its own address and ports (the member
// list has its peer URL), and loopback listeners get free ports. The
// process is killed when the test ends.
func startJoiner(t *testing.T, c *etcdtest.Cluster, dir, name string) *exec.Cmd {
	t.Helper()
	m, err := etcdops.ReadManifest(layout.OnHost(filepath.Join(dir, name), layout.EtcdManifest))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, mem := range c.Members {
		for spec, real := range map[int]string{2379: mem.ClientURL, 2380: mem.PeerURL} {
			u, err := url.Parse(real)
			if err != nil {
				t.Fatal(err)
			}
			ports[net.JoinHostPort(u.Hostname(), strconv.Itoa(spec))] = u.Host
		}
	}
	var listeners []net.Listener
	mapURL := func(v string) string {
		return urlHost.ReplaceAllStringFunc(v, func(s string) string {
			sub := urlHost.FindStringSubmatch(s)
			if to, ok := ports[sub[2]]; ok {
				return sub[1] + to
			}
			if h, _, err := net.SplitHostPort(sub[2]); err == nil && h == "127.0.0.1" {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				listeners = append(listeners, l)
				ports[sub[2]] = l.Addr().String()
				return sub[1] + l.Addr().String()
			}
			return s
		})
	}
	var args []string
	for _, a := range m.Command[1:] {
		flag, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case !ok:
		case flag == "data-dir":
			value = t.TempDir()
		case strings.HasPrefix(value, "/"):
			value = filepath.Join(dir, name, value)
		default:
			value = mapURL(value)
		}
		if ok {
			a = "--" + flag + "=" + value
		}
		args = append(args, a)
	}
	for _, l := range listeners {
		l.Close()
	}
	logFile := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(etcdtest.EtcdBinary(t), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			lines := strings.Split(string(b), "\n")
			t.Logf("log of %s (last lines):\n%s", name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	return cmd
}

func members(t *testing.T, dir string) []etcdops.Member {
	t.Helper()
	tgt, err := etcdops.Resolve(context.Background(), etcdops.Options{Bundle: filepath.Join(dir, "etcd01"), Timeout: requestTimeout})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := etcdops.Members(context.Background(), tgt)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func loadSpec(t *testing.T, dir string) *spec.Cluster {
	t.Helper()
	c, err := spec.Load(filepath.Join(dir, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func hostNames(c *spec.Cluster) []string {
	var out []string
	for _, h := range c.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// endpointsIn returns the client URLs that kubeadm-config.yaml lists.
func endpointsIn(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, layout.KubeadmConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`https://[0-9.]+:2379`).FindAllString(string(b), -1)
}

// TestScaleOutAndIn grows a loopback cluster of three to four and back,
// with the refusals on the way, through the package and the command.
func TestScaleOutAndIn(t *testing.T) {
	bin := etcdtest.CLIBinary(t)
	// With OUT/monitoring, whose prometheus.yml follows the members.
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(bin), 3, "--monitoring")
	c := etcdtest.Run(t, dir)
	ctx := context.Background()
	// Members started by a step outlive it.
	whole := t
	out := []string{"--out", dir, "--timeout", requestTimeout.String()}
	args := func(cmd string, rest ...string) []string {
		return append(append([]string{"member", cmd}, out...), rest...)
	}

	t.Run("refusals", func(t *testing.T) {
		wantRefusal(t, bin, dir, 2, `host "etcd02" is already in the spec`, args("add", "etcd02=127.0.0.50")...)
		wantRefusal(t, bin, dir, 2, `address `+etcdtest.Addr(12)+` is already host "etcd02"'s`, args("add", "etcd09="+etcdtest.Addr(12))...)
		wantRefusal(t, bin, dir, 2, `is not a DNS-1123 label`, args("add", "Etcd09=127.0.0.59")...)
		wantRefusal(t, bin, dir, 2, `is not an IPv4 or IPv6 address`, args("add", "etcd09=not-an-ip")...)
		wantRefusal(t, bin, dir, 2, `--wait "soon"`, args("add", "--wait", "soon", "etcd09=127.0.0.59")...)
		// Flags may follow the argument, aliases too.
		wantRefusal(t, bin, dir, 2, `--wait "soon"`, append(args("add", "etcd09=127.0.0.59"), "--voting", "--wait", "soon")...)
		wantRefusal(t, bin, dir, 2, `--output "xml"`, append(args("remove", "etcd02"), "-o", "xml")...)
		wantRefusal(t, bin, dir, 2, `--no-promote: a member added with --voting`, append(args("add", "--voting", "etcd09=127.0.0.59"), "--no-promote")...)
		wantRefusal(t, bin, dir, 2, `flag provided but not defined: -bogus`, append(args("add", "etcd09=127.0.0.59"), "--bogus")...)
		wantRefusal(t, bin, dir, 2, `unexpected argument "etcd08": etcd-staticpod member remove takes one NAME`, args("remove", "etcd09", "etcd08")...)
		wantRefusal(t, bin, dir, 2, `NAME "": must not be empty`, args("remove", "")...)
		wantRefusal(t, bin, dir, 2, `no such host in the spec`, args("remove", "etcd09")...)
		wantRefusal(t, bin, dir, 2, `2 voting members would remain, fewer than 3`, args("remove", "etcd02")...)
		wantRefusal(t, bin, dir, 2, `no cluster.yaml there`, "member", "add", "--out", t.TempDir(), "etcd09=127.0.0.59")

		// A spec that lacks a member: the cluster has etcd03, the spec not.
		partial := loadSpec(t, dir)
		partial.Hosts = partial.Hosts[:2]
		b, err := spec.Marshal(partial)
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "partial.yaml")
		if err := os.WriteFile(cfg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, bin, dir, 2, "disagree: member etcd03 (ID", args("add", "--config", cfg, "etcd09=127.0.0.59")...)

		// A member down: the cluster is not healthy, exit 1.
		c.Stop(t, "etcd03")
		wantRefusal(t, bin, dir, 1, "the cluster is not healthy", args("add", "etcd09=127.0.0.59")...)
		// The remaining two are a quorum of two, but two are too few.
		wantRefusal(t, bin, dir, 2, "fewer than 3", args("remove", "etcd02")...)
		c.Start(t, "etcd03")
	})
	if t.Failed() {
		return
	}

	t.Run("add", func(t *testing.T) {
		before := etcdtest.Tree(t, dir)
		type result struct {
			res *membership.AddResult
			err error
		}
		done := make(chan result, 1)
		var log syncLog
		o := opts(dir)
		o.Log = &log
		go func() {
			res, err := membership.Add(ctx, membership.AddOptions{Options: o, Host: spec.Host{Name: "etcd04", Address: addr4}, Wait: time.Minute})
			done <- result{res, err}
		}()
		// Start the member as soon as the cluster lists it.
		started := false
		var r result
		for wait := time.After(time.Minute); r.res == nil && r.err == nil; {
			select {
			case r = <-done:
				continue
			case <-wait:
				t.Fatalf("add did not return within a minute; log:\n%s", log.String())
			case <-time.After(100 * time.Millisecond):
			}
			if started {
				continue
			}
			for _, m := range members(t, dir) {
				if !m.Started() && m.IsLearner && slices.Contains(m.PeerURLs, "https://"+addr4+":2380") {
					startJoiner(whole, c, dir, "etcd04")
					started = true
				}
			}
		}
		t.Logf("add:\n%s", log.String())
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !started || !r.res.Promoted || r.res.Resumed || r.res.Member.IsLearner || r.res.Member.Name != "etcd04" {
			t.Errorf("result %+v", r.res)
		}
		ms := members(t, dir)
		if len(ms) != 4 {
			t.Fatalf("members %+v", ms)
		}
		for _, m := range ms {
			if !m.Started() || m.IsLearner {
				t.Errorf("member %+v is not a started voting member", m)
			}
		}
		// The new member agrees that it votes (it applied its promotion).
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			st := etcdops.EndpointStatusOf(ctx, mustResolve(t, dir, "etcd01"), "https://"+addr4+":2379")
			if st.Error == "" && !st.IsLearner {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcd04's own status after promotion: %+v", st)
			}
		}
		c := loadSpec(t, dir)
		if got := hostNames(c); !slices.Equal(got, []string{"etcd01", "etcd02", "etcd03", "etcd04"}) || c.Etcd.ClusterState != "existing" {
			t.Errorf("spec hosts %v, initialClusterState %q", got, c.Etcd.ClusterState)
		}
		if eps := endpointsIn(t, dir); len(eps) != 4 || eps[3] != "https://"+addr4+":2379" {
			t.Errorf("kubeadm-config.yaml endpoints %v", eps)
		}
		mf, err := etcdops.ReadManifest(layout.OnHost(filepath.Join(dir, "etcd04"), layout.EtcdManifest))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := mf.Flag("initial-cluster-state"); v != "existing" {
			t.Errorf("new manifest: --initial-cluster-state=%s", v)
		}
		if v, _ := mf.Flag("initial-cluster"); strings.Count(v, "=https://") != 4 || !strings.HasSuffix(v, "etcd04=https://"+addr4+":2380") {
			t.Errorf("new manifest: --initial-cluster=%s", v)
		}
		// Only the new host's files, the spec, kubeadm-config.yaml,
		// SHA256SUMS and prometheus.yml changed.
		after := etcdtest.Tree(t, dir)
		promConfig := path.Join(layout.MonitoringDir, layout.MonitoringConfig)
		for _, p := range etcdtest.DiffTree(before, after) {
			if !strings.HasPrefix(p, "etcd04") && !slices.Contains([]string{layout.SpecFile, layout.KubeadmConfigFile, "SHA256SUMS", promConfig}, p) {
				t.Errorf("add changed %s", p)
			}
		}
		if got := scrapeTargets(t, dir); !slices.Equal(got, []string{"etcd01=" + etcdtest.Addr(11) + ":2379", "etcd02=" + etcdtest.Addr(12) + ":2379", "etcd03=" + etcdtest.Addr(13) + ":2379", "etcd04=" + addr4 + ":2379"}) {
			t.Errorf("prometheus.yml targets after add: %v", got)
		}
		if !strings.Contains(log.String(), "[monitoring] Wrote "+filepath.Join(dir, promConfig)+": job \"etcd\" scrapes 4 members (etcd01, etcd02, etcd03, etcd04)") {
			t.Errorf("add does not say it rewrote prometheus.yml:\n%s", log.String())
		}
		sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"etcd01.tar.gz", "etcd04.tar.gz", "control-plane.tar.gz"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if !strings.Contains(string(sums), hex.EncodeToString(sum[:])+"  "+name+"\n") {
				t.Errorf("SHA256SUMS does not list %s with its sum:\n%s", name, sums)
			}
		}
		if !strings.Contains(log.String(), "scp "+dir+"/etcd04.tar.gz root@"+addr4+":/tmp/") {
			t.Errorf("no copy command in the output:\n%s", log.String())
		}

		// Promoting a voting member is success with nothing to do.
		stdout, stderr, code := etcdtest.Exec(t, bin, append(args("promote", "etcd04"), "-o", "json")...)
		if code != 0 || !strings.Contains(stdout, `"alreadyVoting": true`) {
			t.Errorf("promote of a voting member: exit %d\n%s\n%s", code, stdout, stderr)
		}
		wantRefusal(t, bin, dir, 2, "is already in the cluster's member list", args("add", "--config", cfgWithout(t, dir, "etcd04"), "etcd04=127.0.0.59")...)
		wantRefusal(t, bin, dir, 2, "address "+addr4+" is already used by member etcd04", args("add", "--config", cfgWithout(t, dir, "etcd04"), "etcd09="+addr4)...)
	})
	if t.Failed() {
		return
	}

	t.Run("resume and remove a learner", func(t *testing.T) {
		// An earlier run added the member and stopped before recording it.
		tgt, err := etcdops.Resolve(ctx, etcdops.Options{Bundle: filepath.Join(dir, "etcd01"), Timeout: requestTimeout})
		if err != nil {
			t.Fatal(err)
		}
		// etcd wants five seconds of contact with the new etcd04 first.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
			_, _, err := etcdops.AddMember(ctx, tgt, []string{"https://" + addr5 + ":2380"}, false)
			if err == nil {
				break
			}
			if !etcdops.IsUnhealthy(err) || time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
		wantRefusal(t, bin, dir, 2, "not started) is not in the spec", args("add", "etcd06=127.0.0.96")...)
		stdout, stderr, code := etcdtest.Exec(t, bin, args("add", "--no-promote", "-o", "json", "etcd05="+addr5)...)
		if code != 0 || !strings.Contains(stdout, `"resumed": true`) || !strings.Contains(stdout, `"isLearner": true`) || !strings.Contains(stderr, "added by an earlier run") {
			t.Fatalf("resumed add: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if got := hostNames(loadSpec(t, dir)); len(got) != 5 {
			t.Errorf("spec hosts %v", got)
		}
		// Promotion waits for a member that never starts, within its bound.
		_, stderr, code = etcdtest.Exec(t, bin, args("promote", "--wait", "1s", "etcd05")...)
		if code != 1 || !strings.Contains(stderr, "not promoted after") || !strings.Contains(stderr, "not started") {
			t.Errorf("promote of a member that never starts: exit %d\n%s", code, stderr)
		}
		// A learner goes without quorum checks, found by its address.
		stdout, stderr, code = etcdtest.Exec(t, bin, args("remove", "etcd05")...)
		if code != 0 || !strings.Contains(stdout, "rm /etc/kubernetes/manifests/etcd.yaml") {
			t.Fatalf("remove the learner: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if got := hostNames(loadSpec(t, dir)); len(got) != 4 {
			t.Errorf("spec hosts %v", got)
		}
		if len(members(t, dir)) != 4 {
			t.Errorf("members %+v", members(t, dir))
		}
	})
	if t.Failed() {
		return
	}

	t.Run("voting", func(t *testing.T) {
		// A voting member counts at once; the command does not wait.
		stdout, stderr, code := etcdtest.Exec(t, bin, args("add", "etcd05="+addr5, "--voting", "-o", "json")...)
		if code != 0 || !strings.Contains(stdout, `"promoted": false`) {
			t.Fatalf("add --voting: exit %d\n%s\n%s", code, stdout, stderr)
		}
		joiner := startJoiner(whole, c, dir, "etcd05")
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			ms := members(t, dir)
			i := slices.IndexFunc(ms, func(m etcdops.Member) bool { return m.Name == "etcd05" })
			if i >= 0 && !ms[i].IsLearner {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcd05 does not start: %+v", ms)
			}
		}
		stdout, stderr, code = etcdtest.Exec(t, bin, args("remove", "etcd05", "-o", "json")...)
		if code != 0 || !strings.Contains(stdout, `"wasMember": true`) {
			t.Fatalf("remove etcd05: exit %d\n%s\n%s", code, stdout, stderr)
		}
		_ = joiner.Process.Kill()
		if got := hostNames(loadSpec(t, dir)); len(got) != 4 || len(members(t, dir)) != 4 {
			t.Errorf("spec hosts %v, members %+v", got, members(t, dir))
		}
	})
	if t.Failed() {
		return
	}

	t.Run("remove the leader", func(t *testing.T) {
		tgt, err := etcdops.Resolve(ctx, etcdops.Options{Bundle: filepath.Join(dir, "etcd01"), Timeout: requestTimeout})
		if err != nil {
			t.Fatal(err)
		}
		leader, err := etcdops.Leader(ctx, tgt)
		if err != nil {
			t.Fatal(err)
		}
		var name string
		for _, m := range tgt.Members {
			if m.ID == leader.MemberID {
				name = m.Name
			}
		}
		var log bytes.Buffer
		o := opts(dir)
		o.Log = &log
		res, err := membership.Remove(ctx, membership.RemoveOptions{Options: o, Name: name})
		t.Logf("remove %s:\n%s", name, log.String())
		if err != nil {
			t.Fatal(err)
		}
		if res.LeaderMovedTo == "" || res.LeaderMovedTo == name || !res.WasMember || len(res.Members) != 3 {
			t.Errorf("result %+v", res)
		}
		if m := c.Member(name); m != nil {
			c.Stop(t, name)
		}
		ms := members(t, dir)
		if len(ms) != 3 || slices.ContainsFunc(ms, func(m etcdops.Member) bool { return m.Name == name }) {
			t.Errorf("members %+v", ms)
		}
		sp := loadSpec(t, dir)
		if len(sp.Hosts) != 3 || slices.Contains(hostNames(sp), name) {
			t.Errorf("spec hosts %v", hostNames(sp))
		}
		if eps := endpointsIn(t, dir); len(eps) != 3 {
			t.Errorf("kubeadm-config.yaml endpoints %v", eps)
		}
		targets := scrapeTargets(t, dir)
		if len(targets) != 3 || slices.ContainsFunc(targets, func(s string) bool { return strings.HasPrefix(s, name+"=") }) {
			t.Errorf("prometheus.yml targets after removing %s: %v", name, targets)
		}
		if !strings.Contains(log.String(), "[monitoring] Wrote ") {
			t.Errorf("remove does not say it rewrote prometheus.yml:\n%s", log.String())
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("the host folder is gone: %v", err)
		}
		for _, h := range etcdops.Health(ctx, mustResolve(t, dir, sp.Hosts[0].Name)) {
			if !h.Healthy {
				t.Errorf("after remove: %+v", h)
			}
		}
	})
	if t.Failed() {
		return
	}

	// The hosts' files now start from different initial clusters (etcd04's
	// names four members, the first three's the original three); a
	// restore makes the cluster of the spec's hosts all the same.
	t.Run("restore after the changes", func(t *testing.T) {
		sp := loadSpec(t, dir)
		file := filepath.Join(t.TempDir(), "snap.db")
		if stdout, stderr, code := etcdtest.Exec(t, bin, "snapshot", "save", file, "--bundle", filepath.Join(dir, sp.Hosts[0].Name)); code != 0 {
			t.Fatalf("snapshot save: exit %d\n%s\n%s", code, stdout, stderr)
		}
		stdout, stderr, code := etcdtest.Exec(t, bin, "snapshot", "restore", file, "--out", dir, "-o", "json")
		if code != 0 {
			t.Fatalf("snapshot restore: exit %d\n%s\n%s", code, stdout, stderr)
		}
		var res struct {
			InitialCluster string `json:"initialCluster"`
			Members        []struct {
				Name string `json:"name"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		var want []string
		for _, h := range sp.Hosts {
			mf, err := etcdops.ReadManifest(layout.OnHost(filepath.Join(dir, h.Name), layout.EtcdManifest))
			if err != nil {
				t.Fatal(err)
			}
			peers, _ := mf.Flag("initial-advertise-peer-urls")
			want = append(want, h.Name+"="+peers)
		}
		slices.Sort(want)
		got := strings.Split(res.InitialCluster, ",")
		slices.Sort(got)
		if !slices.Equal(got, want) || len(res.Members) != len(sp.Hosts) {
			t.Errorf("restored initial cluster %v with %d members, want %v", got, len(res.Members), want)
		}
	})
}

func mustResolve(t *testing.T, dir, host string) *etcdops.Target {
	t.Helper()
	tgt, err := etcdops.Resolve(context.Background(), etcdops.Options{Bundle: filepath.Join(dir, host), Timeout: requestTimeout})
	if err != nil {
		t.Fatal(err)
	}
	return tgt
}

// cfgWithout writes a copy of the recorded spec without the host.
func cfgWithout(t *testing.T, dir, name string) string {
	t.Helper()
	c := loadSpec(t, dir)
	c.Hosts = slices.DeleteFunc(c.Hosts, func(h spec.Host) bool { return h.Name == name })
	b, err := spec.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "without-"+name+".yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// scrapeTargets are prometheus.yml's targets as NAME=HOST:PORT, once
// promtool has checked the file.
func scrapeTargets(t *testing.T, dir string) []string {
	t.Helper()
	file := filepath.Join(dir, layout.MonitoringDir, layout.MonitoringConfig)
	if b, err := exec.Command(testtool.Promtool(t), "check", "config", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check config %s: %v\n%s", file, err, b)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cfg monitoring.Config
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				out = append(out, st.Labels[monitoring.MemberLabel]+"="+tg)
			}
		}
	}
	return out
}

// syncLog is a log another goroutine writes while the test reads it.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
