package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
)

// hooksBinary builds the CLI with the test hooks (testhooks.go): with
// ETCD_STATICPOD_TEST_WRITE_DELAY set, a run waits that long with its temp
// files on disk before it puts them in place. ETCD_STATICPOD_HOOKS_BIN
// names one make built already.
func hooksBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ETCD_STATICPOD_HOOKS_BIN"); p != "" {
		return p
	}
	p := filepath.Join(t.TempDir(), "etcd-staticpod-hooks")
	if out, err := exec.Command("go", "build", "-tags", "testhooks", "-o", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags testhooks: %v\n%s", err, out)
	}
	return p
}

// slowed is a command of the hooks binary that holds its temp files for
// delay.
func slowed(bin string, delay time.Duration, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ETCD_STATICPOD_TEST_WRITE_DELAY="+delay.String())
	return cmd
}

// run is a started command with its output.
type run struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	code           int
}

func start(t *testing.T, cmd *exec.Cmd) *run {
	t.Helper()
	r := &run{cmd: cmd}
	cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *run) wait(t *testing.T) {
	t.Helper()
	err := r.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
}

// tempsUnder lists the temp files and folders under dir.
func tempsUnder(dir string) []string {
	var found []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && atomicfile.IsTemp(d.Name()) {
			found = append(found, path)
		}
		return nil
	})
	return found
}

// untilTemps waits until a run has its temp files on disk under dir.
func untilTemps(t *testing.T, dir string, r *run) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if found := tempsUnder(dir); len(found) > 0 {
			return found
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no temp file appeared under %s\n%s%s", dir, r.stdout.String(), r.stderr.String())
	return nil
}

// TestConcurrentRunsOneFolder runs pairs of writing commands into one
// folder at the same moment, their writes slowed so that they overlap:
// init into a new folder, init again, certs renew, single phases. After
// every pair the CA store is intact and consistent, the folder verifies
// (every certificate chains to the CA and matches its key, SHA256SUMS
// matches the archives, no temp or lock file anywhere), and each loser
// was refused with the lock line naming the winner's PID, or waited
// (--wait-lock) and succeeded.
func TestConcurrentRunsOneFolder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs forty processes")
	}
	bin := hooksBinary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	initArgs := []string{"init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out}
	scenarios := []struct {
		name  string
		fresh bool
		a, b  []string
	}{
		{"init into a new folder, twice", true, initArgs, initArgs},
		{"init again, twice", false, initArgs, initArgs},
		{"certs renew and init again", false, []string{"certs", "renew", "all", "--out", out}, initArgs},
		{"two certs renew", false, []string{"certs", "renew", "etcd-server", "--out", out}, []string{"certs", "renew", "all", "--out", out}},
		{"phase certs all and phase bundle", false, []string{"init", "phase", "certs", "all", "--out", out}, []string{"init", "phase", "bundle", "--out", out}},
	}
	const pairs = 20
	delay := 150 * time.Millisecond
	refusals, waits := 0, 0
	var ca []byte
	for i := range pairs {
		sc := scenarios[i%len(scenarios)]
		waiting := i%2 == 1
		if sc.fresh {
			if err := os.RemoveAll(out); err != nil {
				t.Fatal(err)
			}
			ca = nil
		}
		b := sc.b
		if waiting {
			b = append(append([]string{}, b...), "--wait-lock", "1m")
		}
		ra := start(t, slowed(bin, delay, sc.a...))
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		rb := start(t, slowed(bin, delay, b...))
		ra.wait(t)
		rb.wait(t)
		label := fmt.Sprintf("pair %d (%s, wait-lock %v)", i, sc.name, waiting)
		for _, r := range []struct {
			me, other *run
		}{{ra, rb}, {rb, ra}} {
			switch r.me.code {
			case 0:
			case 1:
				refusals++
				line := lockLine(out, r.other.cmd.Process.Pid)
				if got := strings.TrimSpace(r.me.stderr.String()); got != line {
					t.Fatalf("%s: %v refused with\n%s\nwant\n%s", label, r.me.cmd.Args[1:], got, line)
				}
			default:
				t.Fatalf("%s: %v exit %d\n%s%s", label, r.me.cmd.Args[1:], r.me.code, r.me.stdout.String(), r.me.stderr.String())
			}
		}
		if ra.code != 0 && rb.code != 0 {
			t.Fatalf("%s: both runs refused", label)
		}
		if waiting && rb.code != 0 {
			t.Fatalf("%s: the waiting run failed:\n%s", label, rb.stderr.String())
		}
		if waiting && ra.code == 0 && rb.code == 0 {
			waits++
		}
		caPEM, err := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		if ca != nil && !bytes.Equal(ca, caPEM) {
			t.Fatalf("%s: the CA changed", label)
		}
		ca = caPEM
		checkComplete(t, out, caPEM)
	}
	t.Logf("%d pairs: %d runs refused with the lock line, %d waited and succeeded", pairs, refusals, waits)
	if refusals == 0 {
		t.Error("no run was refused: the runs never overlapped")
	}
}

