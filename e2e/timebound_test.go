package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// boundTimeout is the --timeout every command gets
// here: short, so that the test stays short, and long enough for a healthy
// member to answer on a busy machine.
const boundTimeout = 2 * time.Second

// boundSlack is what a command may take beyond its timeout, measured over
// the whole process from the exec to its exit: printing, closing its
// connections and exiting. The command counts its timeout from the
// process's start, so the Go runtime's start-up is inside the timeout.
const boundSlack = 100 * time.Millisecond

// TestTimeBounds checks that every command that talks to the cluster
// returns within its timeout when a member does not answer at all, and
// says which one: first a member frozen with SIGSTOP (its kernel still
// accepts connections, nothing answers on them), then a member whose
// packets to the client are dropped (connections never complete). The
// member is the first host, whose folder every command starts from, so
// finding the cluster has to go around it too.
func TestTimeBounds(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	victim := r.cluster.Members[0]
	extra := r.lab.NextHost(t, "etcd04")

	t.Run("frozen member", func(t *testing.T) {
		if err := victim.Freeze(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := victim.Thaw(); err != nil {
				t.Fatal(err)
			}
			waitAnswers(t, r, victim)
		}()
		checkTimeBounds(t, r, victim, extra)
	})
	t.Run("blackholed member", func(t *testing.T) {
		r.lab.RequireNamespaces(t, "dropping a host's packets")
		if err := r.lab.Blackhole(victim.Name); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := r.lab.Unblackhole(victim.Name); err != nil {
				t.Fatal(err)
			}
			waitAnswers(t, r, victim)
		}()
		checkTimeBounds(t, r, victim, extra)
	})
}

// boundCase is one command run against a cluster with a silent member.
type boundCase struct {
	name string
	args []string
	// code is the exit status wanted.
	code int
	// says are what the output (stdout and stderr) must hold: the silent
	// member named as such.
	says []string
	// check looks at the output beyond the member's name, when set.
	check func(t *testing.T, stdout string)
	// unbounded is the part of the run that the timeout does not bound,
	// as the command reports it, when there is one.
	unbounded func(t *testing.T, stdout string) time.Duration
}

// checkTimeBounds runs every cluster command with a short timeout while
// victim does not answer: each must exit with the expected status within
// the timeout plus boundSlack (the wall time of the process from its
// start to its exit), name the silent member as such in its output, and
// leave the bundle folder as it was.
func checkTimeBounds(t *testing.T, r *run, victim *harness.Member, extra harness.Host) {
	out := r.bundle.Dir
	bundle := r.bundle.HostRoot(victim.Name)
	timeout := boundTimeout.String()
	snapshotDir := t.TempDir()
	url := victim.ClientURL()
	noAnswer := "no answer within " + timeout
	ownNote := "note: " + victim.Name + " (" + url + ") gave no member list"
	cases := []boundCase{
		{name: "health", args: []string{"health", "--bundle", bundle, "--timeout", timeout, "-o", "json"}, code: 1,
			says:  []string{url, noAnswer},
			check: func(t *testing.T, stdout string) { checkHealthRows(t, r, victim, stdout) }},
		{name: "status", args: []string{"status", "--bundle", bundle, "--timeout", timeout}, code: 1, says: []string{url, noAnswer}},
		{name: "members", args: []string{"members", "--bundle", bundle, "--timeout", timeout}, code: 0, says: []string{ownNote}},
		{name: "member list", args: []string{"member", "list", "--bundle", bundle, "--timeout", timeout}, code: 0, says: []string{ownNote}},
		// --timeout bounds the choice of the member; the transfer after it
		// is bounded by its own inactivity limit.
		{name: "snapshot save", args: []string{"snapshot", "save", filepath.Join(snapshotDir, "any.db"), "--bundle", bundle, "--timeout", timeout, "-o", "json"}, code: 0,
			says: []string{"passed over " + url + ": " + noAnswer}, unbounded: snapshotTransfer},
		{name: "snapshot save --endpoint", args: []string{"snapshot", "save", filepath.Join(snapshotDir, "from.db"), "--bundle", bundle, "--endpoint", url, "--timeout", timeout}, code: 1,
			says: []string{url + ": " + noAnswer}},
		{name: "member add", args: []string{"member", "add", extra.Name + "=" + extra.Address, "--out", out, "--no-promote", "--timeout", timeout}, code: 1,
			says: []string{victim.Name, noAnswer}},
		{name: "member promote", args: []string{"member", "promote", victim.Name, "--out", out, "--timeout", timeout}, code: 0, says: []string{ownNote}},
		// Refused for the quorum's sake; it reaches the cluster through
		// another host's folder, the member's being the one to go.
		{name: "member remove", args: []string{"member", "remove", victim.Name, "--out", out, "--timeout", timeout}, code: 2, says: []string{"member remove " + victim.Name}},
		// The older name of --timeout, as scripts may give it, bounds alike.
		{name: "member remove (old name)", args: []string{"member", "remove", victim.Name, "--out", out, "--request-timeout", timeout}, code: 2, says: []string{"member remove " + victim.Name}},
		{name: "upgrade", args: []string{"upgrade", "--etcd-version", "3.6.16-0", "--out", out, "--dry-run", "--timeout", timeout}, code: 1,
			says: []string{victim.Name, noAnswer}},
		{name: "alarm list", args: []string{"alarm", "list", "--bundle", bundle, "--timeout", timeout}, code: 0, says: []string{ownNote}},
		{name: "compact", args: []string{"compact", "--bundle", bundle, "--timeout", timeout}, code: 0, says: []string{ownNote}},
		{name: "move-leader", args: []string{"move-leader", r.cluster.Members[1].Name, "--bundle", bundle, "--timeout", timeout}, code: 0, says: []string{ownNote}},
		// Refused: a member that does not answer is not healthy.
		{name: "defrag", args: []string{"defrag", "--bundle", bundle, "--timeout", timeout}, code: 1, says: []string{url, noAnswer}},
	}
	before := etcdtest.Tree(t, out)
	limit := boundTimeout + boundSlack
	for _, c := range cases {
		stdout, stderr, code, ran := runBounded(t, r, c)
		if ran > limit {
			// One more try: on a machine busy with other work a single run
			// can be held up past the slack; a command that waits too long
			// by design overshoots every time.
			t.Logf("%s: ran %s, more than %s; once more", c.name, ran.Round(time.Millisecond), limit)
			stdout, stderr, code, ran = runBounded(t, r, c)
		}
		if code != c.code {
			t.Errorf("%s: exit status %d, want %d\nstdout: %s\nstderr: %s", c.name, code, c.code, stdout, stderr)
		}
		if ran > limit {
			t.Errorf("%s: ran %s after starting, more than its timeout %s plus %s", c.name, ran.Round(time.Millisecond), boundTimeout, boundSlack)
		}
		for _, want := range c.says {
			if !strings.Contains(stdout+stderr, want) {
				t.Errorf("%s: the output does not say %q\nstdout: %s\nstderr: %s", c.name, want, stdout, stderr)
			}
		}
		if c.check != nil {
			c.check(t, stdout)
		}
		if diff := etcdtest.DiffTree(before, etcdtest.Tree(t, out)); len(diff) > 0 {
			t.Fatalf("%s changed the bundle folder: %v", c.name, diff)
		}
	}
}

