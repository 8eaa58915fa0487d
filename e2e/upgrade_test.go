package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// nextTag is the image tag the upgrade tests go to; ETCD_NEXT_BIN runs it.
const nextTag = "3.6.16-0"

// upgradeMaxOutage bounds the longest time the writer may go without a
// successful request during a rolling upgrade of three members: each
// restart costs at most one election (a few hundred milliseconds with
// etcd's default 1 s election timeout) and the client's failover.
const upgradeMaxOutage = 10 * time.Second

// upgradeSummary is `etcd-staticpod upgrade -o json`.
type upgradeSummary struct {
	Image        string `json:"image"`
	Version      string `json:"version"`
	SpecRecorded bool   `json:"specRecorded"`
	Hosts        []struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		From    string `json:"from"`
		To      string `json:"to"`
		State   string `json:"state"`
		Leader  bool   `json:"leader"`
		Took    string `json:"took"`
		Error   string `json:"error"`
	} `json:"hosts"`
}

// upgradeCLI runs the CLI from the hub and returns stdout, stderr and the exit status.
func upgradeCLI(t *testing.T, r *run, timeout time.Duration, args ...string) (string, string, int) {
	t.Helper()
	cmd := r.lab.Command(stepContext(t, timeout), r.tools.CLI, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("etcd-staticpod %q: %v", args, err)
	}
	t.Logf("etcd-staticpod %s: exit %d after %s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), time.Since(begin).Round(time.Millisecond))
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// TestUpgradeRolling upgrades a running 3.6.8 cluster to 3.6.16 with the
// kubelet emulation following the rewritten manifests, while a client
// writes without pause: every member ends on 3.6.16, healthy, the leader
// went last, no acknowledged write is lost and the writer never waits
// longer than upgradeMaxOutage.
func TestUpgradeRolling(t *testing.T) {
	r := newRun(t)
	r.tools.RequireImage(t, nextTag)
	r.start(t, 3, harness.IPv4)
	ctx := stepContext(t, 5*time.Minute)
	kubelet := r.cluster.Kubelet(ctx)
	cli := r.client(t, r.apiserver())
	w := harness.StartWriter(ctx, cli, "/registry/e2e/upgrade")
	writerStopped := false
	defer func() {
		if !writerStopped {
			w.Stop()
		}
	}()
	// Some writes before the first restart.
	for w.AckedKeys() < 20 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}

	execLog := filepath.Join(t.TempDir(), "exec.log")
	stdout, stderr, code := upgradeCLI(t, r, 4*time.Minute, "upgrade", "--etcd-version", nextTag, "--out", r.bundle.Dir,
		"--wait", "2m", "-o", "json", "--exec", "echo {name} {address} {manifest} >> "+execLog)
	t.Logf("progress:\n%s", stderr)
	if code != 0 {
		t.Fatalf("upgrade exited %d: %s\n%s", code, stderr, stdout)
	}
	report := w.Stop()
	writerStopped = true
	t.Logf("writer during the upgrade: %s", report)
	t.Logf("kubelet: %v", kubelet.Events())

	var sum upgradeSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("upgrade -o json: %v\n%s", err, stdout)
	}
	if sum.Version != "3.6.16" || !sum.SpecRecorded || len(sum.Hosts) != 3 {
		t.Errorf("summary: %s", stdout)
	}
	var order []string
	for i, h := range sum.Hosts {
		order = append(order, h.Name)
		if h.State != "upgraded" || h.From != "3.6.8" || h.To != "3.6.16" || h.Error != "" {
			t.Errorf("host %s: %+v", h.Name, h)
		}
		if h.Leader != (i == len(sum.Hosts)-1) {
			t.Errorf("host %s upgraded %d of %d has leader=%v: the leader goes last", h.Name, i+1, len(sum.Hosts), h.Leader)
		}
	}
	// --exec ran once per host, in the same order, with the host's values.
	execLines, err := os.ReadFile(execLog)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range order {
		h := upgradeHost(t, r, name)
		want = append(want, fmt.Sprintf("%s %s %s", h.Name, h.Address, filepath.Join(r.bundle.HostRoot(h.Name), harness.ManifestPath)))
	}
	if got := strings.TrimSpace(string(execLines)); got != strings.Join(want, "\n") {
		t.Errorf("--exec ran:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	for _, m := range r.cluster.Members {
		st, err := cli.Status(stepContext(t, 10*time.Second), m.ClientURL())
		if err != nil {
			t.Fatalf("status of %s: %v", m.Name, err)
		}
		if st.Version != "3.6.16" {
			t.Errorf("%s reports version %s, want 3.6.16", m.Name, st.Version)
		}
		if m.Binary() != r.tools.EtcdByTag[nextTag] || !strings.HasSuffix(m.Image(), ":"+nextTag) {
			t.Errorf("%s runs %s (%s), want the binary of %s", m.Name, m.Binary(), m.Image(), nextTag)
		}
		checkUpgradedArchive(t, r, m.Name)
	}
	cl, err := spec.Load(filepath.Join(r.bundle.Dir, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	if cl.Etcd.Version != nextTag {
		t.Errorf("%s records version %s, want %s", layout.SpecFile, cl.Etcd.Version, nextTag)
	}

	if err := w.Verify(stepContext(t, time.Minute), cli); err != nil {
		t.Error(err)
	}
	if report.Acked == 0 || len(report.Stale) > 0 {
		t.Errorf("writer: %s", report)
	}
	t.Logf("longest outage %s (bound %s) from %s", report.LongestOutage.Round(time.Millisecond), upgradeMaxOutage, report.LongestOutageFrom.Format(time.RFC3339Nano))
	if report.LongestOutage > upgradeMaxOutage {
		t.Errorf("the writer went %s without a successful request, more than %s", report.LongestOutage, upgradeMaxOutage)
	}
	checkHealth(t, r, nil)
}

func upgradeHost(t *testing.T, r *run, name string) harness.Host {
	t.Helper()
	for _, h := range r.bundle.Hosts {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s", name)
	return harness.Host{}
}

// checkUpgradedArchive expects the host's archive to ship the upgraded manifest.
func checkUpgradedArchive(t *testing.T, r *run, name string) {
	t.Helper()
	f, err := os.Open(filepath.Join(r.bundle.Dir, name+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			t.Errorf("%s.tar.gz has no etcd manifest", name)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "./") != strings.TrimPrefix(harness.ManifestPath, "/") {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("etcd:"+nextTag)) {
			t.Errorf("%s.tar.gz ships a manifest without etcd:%s", name, nextTag)
		}
		return
	}
}

// TestUpgradeRefusals: a downgrade, a skipped minor version, another major
// version, a version that is no version and an unhealthy cluster are
// refused with one line naming the versions, and the bundle folder is left
// exactly as it was; a dry run changes nothing either.
func TestUpgradeRefusals(t *testing.T) {
	r := startCluster(t, 1, harness.IPv4)
	before := upgradeFolderState(t, r.bundle.Dir)
	for _, c := range []struct {
		version string
		code    int
		want    string
	}{
		{"3.6.7-0", 2, "member etcd01: downgrade from 3.6.8 to 3.6.7 is not supported"},
		{"3.5.21-0", 2, "downgrade from 3.6.8 to 3.5.21"},
		{"3.8.0-0", 2, "upgrade from 3.6.8 to 3.8.0 skips a minor version: upgrade to the latest 3.7.x first"},
		{"4.0.0-0", 2, "changes the major version"},
		{"latest", 2, `--etcd-version "latest"`},
	} {
		stdout, stderr, code := upgradeCLI(t, r, time.Minute, "upgrade", "--etcd-version", c.version, "--out", r.bundle.Dir)
		t.Logf("--etcd-version %s: %s", c.version, strings.TrimSpace(stderr))
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != c.code || len(lines) != 1 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("--etcd-version %s: exit %d, stdout %q, stderr %q; want exit %d and one line with %q", c.version, code, stdout, stderr, c.code, c.want)
		}
	}

	stdout, stderr, code := upgradeCLI(t, r, time.Minute, "upgrade", "--etcd-version", nextTag, "--out", r.bundle.Dir, "--dry-run", "-o", "json")
	var sum upgradeSummary
	if err := json.Unmarshal([]byte(stdout), &sum); code != 0 || err != nil || len(sum.Hosts) != 1 || sum.Hosts[0].State != "planned" || sum.SpecRecorded {
		t.Errorf("--dry-run: exit %d, %v: %s\n%s", code, err, stdout, stderr)
	}

	if err := r.cluster.Members[0].Stop(stepContext(t, time.Minute), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = upgradeCLI(t, r, time.Minute, "upgrade", "--etcd-version", nextTag, "--out", r.bundle.Dir, "--timeout", "2s")
	if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "must be healthy") {
		t.Errorf("unhealthy cluster: exit %d, stderr %q; want exit 1 and one line saying it must be healthy", code, stderr)
	}
	if after := upgradeFolderState(t, r.bundle.Dir); after != before {
		t.Errorf("the bundle folder changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// upgradeFolderState lists every file and folder under dir with its mode, time
// and content hash.
func upgradeFolderState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(&b, "%s %s", rel, fi.Mode())
		// The run's lock file is made and removed in the folder itself,
		// which moves that folder's own time and nothing else.
		if rel != "." {
			fmt.Fprintf(&b, " %s", fi.ModTime().Format(time.RFC3339Nano))
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestUpgradeStopsAtAMemberThatDoesNotReturn: a target the first host
// cannot run (no binary for its image, as a wrong tag on a real node would
// leave the Pod failing) stops the upgrade at that host within --wait:
// exit 1, a summary naming it failed and the others untouched, the other
// members healthy and the spec unchanged; init's own phase with the
// recorded spec brings the member back.
func TestUpgradeStopsAtAMemberThatDoesNotReturn(t *testing.T) {
	r := newRun(t)
	r.start(t, 3, harness.IPv4)
	ctx := stepContext(t, 3*time.Minute)
	kubelet := r.cluster.Kubelet(ctx)
	specBefore, err := os.ReadFile(filepath.Join(r.bundle.Dir, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := upgradeCLI(t, r, 2*time.Minute, "upgrade", "--etcd-version", "3.6.99-0", "--out", r.bundle.Dir,
		"--wait", "5s", "--timeout", "2s", "-o", "json")
	t.Logf("progress:\n%s", stderr)
	t.Logf("kubelet: %v", kubelet.Events())
	if code != 1 {
		t.Fatalf("upgrade to an image nothing runs exited %d, want 1", code)
	}
	var sum upgradeSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || len(sum.Hosts) != 3 {
		t.Fatalf("summary: %v\n%s", err, stdout)
	}
	failed := sum.Hosts[0]
	if failed.State != "failed" || !strings.Contains(failed.Error, "did not report version 3.6.99 within 5s") || failed.Leader {
		t.Errorf("first host: %+v, want a failed follower", failed)
	}
	for _, h := range sum.Hosts[1:] {
		if h.State != "pending" {
			t.Errorf("%s: state %s after the upgrade stopped at %s, want pending", h.Name, h.State, failed.Name)
		}
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"stopped at " + failed.Name, "upgraded: none", "not touched: " + sum.Hosts[1].Name + ", " + sum.Hosts[2].Name, "unhealthy: " + failed.Name} {
		if !strings.Contains(last, want) {
			t.Errorf("error line lacks %q: %s", want, last)
		}
	}
	if sum.SpecRecorded {
		t.Error("the summary says the spec was recorded")
	}
	if specAfter, _ := os.ReadFile(filepath.Join(r.bundle.Dir, layout.SpecFile)); !bytes.Equal(specAfter, specBefore) {
		t.Errorf("%s changed after a failed upgrade", layout.SpecFile)
	}
	for _, h := range sum.Hosts[1:] {
		if img := r.cluster.Member(h.Name).Image(); !strings.HasSuffix(img, ":3.6.8-0") {
			t.Errorf("untouched %s runs %s", h.Name, img)
		}
	}
	checkHealth(t, r, []string{failed.Name})

	// The recorded spec still names 3.6.8-0: init's phase rewrites the
	// failed host's manifest with it, and kubelet starts the member again.
	if _, stderr, code := upgradeCLI(t, r, time.Minute, "init", "phase", "etcd", "local", "--out", r.bundle.Dir, "--node", failed.Name); code != 0 {
		t.Fatalf("init phase etcd local: exit %d: %s", code, stderr)
	}
	m := r.cluster.Member(failed.Name)
	for !m.Running() {
		if ctx.Err() != nil {
			t.Fatalf("%s did not start again: %v", m.Name, kubelet.Events())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	checkHealth(t, r, nil)
}

// TestUpgradeOneNodeThenTheRest upgrades one follower the way it is done
// on the node itself (--node NAME --root DIR, DIR being that host's root
// here), which leaves the spec alone, then the rest from the bundle
// folder: the first host is left as it is and the spec is recorded once
// every member runs 3.6.16.
func TestUpgradeOneNodeThenTheRest(t *testing.T) {
	r := newRun(t)
	r.tools.RequireImage(t, nextTag)
	r.start(t, 3, harness.IPv4)
	ctx := stepContext(t, 4*time.Minute)
	r.cluster.Kubelet(ctx)
	cli := r.client(t, r.apiserver())
	var node string
	for _, m := range r.cluster.Members {
		st, err := cli.Status(ctx, m.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader != st.Header.MemberId {
			node = m.Name
			break
		}
	}
	specFile := filepath.Join(r.bundle.Dir, layout.SpecFile)
	specBefore, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := upgradeCLI(t, r, 3*time.Minute, "upgrade", "--etcd-version", nextTag, "--config", specFile,
		"--node", node, "--root", r.bundle.HostRoot(node), "--wait", "2m", "-o", "json")
	t.Logf("progress:\n%s", stderr)
	var sum upgradeSummary
	if err := json.Unmarshal([]byte(stdout), &sum); code != 0 || err != nil || len(sum.Hosts) != 1 || sum.Hosts[0].Name != node || sum.Hosts[0].State != "upgraded" || sum.SpecRecorded {
		t.Fatalf("upgrade --node %s: exit %d, %v\n%s", node, code, err, stdout)
	}
	for _, m := range r.cluster.Members {
		st, err := cli.Status(ctx, m.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "3.6.16", false: "3.6.8"}[m.Name == node]; st.Version != want {
			t.Errorf("%s runs %s, want %s", m.Name, st.Version, want)
		}
	}
	if after, _ := os.ReadFile(specFile); !bytes.Equal(after, specBefore) {
		t.Errorf("upgrade --root changed %s", layout.SpecFile)
	}

	stdout, stderr, code = upgradeCLI(t, r, 3*time.Minute, "upgrade", "--etcd-version", nextTag, "--out", r.bundle.Dir, "--wait", "2m", "-o", "json")
	t.Logf("progress:\n%s", stderr)
	sum = upgradeSummary{}
	if err := json.Unmarshal([]byte(stdout), &sum); code != 0 || err != nil || len(sum.Hosts) != 3 || !sum.SpecRecorded {
		t.Fatalf("upgrade of the rest: exit %d, %v\n%s", code, err, stdout)
	}
	for _, h := range sum.Hosts {
		want := "upgraded"
		if h.Name == node {
			want = "current"
		}
		if h.State != want || h.To != "3.6.16" {
			t.Errorf("%s: state %s, to %s; want %s, 3.6.16", h.Name, h.State, h.To, want)
		}
	}
	checkHealth(t, r, nil)
}
