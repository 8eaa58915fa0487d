package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// TestOpsCommandsRejectBadInput: one line naming the flag or argument and
// its value, exit 2, nothing printed on stdout and nothing on disk changed.
func TestOpsCommandsRejectBadInput(t *testing.T) {
	dir := etcdtest.Bundles(t, initInProcess(t), 1)
	bundle := filepath.Join(dir, "etcd01")
	snaps := t.TempDir()
	old := filepath.Join(snaps, "etcd-snapshot-20200101T000000Z.db")
	if err := os.WriteFile(old, []byte("an old snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(snaps, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := etcdtest.Tree(t, filepath.Dir(dir))
	beforeSnaps := etcdtest.Tree(t, snaps)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"defrag argument", []string{"defrag", "etcd01", "--bundle", bundle}, `unexpected argument "etcd01": defrag takes flags only`},
		{"defrag min-free word", []string{"defrag", "--bundle", bundle, "--min-free", "lots"}, `--min-free "lots": want a size such as 64MiB or a share of the database such as 10%`},
		{"defrag min-free unit", []string{"defrag", "--bundle", bundle, "--min-free", "64XB"}, `--min-free "64XB": unit "XB"`},
		{"defrag min-free share", []string{"defrag", "--bundle", bundle, "--min-free", "150%"}, `--min-free "150%": want a share from 0% to 100%`},
		{"defrag min-free negative", []string{"defrag", "--bundle", bundle, "--min-free", "-1MiB"}, `--min-free "-1MiB": want a size`},
		{"defrag min-free and all", []string{"defrag", "--bundle", bundle, "--min-free", "1MiB", "--all"}, `--min-free "1MiB": give --min-free or --all, not both`},
		{"defrag wait", []string{"defrag", "--bundle", bundle, "--wait", "soon"}, `--wait "soon": not a duration such as 10m`},
		{"defrag wait zero", []string{"defrag", "--bundle", bundle, "--wait", "0s"}, `--wait "0s": must be positive`},
		{"defrag member-timeout", []string{"defrag", "--bundle", bundle, "--member-timeout", "soon"}, `--member-timeout "soon": not a duration such as 10m`},
		{"defrag member-timeout and wait", []string{"defrag", "--bundle", bundle, "--member-timeout", "5m", "--wait", "5m"}, `--member-timeout "5m": the older name of --wait; give --wait alone`},
		{"defrag output", []string{"defrag", "--bundle", bundle, "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{"alarm list argument", []string{"alarm", "list", "NOSPACE", "--bundle", bundle}, `unexpected argument "NOSPACE": list takes flags only`},
		{"alarm disarm argument", []string{"alarm", "disarm", "CORRUPT"}, `unexpected argument "CORRUPT": disarm takes flags only`},
		{"alarm list timeout", []string{"alarm", "list", "--bundle", bundle, "--timeout", "0s"}, `--timeout "0s": must be positive`},
		{"compact keep-revisions negative", []string{"compact", "--bundle", bundle, "--keep-revisions", "-5"}, `--keep-revisions "-5": want a whole number, 0 or more`},
		{"compact keep-revisions word", []string{"compact", "--bundle", bundle, "--keep-revisions", "many"}, `--keep-revisions "many": want a whole number`},
		{"move-leader no name", []string{"move-leader", "--bundle", bundle}, "NAME: missing; usage: etcd-staticpod move-leader NAME"},
		{"move-leader two names", []string{"move-leader", "etcd01", "etcd02", "--bundle", bundle}, `unexpected argument "etcd02": etcd-staticpod move-leader takes one NAME`},
		{"move-leader blank name", []string{"move-leader", " ", "--bundle", bundle}, `NAME " ": must not be empty`},
		{"move-leader output", []string{"move-leader", "etcd01", "--bundle", bundle, "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{"snapshot file and dir", []string{"snapshot", "save", filepath.Join(snaps, "x.db"), "--dir", snaps, "--bundle", bundle}, `FILE "` + filepath.Join(snaps, "x.db") + `": give FILE or --dir, not both`},
		{"snapshot keep without dir", []string{"snapshot", "save", filepath.Join(snaps, "x.db"), "--keep", "3", "--bundle", bundle}, `--keep "3": give it with --dir`},
		{"snapshot keep zero", []string{"snapshot", "save", "--dir", snaps, "--keep", "0", "--bundle", bundle}, `--keep "0": want a whole number, 1 or more`},
		{"snapshot keep word", []string{"snapshot", "save", "--dir", snaps, "--keep", "all", "--bundle", bundle}, `--keep "all": want a whole number, 1 or more`},
		{"snapshot missing dir", []string{"snapshot", "save", "--dir", filepath.Join(snaps, "nope"), "--keep", "3", "--bundle", bundle}, `--dir "` + filepath.Join(snaps, "nope") + `": no such file or directory`},
		{"snapshot dir is a file", []string{"snapshot", "save", "--dir", notDir, "--bundle", bundle}, `--dir "` + notDir + `": not a folder`},
		{"snapshot empty dir", []string{"snapshot", "save", "--dir", "", "--bundle", bundle}, `--dir "": must not be empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tc.args...)
			if code != exitBadInput {
				t.Errorf("exit %d, want %d", code, exitBadInput)
			}
			if stdout != "" {
				t.Errorf("printed %q", stdout)
			}
			if last := lastLine(stderr); !strings.Contains(last, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tc.want)
			}
		})
	}
	if diff := etcdtest.DiffTree(before, etcdtest.Tree(t, filepath.Dir(dir))); len(diff) > 0 {
		t.Errorf("bad input changed the bundles: %v", diff)
	}
	if diff := etcdtest.DiffTree(beforeSnaps, etcdtest.Tree(t, snaps)); len(diff) > 0 {
		t.Errorf("bad input changed the snapshot folder: %v", diff)
	}
}

// TestOpsCommands runs the maintenance commands against a real three-member
// cluster on loopback and checks their output documents.
func TestOpsCommands(t *testing.T) {
	c := etcdtest.Run(t, etcdtest.Bundles(t, initInProcess(t), 3))
	bundle := c.Member("etcd01").Bundle

	leader := func(t *testing.T) string {
		t.Helper()
		stdout, _, code := runCLI(t, "status", "--bundle", bundle, "-o", "json")
		var rows []statusRow
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 {
			t.Fatalf("status: exit %d, %v", code, err)
		}
		for _, r := range rows {
			if r.IsLeader {
				return r.Name
			}
		}
		t.Fatal("no leader")
		return ""
	}

	t.Run("defrag", func(t *testing.T) {
		// A fresh database has far less than 16 MiB free: nothing is due.
		stdout, stderr, code := runCLI(t, "defrag", "--bundle", bundle, "-o", "json")
		var rows []map[string]any
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 || len(rows) != 3 {
			t.Fatalf("exit %d, %v:\n%s%s", code, err, stdout, stderr)
		}
		for _, r := range rows {
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range r {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(keys, []string{"after", "before", "endpoint", "name", "reason", "skipped", "took"}) {
				t.Errorf("keys %v", keys)
			}
			if r["skipped"] != true || !strings.Contains(r["reason"].(string), "not above --min-free 16.0 MiB (10% of the database, at least 16.0 MiB)") {
				t.Errorf("row %v", r)
			}
		}

		stdout, _, code = runCLI(t, "defrag", "--bundle", bundle, "--all", "--dry-run", "-o", "json")
		var dry []defragRow
		if err := json.Unmarshal([]byte(stdout), &dry); err != nil || code != 0 || len(dry) != 3 {
			t.Fatalf("dry run: exit %d, %v:\n%s", code, err, stdout)
		}
		for _, r := range dry {
			if !r.Skipped || !strings.HasPrefix(r.Reason, "dry run: would defragment") || r.After != 0 {
				t.Errorf("dry run row %+v", r)
			}
		}

		lead := leader(t)
		stdout, stderr, code = runCLI(t, "defrag", "--bundle", bundle, "--all", "-o", "json")
		var done []defragRow
		if err := json.Unmarshal([]byte(stdout), &done); err != nil || code != 0 || len(done) != 3 {
			t.Fatalf("--all: exit %d, %v:\n%s%s", code, err, stdout, stderr)
		}
		t.Logf("progress:\n%s", stderr)
		for i, r := range done {
			if r.Skipped || r.Before == 0 || r.After == 0 || r.Took == "" {
				t.Errorf("row %+v", r)
			}
			if (r.Name == lead) != (i == 2) {
				t.Errorf("%s defragmented %d of 3; the leader %s goes last", r.Name, i+1, lead)
			}
		}
		stdout, _, code = runCLI(t, "defrag", "--bundle", bundle, "--all", "--wait", "2m")
		if code != 0 || strings.Count(stdout, "defragmented") != 3 || !strings.Contains(stdout, "leader") {
			t.Errorf("table: exit %d\n%s", code, stdout)
		}
		// --wait bounds a member's defragmentation, under its older name
		// too; the first member stops the run.
		for _, flag := range []string{"--wait", "--member-timeout"} {
			stdout, stderr, code = runCLI(t, "defrag", "--bundle", bundle, "--all", flag, "1ns", "-o", "json")
			if code != 1 || !strings.Contains(stderr, "1ns") || strings.Count(stdout, `"name"`) != 1 {
				t.Errorf("%s 1ns: exit %d, want 1 with one member tried\nstdout: %s\nstderr: %s", flag, code, stdout, stderr)
			}
		}
		waitHealthy(t, bundle)
	})

	t.Run("alarm list without alarms", func(t *testing.T) {
		stdout, _, code := runCLI(t, "alarm", "list", "--bundle", bundle, "-o", "json")
		if code != 0 || strings.TrimSpace(stdout) != "[]" {
			t.Errorf("exit %d: %q", code, stdout)
		}
		stdout, _, code = runCLI(t, "alarm", "list", "--bundle", bundle)
		if code != 0 || strings.TrimSpace(stdout) != "no active alarm" {
			t.Errorf("exit %d: %q", code, stdout)
		}
		stdout, _, code = runCLI(t, "alarm", "disarm", "--bundle", bundle)
		if code != 0 || strings.TrimSpace(stdout) != "no active alarm: nothing to disarm" {
			t.Errorf("disarm: exit %d: %q", code, stdout)
		}
	})

	t.Run("compact", func(t *testing.T) {
		for range 5 {
			if _, _, code := runCLI(t, "snapshot", "save", filepath.Join(t.TempDir(), "x.db"), "--bundle", bundle); code != 0 {
				t.Fatal("snapshot save failed")
			}
		}
		stdout, stderr, code := runCLI(t, "compact", "--bundle", bundle, "-o", "json")
		var d compactDoc
		if err := json.Unmarshal([]byte(stdout), &d); err != nil || code != 0 || d.Revision == 0 || d.CompactedTo != d.Revision || d.AlreadyCompacted {
			t.Fatalf("exit %d, %v: %s%s", code, err, stdout, stderr)
		}
		// The same revision again: nothing changes, and that is not an error.
		stdout, _, code = runCLI(t, "compact", "--bundle", bundle, "-o", "json")
		var again compactDoc
		if err := json.Unmarshal([]byte(stdout), &again); err != nil || code != 0 || !again.AlreadyCompacted {
			t.Errorf("again: exit %d, %v: %s", code, err, stdout)
		}
		stdout, _, code = runCLI(t, "compact", "--bundle", bundle, "--keep-revisions", "1000000")
		if code != 0 || !strings.HasPrefix(stdout, "nothing to compact") {
			t.Errorf("keep more than there is: exit %d: %s", code, stdout)
		}
	})

	t.Run("move-leader", func(t *testing.T) {
		from := leader(t)
		to := "etcd01"
		if from == to {
			to = "etcd02"
		}
		stdout, stderr, code := runCLI(t, "move-leader", to, "--bundle", bundle, "-o", "json")
		var d leaderMoveDoc
		if err := json.Unmarshal([]byte(stdout), &d); err != nil || code != 0 || d.From != from || d.To != to || d.Took == "0s" {
			t.Fatalf("exit %d, %v: %s%s", code, err, stdout, stderr)
		}
		if now := leader(t); now != to {
			t.Errorf("after move-leader %s the leader is %s", to, now)
		}
		stdout, _, code = runCLI(t, "move-leader", "--bundle", bundle, to)
		if code != 0 || strings.TrimSpace(stdout) != to+" leads already: nothing to do" {
			t.Errorf("again: exit %d: %q", code, stdout)
		}
		_, stderr, code = runCLI(t, "move-leader", "etcd09", "--bundle", bundle)
		if code != exitBadInput || lastLine(stderr) != `error: member "etcd09": not in the member list (etcd01, etcd02, etcd03)` {
			t.Errorf("unknown member: exit %d: %q", code, stderr)
		}
	})

	t.Run("snapshot save into a folder", func(t *testing.T) {
		dir := t.TempDir()
		other := filepath.Join(dir, "notes.txt")
		if err := os.WriteFile(other, []byte("not a snapshot"), 0o644); err != nil {
			t.Fatal(err)
		}
		name := regexp.MustCompile(`^etcd-snapshot-[0-9]{8}T[0-9]{6}Z(-[0-9]+)?\.db$`)
		var saved []string
		for i := range 3 {
			stdout, stderr, code := runCLI(t, "snapshot", "save", "--dir", dir, "--keep", "2", "--bundle", bundle, "-o", "json")
			var d struct {
				Path    string   `json:"path"`
				Kept    []string `json:"kept"`
				Removed []string `json:"removed"`
			}
			if err := json.Unmarshal([]byte(stdout), &d); err != nil || code != 0 || !name.MatchString(filepath.Base(d.Path)) {
				t.Fatalf("save %d: exit %d, %v: %s%s", i, code, err, stdout, stderr)
			}
			saved = append(saved, d.Path)
			if len(d.Kept) != min(i+1, 2) || d.Kept[0] != d.Path || (i == 2) != (len(d.Removed) == 1) {
				t.Errorf("save %d: %+v", i, d)
			}
			if i == 2 && d.Removed[0] != saved[0] {
				t.Errorf("removed %v, want the oldest %s", d.Removed, saved[0])
			}
		}
		entries, _ := os.ReadDir(dir)
		var left []string
		for _, e := range entries {
			left = append(left, filepath.Join(dir, e.Name()))
		}
		want := []string{saved[1], saved[2], other}
		slices.Sort(want) // as ReadDir lists them
		if !slices.Equal(left, want) {
			t.Errorf("left %v, want %v", left, want)
		}
	})
}

// waitHealthy waits until every member through bundle is healthy again.
func waitHealthy(t *testing.T, bundle string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, stderr, code := runCLI(t, "health", "--bundle", bundle)
		if code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster is not healthy again: %s", stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
