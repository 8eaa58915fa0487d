package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// defragRow is one member of `defrag -o json`.
type defragRow struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Before   int64  `json:"before"`
	After    int64  `json:"after"`
	Took     string `json:"took"`
	Skipped  bool   `json:"skipped"`
	Reason   string `json:"reason"`
}

// alarmRow is one alarm of `alarm list|disarm -o json`.
type alarmRow struct {
	Member   string `json:"member"`
	MemberID string `json:"memberID"`
	Alarm    string `json:"alarm"`
}

// opsCLI runs the CLI from the hub against the first host's bundle folder
// and returns stdout, stderr and the exit status.
func opsCLI(t *testing.T, r *run, args ...string) (string, string, int) {
	t.Helper()
	return upgradeCLI(t, r, 3*time.Minute, append(args, "--bundle", r.bundle.HostRoot(r.bundle.Hosts[0].Name))...)
}

// decode parses a command's JSON output or fails the test.
func decode(t *testing.T, what, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s -o json: %v\n%s", what, err, out)
	}
}

// leaderName asks every member for its status and returns the leader's name.
func leaderName(t *testing.T, r *run, cli *clientv3.Client) string {
	t.Helper()
	for _, m := range r.cluster.Members {
		st, err := cli.Status(stepContext(t, 10*time.Second), m.ClientURL())
		if err != nil {
			t.Fatalf("status of %s: %v", m.Name, err)
		}
		if st.Leader == st.Header.MemberId {
			return m.Name
		}
	}
	t.Fatal("no member leads")
	return ""
}

// defragSpan is one defragmentation as etcd's own log shows it.
type defragSpan struct {
	member        string
	start, finish time.Time
}

// defragSpans reads every member's log for etcd's "starting defragment" and
// "finished defragment" lines, in the order they started.
func defragSpans(t *testing.T, r *run) []defragSpan {
	t.Helper()
	var spans []defragSpan
	for _, m := range r.cluster.Members {
		log, err := m.Log()
		if err != nil {
			t.Fatal(err)
		}
		var open *defragSpan
		for _, line := range strings.Split(log, "\n") {
			var e struct {
				TS  string `json:"ts"`
				Msg string `json:"msg"`
			}
			if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			if e.Msg != "starting defragment" && e.Msg != "finished defragment" {
				continue
			}
			ts, err := time.Parse("2006-01-02T15:04:05.999999Z0700", e.TS)
			if err != nil {
				t.Fatalf("%s log: timestamp %q: %v", m.Name, e.TS, err)
			}
			switch {
			case e.Msg == "starting defragment" && open == nil:
				open = &defragSpan{member: m.Name, start: ts}
			case e.Msg == "finished defragment" && open != nil:
				open.finish = ts
				spans = append(spans, *open)
				open = nil
			default:
				t.Fatalf("%s log: %q out of order at %s", m.Name, e.Msg, e.TS)
			}
		}
		if open != nil {
			t.Fatalf("%s log: a defragmentation started at %s never finished", m.Name, open.start)
		}
	}
	slices.SortFunc(spans, func(a, b defragSpan) int { return a.start.Compare(b.start) })
	return spans
}

