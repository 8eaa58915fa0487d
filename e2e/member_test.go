package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

// maxScaleOutage bounds the longest time the writer saw no successful
// request while the cluster grew to four and shrank to three. Adding and
// promoting a learner costs the writer nothing; removing the leader costs
// a leadership transfer, and a client connected to the removed member
// fails over to another, each a second or two.
const maxScaleOutage = 15 * time.Second

// memberWait bounds `member add`'s wait for promotion in the test.
const memberWait = 3 * time.Minute

// memberRow is one entry of the member lists the member commands print.
type memberRow struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Started    bool     `json:"started"`
	IsLearner  bool     `json:"isLearner"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

// memberAdded is `member add -o json`.
type memberAdded struct {
	Member   memberRow   `json:"member"`
	Members  []memberRow `json:"members"`
	Promoted bool        `json:"promoted"`
	Resumed  bool        `json:"resumed"`
}

// memberRemoved is `member remove -o json`.
type memberRemoved struct {
	Member        *memberRow  `json:"member"`
	Members       []memberRow `json:"members"`
	WasMember     bool        `json:"wasMember"`
	LeaderMovedTo string      `json:"leaderMovedTo"`
}

// lockedBuffer collects a running command's output for the test to read.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestScaleOutAndIn grows a three-member cluster to four with `member add`
// (the learner is started by the harness from the bundle the command
// wrote, and the command promotes it), then shrinks it to three with
// `member remove` of the original member that leads, while a writer keeps
// writing through the apiserver-etcd-client certificate. No acknowledged
// write is lost and the writer is never cut off for long.
func TestScaleOutAndIn(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	ctx := stepContext(t, 8*time.Minute)
	cli := r.client(t, r.apiserver())
	w := harness.StartWriter(ctx, cli, "/registry/e2e/member")
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	dir := r.bundle.Dir

	// Scale out: the command adds the learner and waits; the host starts
	// once the cluster lists it, as an operator copying the bundle would.
	host := r.lab.NextHost(t, "etcd04")
	begin := time.Now()
	var stdout, stderr lockedBuffer
	add := r.lab.Command(stepContext(t, memberWait+time.Minute), r.tools.CLI, "member", "add", host.Name+"="+host.Address,
		"--out", dir, "--wait", memberWait.String(), "-o", "json")
	add.Stdout, add.Stderr = &stdout, &stderr
	if err := add.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- add.Wait() }()
	var addErr error
	waitLearner := stepContext(t, time.Minute)
	for added := false; !added; {
		select {
		case addErr = <-exited:
			t.Fatalf("member add exited (%v) before the learner started:\n%s\n%s", addErr, stderr.String(), stdout.String())
		case <-waitLearner.Done():
			t.Fatalf("the cluster does not list %s as a learner within a minute:\n%s", host.Name, stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
		added = listsLearner(waitLearner, cli, host)
	}
	t.Logf("%s is a learner %s after member add began", host.Name, time.Since(begin).Round(time.Millisecond))
	m := r.cluster.AddMember(t, host)
	select {
	case addErr = <-exited:
	case <-ctx.Done():
		t.Fatalf("member add did not return: %v\n%s", ctx.Err(), stderr.String())
	}
	t.Logf("member add:\n%s", stderr.String())
	if addErr != nil {
		t.Fatalf("member add: %v\n%s", addErr, stdout.String())
	}
	t.Logf("%s added and promoted %s after member add began", host.Name, time.Since(begin).Round(time.Millisecond))
	var added memberAdded
	if err := json.Unmarshal([]byte(stdout.String()), &added); err != nil {
		t.Fatalf("member add -o json: %v\n%s", err, stdout.String())
	}
	if !added.Promoted || added.Resumed || added.Member.IsLearner || added.Member.Name != host.Name {
		t.Errorf("member add reports %+v", added)
	}
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := m.Flag("initial-cluster-state"); got != "existing" {
		t.Errorf("%s's manifest: --initial-cluster-state=%s, want existing", host.Name, got)
	}
	if got := m.Flag("initial-cluster"); strings.Count(got, "=https://") != 4 || !strings.Contains(got, host.Name+"=https://"+host.Address+":2380") {
		t.Errorf("%s's manifest: --initial-cluster=%s, want all four members", host.Name, got)
	}
	checkMemberList(ctx, t, r, dir, []string{"etcd01", "etcd02", "etcd03", host.Name})
	checkKubeadmEndpoints(t, r, dir)
	checkHealth(t, r, nil)

	// Scale in: the original member that leads, if one does, so that
	// leadership moves.
	leader, leads := leaderOf(ctx, t, cli, r, []string{"etcd01", "etcd02", "etcd03"})
	t.Logf("removing %s (leader: %v)", leader, leads)
	begin = time.Now()
	cmd := r.lab.Command(stepContext(t, 2*time.Minute), r.tools.CLI, "member", "remove", leader, "--out", dir, "-o", "json")
	var removeErr bytes.Buffer
	cmd.Stderr = &removeErr
	out, err := cmd.Output()
	t.Logf("member remove %s (%s):\n%s", leader, time.Since(begin).Round(time.Millisecond), removeErr.String())
	if err != nil {
		t.Fatalf("member remove %s: %v\n%s", leader, err, out)
	}
	var removed memberRemoved
	if err := json.Unmarshal(out, &removed); err != nil {
		t.Fatalf("member remove -o json: %v\n%s", err, out)
	}
	if !removed.WasMember || removed.Member == nil || removed.Member.Name != leader || (removed.LeaderMovedTo == "") == leads || removed.LeaderMovedTo == leader || len(removed.Members) != 3 {
		t.Errorf("member remove reports %s", out)
	}
	// The operator removes the manifest; kubelet stops the Pod.
	r.cluster.RemoveMember(t, leader)
	var rest []string
	for _, name := range []string{"etcd01", "etcd02", "etcd03", host.Name} {
		if name != leader {
			rest = append(rest, name)
		}
	}
	checkMemberList(ctx, t, r, dir, rest)
	checkKubeadmEndpoints(t, r, dir)
	if err := waitHealthy(ctx, r); err != nil {
		t.Fatal(err)
	}
	checkHealth(t, r, nil)

	rep := w.Stop()
	stopped = true
	t.Logf("writer: %s", rep)
	t.Logf("longest outage %s (bound %s) from %s", rep.LongestOutage.Round(time.Millisecond), maxScaleOutage, rep.LongestOutageFrom.Format(time.RFC3339Nano))
	if rep.Acked == 0 || len(rep.Stale) > 0 {
		t.Errorf("writer: %s", rep)
	}
	if rep.LongestOutage >= maxScaleOutage {
		t.Errorf("the writer went %s without a successful request, more than %s", rep.LongestOutage.Round(time.Millisecond), maxScaleOutage)
	}
	// Read back through the members that remain.
	if err := w.Verify(ctx, r.client(t, r.apiserver(), r.cluster.Endpoints()...)); err != nil {
		t.Error(err)
	}
}

// listsLearner reports whether the member list has a learner on the
// host's peer URL.
func listsLearner(ctx context.Context, cli *clientv3.Client, h harness.Host) bool {
	attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := cli.MemberList(attempt)
	if err != nil {
		return false
	}
	for _, m := range resp.Members {
		if m.IsLearner && slices.Contains(m.PeerURLs, "https://"+h.Address+":2380") {
			return true
		}
	}
	return false
}

// checkMemberList runs `member list -o json` from the hub and wants
// exactly the named members, started and voting.
func checkMemberList(ctx context.Context, t *testing.T, r *run, dir string, want []string) {
	t.Helper()
	var bundle string
	for _, name := range want {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			bundle = filepath.Join(dir, name)
			break
		}
	}
	attempt, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := r.lab.Command(attempt, r.tools.CLI, "member", "list", "--bundle", bundle, "-o", "json").Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("member list: %v: %s", err, exit.Stderr)
	}
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	var rows []memberRow
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("member list -o json: %v\n%s", err, out)
	}
	var names []string
	for _, m := range rows {
		names = append(names, m.Name)
		if !m.Started || m.IsLearner {
			t.Errorf("member %s is not a started voting member: %+v", m.Name, m)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("member list has %v, want %v", names, want)
	}
}

// checkKubeadmEndpoints wants kubeadm-config.yaml to list exactly the
// running members' client URLs.
func checkKubeadmEndpoints(t *testing.T, r *run, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kubeadm-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Etcd struct {
			External struct {
				Endpoints []string `json:"endpoints"`
			} `json:"external"`
		} `json:"etcd"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got, want := slices.Sorted(slices.Values(doc.Etcd.External.Endpoints)), slices.Sorted(slices.Values(r.cluster.Endpoints()))
	if !slices.Equal(got, want) {
		t.Errorf("kubeadm-config.yaml lists %v, want %v", got, want)
	}
}

// leaderOf names the member among names that leads; when none does, the
// first of names, and leads is false.
func leaderOf(ctx context.Context, t *testing.T, cli *clientv3.Client, r *run, names []string) (name string, leads bool) {
	t.Helper()
	attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := cli.MemberList(attempt)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	for _, ep := range r.cluster.Endpoints() {
		st, err := cli.Status(attempt, ep)
		if err != nil || st.Leader == 0 {
			continue
		}
		for _, m := range list.Members {
			if m.ID == st.Leader && slices.Contains(names, m.Name) {
				return m.Name, true
			}
		}
		break
	}
	return names[0], false
}