// runBounded runs the case's command and returns the part of its run that
// its timeout bounds: the process's whole wall time, less the snapshot
// transfer a save reports, which its timeout does not bound by design.
func runBounded(t *testing.T, r *run, c boundCase) (stdout, stderr string, code int, ran time.Duration) {
	t.Helper()
	stdout, stderr, code, took := runTimed(t, r, c.args...)
	ran = took
	var transfer time.Duration
	if c.unbounded != nil && code == 0 {
		transfer = c.unbounded(t, stdout)
		ran -= transfer
	}
	detail := fmt.Sprintf("process %s", took.Round(time.Millisecond))
	if transfer > 0 {
		detail += ", of which transferring " + transfer.String()
	}
	t.Logf("%-24s %6s  exit %d  (%s)", c.name, ran.Round(time.Millisecond), code, detail)
	return stdout, stderr, code, ran
}

// runTimed runs the built CLI from the hub and measures the wall time from
// just before the process is started until it has exited.
func runTimed(t *testing.T, r *run, args ...string) (stdout, stderr string, code int, took time.Duration) {
	t.Helper()
	// A generous outer bound: a command that hangs fails the test rather
	// than stalling it.
	cmd := exec.CommandContext(stepContext(t, time.Minute), r.tools.CLI, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := r.lab.Start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	took = time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode(), took
}

// checkHealthRows wants the silent member unhealthy with a reason and
// every other member healthy.
func checkHealthRows(t *testing.T, r *run, victim *harness.Member, stdout string) {
	t.Helper()
	var rows []endpointHealth
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("health -o json: %v\n%s", err, stdout)
	}
	for _, m := range r.cluster.Members {
		i := slices.IndexFunc(rows, func(h endpointHealth) bool { return h.Endpoint == m.ClientURL() })
		switch {
		case i < 0:
			t.Errorf("health does not report %s (%s): %s", m.Name, m.ClientURL(), stdout)
		case m == victim && (rows[i].Healthy || rows[i].Error == ""):
			t.Errorf("health calls the silent %s healthy or gives no reason: %+v", m.Name, rows[i])
		case m == victim:
			t.Logf("health reports %s: %s", m.Name, rows[i].Error)
		case !rows[i].Healthy:
			t.Errorf("health calls %s unhealthy: %s", m.Name, rows[i].Error)
		}
	}
}

// snapshotTransfer is the time `snapshot save -o json` reports for the
// transfer.
func snapshotTransfer(t *testing.T, stdout string) time.Duration {
	t.Helper()
	var saved struct {
		Took string `json:"took"`
	}
	if err := json.Unmarshal([]byte(stdout), &saved); err != nil {
		t.Fatalf("snapshot save -o json: %v\n%s", err, stdout)
	}
	d, err := time.ParseDuration(saved.Took)
	if err != nil {
		t.Fatalf("snapshot save -o json: took %q: %v", saved.Took, err)
	}
	return d
}

// waitAnswers waits until the member serves a linearizable read again.
func waitAnswers(t *testing.T, r *run, m *harness.Member) {
	t.Helper()
	ctx := stepContext(t, time.Minute)
	cli := r.client(t, r.apiserver(), m.ClientURL())
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Get(attempt, "/registry/e2e/timebound")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s does not answer again: %v", m.Name, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