// fillAndFree writes n values of size bytes and deletes them again, so that
// once compacted every member has about n*size bytes free.
func fillAndFree(t *testing.T, cli *clientv3.Client, prefix string, n, size int) {
	t.Helper()
	ctx := stepContext(t, 2*time.Minute)
	value := strings.Repeat("x", size)
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s/%03d", prefix, i), value); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	if _, err := cli.Delete(ctx, prefix+"/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// TestDefragRolling defragments a three-member cluster with the default
// --min-free while a writer runs: every member is taken (each has about
// 24 MiB free), one at a time, the leader last, as etcd's own log shows,
// and no acknowledged write is lost.
func TestDefragRolling(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	ctx := stepContext(t, 5*time.Minute)
	cli := r.client(t, r.apiserver())
	fillAndFree(t, cli, "/registry/e2e/garbage", 24, 1<<20)
	stdout, stderr, code := opsCLI(t, r, "compact", "-o", "json")
	if code != 0 {
		t.Fatalf("compact exited %d: %s", code, stderr)
	}
	t.Logf("compact: %s", strings.Join(strings.Fields(stdout), " "))

	w := harness.StartWriter(ctx, cli, "/registry/e2e/defrag")
	writerStopped := false
	defer func() {
		if !writerStopped {
			w.Stop()
		}
	}()
	for w.AckedKeys() < 20 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	leader := leaderName(t, r, cli)
	stdout, stderr, code = opsCLI(t, r, "defrag", "-o", "json")
	t.Logf("progress:\n%s", stderr)
	if code != 0 {
		t.Fatalf("defrag exited %d: %s\n%s", code, stderr, stdout)
	}
	// Some writes after the last member, too.
	for n := w.AckedKeys() + 20; w.AckedKeys() < n && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	report := w.Stop()
	writerStopped = true
	t.Logf("writer during the defragmentation: %s", report)
	if err := w.Verify(ctx, cli); err != nil {
		t.Error(err)
	}
	if len(report.Stale) > 0 {
		t.Errorf("stale reads: %v", report.Stale)
	}

	var rows []defragRow
	decode(t, "defrag", stdout, &rows)
	var order []string
	for _, row := range rows {
		t.Logf("defrag order: %s (%s): %d -> %d bytes in %s; skipped=%v: %s", row.Name, row.Endpoint, row.Before, row.After, row.Took, row.Skipped, row.Reason)
		order = append(order, row.Name)
		if row.Skipped || row.After <= 0 || row.After >= row.Before || row.Before-row.After < 16<<20 {
			t.Errorf("%s: %+v, want it defragmented with more than 16 MiB given back", row.Name, row)
		}
	}
	if len(rows) != 3 || order[2] != leader {
		t.Errorf("defragmented %v; the leader %s goes last", order, leader)
	}
	if now := leaderName(t, r, cli); now != leader {
		t.Logf("leadership moved during the run: %s, then %s", leader, now)
	}

	// etcd's own account: three defragmentations, never two at once, in the
	// command's order, the leader's last.
	spans := defragSpans(t, r)
	var logged []string
	for i, s := range spans {
		logged = append(logged, s.member)
		t.Logf("etcd log: %s defragmented from %s to %s (%s)", s.member, s.start.Format("15:04:05.000000"), s.finish.Format("15:04:05.000000"), s.finish.Sub(s.start))
		if i > 0 && !s.start.After(spans[i-1].finish) {
			t.Errorf("%s started defragmenting at %s, before %s finished at %s", s.member, s.start, spans[i-1].member, spans[i-1].finish)
		}
	}
	if !slices.Equal(logged, order) {
		t.Errorf("etcd's logs show the order %v, the command reported %v", logged, order)
	}
	checkHealth(t, r, nil)
}

// TestAlarmNoSpace fills a cluster whose quota-backend-bytes is 8 MiB until
// etcd raises NOSPACE: alarm list and health name it, alarm disarm refuses
// while the database is still at its quota, and compact, defrag and alarm
// disarm clear it, after which the cluster takes writes again.
func TestAlarmNoSpace(t *testing.T) {
	const quota = 8 << 20
	r := startCluster(t, 3, harness.IPv4, "--extra-arg", fmt.Sprintf("quota-backend-bytes=%d", quota))
	ctx := stepContext(t, 5*time.Minute)
	cli := r.client(t, r.apiserver())
	value := strings.Repeat("q", 256<<10)
	full := false
	var written int
	for i := 0; i < 200 && !full; i++ {
		_, err := cli.Put(ctx, fmt.Sprintf("/registry/e2e/full/%03d", i), value)
		switch {
		case err == nil:
			written++
		case errors.Is(err, rpctypes.ErrNoSpace) || strings.Contains(err.Error(), rpctypes.ErrNoSpace.Error()):
			full = true
		default:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if !full {
		t.Fatalf("%d puts of 256 KiB never met the %d-byte quota", written, quota)
	}
	t.Logf("alarm cycle: after %d puts of 256 KiB: %v", written, rpctypes.ErrNoSpace)

	stdout, stderr, code := opsCLI(t, r, "alarm", "list", "-o", "json")
	var alarms []alarmRow
	decode(t, "alarm list", stdout, &alarms)
	if code != 0 || len(alarms) == 0 {
		t.Fatalf("alarm list: exit %d, %s%s", code, stdout, stderr)
	}
	for _, a := range alarms {
		if a.Alarm != "NOSPACE" || r.cluster.Member(a.Member) == nil || a.MemberID == "" {
			t.Errorf("alarm %+v", a)
		}
	}
	t.Logf("alarm cycle: alarm list (exit %d): %s", code, strings.Join(strings.Fields(stdout), " "))

	stdout, stderr, code = opsCLI(t, r, "health", "-o", "json")
	var health []endpointHealth
	decode(t, "health", stdout, &health)
	if code != 1 || !strings.Contains(stderr, "active alarm NOSPACE on "+alarms[0].Member) {
		t.Errorf("health: exit %d, stderr %q; want 1 and the alarm named", code, stderr)
	}
	for _, h := range health {
		if h.Healthy || !strings.Contains(h.Error, "NOSPACE on "+alarms[0].Member) {
			t.Errorf("health of %s: %+v", h.Endpoint, h)
		}
	}
	t.Logf("alarm cycle: health (exit %d): %s", code, strings.TrimSpace(stderr))

	_, stderr, code = opsCLI(t, r, "alarm", "disarm")
	if code != 1 || !strings.Contains(stderr, "not disarming NOSPACE") {
		t.Errorf("alarm disarm on a full database: exit %d, %s", code, stderr)
	}
	t.Logf("alarm cycle: alarm disarm before making room (exit %d): %s", code, strings.TrimSpace(stderr))

	if _, err := cli.Delete(ctx, "/registry/e2e/full/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	stdout, stderr, code = opsCLI(t, r, "compact", "-o", "json")
	if code != 0 {
		t.Fatalf("compact: exit %d, %s", code, stderr)
	}
	t.Logf("alarm cycle: compact: %s", strings.Join(strings.Fields(stdout), " "))
	stdout, stderr, code = opsCLI(t, r, "defrag", "--all", "-o", "json")
	if code != 0 {
		t.Fatalf("defrag under NOSPACE: exit %d, %s\n%s", code, stderr, stdout)
	}
	var rows []defragRow
	decode(t, "defrag", stdout, &rows)
	for _, row := range rows {
		t.Logf("alarm cycle: defrag %s: %d -> %d bytes in %s", row.Name, row.Before, row.After, row.Took)
		if row.Skipped || row.After >= quota/2 {
			t.Errorf("defrag %s: %+v", row.Name, row)
		}
	}
	stdout, stderr, code = opsCLI(t, r, "alarm", "disarm", "-o", "json")
	var disarmed []alarmRow
	decode(t, "alarm disarm", stdout, &disarmed)
	if code != 0 || !slices.Equal(disarmed, alarms) {
		t.Fatalf("alarm disarm: exit %d, disarmed %v, want %v; %s", code, disarmed, alarms, stderr)
	}
	t.Logf("alarm cycle: alarm disarm: %s", strings.Join(strings.Fields(stdout), " "))

	if _, err := cli.Put(ctx, "/registry/e2e/after-nospace", value); err != nil {
		t.Fatalf("put after the recovery: %v", err)
	}
	stdout, _, code = opsCLI(t, r, "alarm", "list", "-o", "json")
	if code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("alarm list after the recovery: exit %d, %s", code, stdout)
	}
	t.Logf("alarm cycle: a write goes through again; alarm list: %s", strings.TrimSpace(stdout))
	checkHealth(t, r, nil)
}

// TestMoveLeader hands leadership to a follower with move-leader: the
// follower then leads, as every member's status says, and the command
// reports the hand-over.
func TestMoveLeader(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	cli := r.client(t, r.apiserver())
	from := leaderName(t, r, cli)
	to := r.cluster.Members[0].Name
	if to == from {
		to = r.cluster.Members[1].Name
	}
	stdout, stderr, code := opsCLI(t, r, "move-leader", to, "-o", "json")
	if code != 0 {
		t.Fatalf("move-leader exited %d: %s", code, stderr)
	}
	var mv struct{ From, To, Took string }
	decode(t, "move-leader", stdout, &mv)
	t.Logf("move-leader %s: %s", to, strings.Join(strings.Fields(stdout), " "))
	if mv.From != from || mv.To != to || mv.Took == "" || mv.Took == "0s" {
		t.Errorf("move-leader reported %+v, want from %s to %s", mv, from, to)
	}
	if now := leaderName(t, r, cli); now != to {
		t.Errorf("after move-leader %s the leader is %s", to, now)
	}
	checkHealth(t, r, nil)
}

// TestSnapshotDirKeep runs `snapshot save --dir DIR --keep 3` five times
// with writes in between: the three newest are left, each verifies and holds
// the revision its save reported; another file in DIR is never touched; a
// save from an unreachable member fails and removes nothing.
func TestSnapshotDirKeep(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	ctx := stepContext(t, 5*time.Minute)
	cli := r.client(t, r.apiserver())
	dir := t.TempDir()
	notes := filepath.Join(dir, "README")
	if err := os.WriteFile(notes, []byte("backups of the etcd cluster\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var saved []snapshotSaved
	for i := range 5 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/e2e/backup/%d", i), "before save "+fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := opsCLI(t, r, "snapshot", "save", "--dir", dir, "--keep", "3", "-o", "json")
		if code != 0 {
			t.Fatalf("save %d exited %d: %s", i+1, code, stderr)
		}
		var s struct {
			snapshotSaved
			Kept    []string `json:"kept"`
			Removed []string `json:"removed"`
		}
		decode(t, "snapshot save", stdout, &s)
		t.Logf("save %d: %s (revision %d) from %s; kept %s; removed %s", i+1, filepath.Base(s.Path), s.Revision, s.Member, baseNames(s.Kept), baseNames(s.Removed))
		saved = append(saved, s.snapshotSaved)
		wantRemoved := 0
		if i >= 3 {
			wantRemoved = 1 // the oldest of the four
		}
		if filepath.Dir(s.Path) != dir || len(s.Kept) != min(i+1, 3) || s.Kept[0] != s.Path || len(s.Removed) != wantRemoved {
			t.Errorf("save %d: %+v", i+1, s)
		}
	}
	want := []string{saved[2].Path, saved[3].Path, saved[4].Path}
	got := snapshotFiles(t, dir)
	if !slices.Equal(got, want) {
		t.Fatalf("left %v, want the three newest %v", got, want)
	}
	for _, s := range saved[2:] {
		stdout, stderr, code := upgradeCLI(t, r, time.Minute, "snapshot", "status", s.Path, "-o", "json")
		var st snapshotSaved
		decode(t, "snapshot status", stdout, &st)
		if code != 0 || st.Revision != s.Revision || st.SHA256 != s.SHA256 {
			t.Errorf("snapshot status %s: exit %d, %+v, want revision %d and SHA-256 %s; %s", s.Path, code, st, s.Revision, s.SHA256, stderr)
		}
	}
	t.Logf("kept snapshots: %s", baseNames(got))
	before := etcdtest.Tree(t, dir)

	down := r.cluster.Members[2]
	if err := down.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := opsCLI(t, r, "snapshot", "save", "--dir", dir, "--keep", "1", "--endpoint", down.ClientURL(), "--timeout", "2s")
	if code != 1 {
		t.Errorf("save from the stopped %s: exit %d, want 1: %s", down.Name, code, stderr)
	}
	t.Logf("failed save from the stopped %s (exit %d): %s", down.Name, code, strings.TrimSpace(stderr))
	if diff := etcdtest.DiffTree(before, etcdtest.Tree(t, dir)); len(diff) > 0 {
		t.Errorf("the failed save changed %s: %v", dir, diff)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Errorf("another file in the folder: %v", err)
	}
}

// snapshotFiles lists the snapshots SaveToDir names in dir, by name.
func snapshotFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "etcd-snapshot-") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	// The names sort by time, except that -2 sorts before .db.
	slices.SortFunc(out, func(a, b string) int {
		return strings.Compare(strings.Replace(a, "Z.db", "Z-1.db", 1), strings.Replace(b, "Z.db", "Z-1.db", 1))
	})
	return out
}

func baseNames(paths []string) string {
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