// TestInterruptRollsBack sends SIGINT or SIGTERM to runs holding their
// temp files (the CA key's among them): each prints one line, exits 130 or
// 143, and leaves the folder exactly as it was (a new folder is gone), with
// no temp file and the CA untouched.
func TestInterruptRollsBack(t *testing.T) {
	bin := hooksBinary(t)
	parent := t.TempDir()
	out := filepath.Join(parent, "bundles")
	initArgs := []string{"init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out}
	interrupt := func(t *testing.T, sig syscall.Signal, code int, args ...string) {
		t.Helper()
		before := treeHash(t, out)
		r := start(t, slowed(bin, time.Minute, args...))
		temps := untilTemps(t, out, r)
		if err := r.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		r.wait(t)
		name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]
		want := "error: interrupted by " + name + ": stopped before putting any file in place; what the run had made is removed\n"
		if r.code != code || r.stderr.String() != want {
			t.Fatalf("%v: exit %d, stderr %q; want %d, %q", args, r.code, r.stderr.String(), code, want)
		}
		t.Logf("%v: %s held %d temp files; %s", args, name, len(temps), strings.TrimSpace(r.stderr.String()))
		if after := treeHash(t, out); after != before {
			t.Fatalf("%v: the folder changed", args)
		}
		noLeftovers(t, parent)
	}
	t.Run("init into a new folder", func(t *testing.T) {
		interrupt(t, syscall.SIGINT, 130, initArgs...)
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("the new folder is left: %v", err)
		}
	})
	if o, code := runBinary(t, bin, initArgs...); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, o)
	}
	t.Run("init again", func(t *testing.T) { interrupt(t, syscall.SIGTERM, 143, initArgs...) })
	t.Run("certs renew", func(t *testing.T) { interrupt(t, syscall.SIGTERM, 143, "certs", "renew", "all", "--out", out) })
	t.Run("phase certs on a folder with the CA key only", func(t *testing.T) {
		// The CA store as an interrupted first run leaves it: the run
		// completes the CA, and is called off before it lands.
		for _, f := range []string{"pki/etcd/ca.crt", "etcd01", "etcd02", "etcd03"} {
			if err := os.RemoveAll(filepath.Join(out, f)); err != nil {
				t.Fatal(err)
			}
		}
		interrupt(t, syscall.SIGINT, 130, "init", "phase", "certs", "all", "--out", out)
	})
	caPEM, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.key"))
	if o, code := runBinary(t, bin, "init", "--out", out); code != 0 {
		t.Fatalf("init after the interruptions: exit %d\n%s", code, o)
	}
	if key, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.key")); !bytes.Equal(key, caPEM) {
		t.Fatal("the CA key changed")
	}
	crt, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
	checkComplete(t, out, crt)
}

// TestInterruptAnyPoint sends SIGINT to init into a new folder at points
// spread over a whole run: the run rolls back (exit 130, one line, no
// folder), or had got too far and completed (exit 0, complete), or had not
// yet started to handle signals (killed, nothing written). Never anything
// in between, and never a temp or lock file.
func TestInterruptAnyPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("interrupts dozens of processes")
	}
	bin := binary(t)
	args := []string{"init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256"}
	start := time.Now()
	if o, err := exec.Command(bin, append(args, "--out", filepath.Join(t.TempDir(), "b"))...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	full := time.Since(start)
	const points = 30
	outcomes := map[string]int{}
	for i := range points {
		parent := t.TempDir()
		out := filepath.Join(parent, "bundles")
		outcome := interruptAt(t, i, full*time.Duration(i)/points, bin, append(args, "--out", out)...)
		outcomes[outcome]++
		switch outcome {
		case rolledBack:
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("point %d: rolled back, but %s is there: %v", i, out, err)
			}
		case completed:
			crt, err := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
			if err != nil {
				t.Fatalf("point %d: exit 0 but %v", i, err)
			}
			checkComplete(t, out, crt)
		case killedEarly:
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("point %d: killed at start, but %s is there: %v", i, out, err)
			}
		}
		noLeftovers(t, parent)
	}
	t.Logf("%d interrupts over a %v run: %v", points, full, outcomes)
	if outcomes[rolledBack] == 0 {
		t.Error("no run was rolled back: the interrupts missed the run")
	}
}

// What a run interrupted by SIGINT came to.
const (
	rolledBack  = "rolled back"
	completed   = "completed"
	killedEarly = "killed before handling signals"
)

// interruptAt runs bin with args, sends it SIGINT after delay and tells
// what the run came to. A rolled-back run must have printed one line,
// the interruption's; any exit but 130, 0 or death by the signal (before
// the handler was installed) fails the test.
func interruptAt(t *testing.T, point int, delay time.Duration, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay)
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	switch code := cmd.ProcessState.ExitCode(); {
	case code == 130:
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "error: interrupted by SIGINT") {
			t.Errorf("point %d: stderr %q", point, stderr.String())
		}
		return rolledBack
	case code == 0:
		return completed
	case cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled():
		return killedEarly
	default:
		t.Fatalf("point %d: exit %d\n%s%s", point, code, stdout.String(), stderr.String())
		return ""
	}
}
