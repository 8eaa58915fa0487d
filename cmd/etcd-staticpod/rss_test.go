package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rssFileEnv, when set in the test binary's environment, makes it run its
// arguments as a command and write that command's peak resident memory, in
// bytes, to the file it names. Linux starts an exec'd process's peak at its
// parent's when the parent forked it sharing memory, as Go's os/exec does,
// so a command started straight from this large test process would report
// the test's memory as its own; this small intermediate process starts it
// instead.
const rssFileEnv = "ETCD_STATICPOD_TEST_RSS_FILE"

func TestMain(m *testing.M) {
	if file := os.Getenv(rssFileEnv); file != "" {
		os.Exit(runMeasured(file, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runMeasured runs args with this process's standard streams and returns
// its exit status, 125 when it could not be run.
func runMeasured(file string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "measured run: no command")
		return 125
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = withoutEnv(os.Environ(), rssFileEnv)
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "measured run:", err)
		return 125
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	if err := os.WriteFile(file, []byte(strconv.FormatInt(rss, 10)), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "measured run:", err)
		return 125
	}
	return cmd.ProcessState.ExitCode()
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// measured returns bin with args run through this test binary, which
// records the command's peak memory in the returned file. The whole
// process group is killed when ctx ends, the command with its starter.
func measured(ctx context.Context, t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rss")
	cmd := exec.CommandContext(ctx, self, append([]string{bin}, args...)...)
	cmd.Env = append(os.Environ(), rssFileEnv+"="+file)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd, file
}

// peakRSS reads what a measured run recorded.
func peakRSS(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("peak memory of the run: %v", err)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		t.Fatalf("peak memory of the run: %v", err)
	}
	return n
}

// TestMeasuredRSS: a run started from a process holding much memory still
// reports only its own peak, and the exit status comes through.
func TestMeasuredRSS(t *testing.T) {
	ballast := make([]byte, 300<<20)
	// One write a page makes it resident; every byte would take the race
	// detector a quarter of a minute.
	for i := 0; i < len(ballast); i += os.Getpagesize() {
		ballast[i] = 1
	}
	cmd, file := measured(context.Background(), t, "sh", "-c", "exit 3")
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("exit: %v, want status 3", err)
	}
	if rss := peakRSS(t, file); rss <= 0 || rss > maxRSS {
		t.Errorf("sh reported %d MiB resident, want (0, %d]", rss>>20, maxRSS>>20)
	}
	ballast[len(ballast)-1] = 2 // keeps the ballast alive until now
}
