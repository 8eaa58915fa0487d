package e2ecluster

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runSteps sources run.sh, which then defines its functions and runs
// nothing, and runs script after it with the run's own teardown on exit (its
// summary line). etcd_cli, which runs the CLI in the etcd01 network
// namespace of a real run, runs it here directly: the command, its arguments
// and its failure are real.
func runSteps(t *testing.T, script string) (stdout, stderr string, code int) {
	t.Helper()
	cli := os.Getenv("ETCD_STATICPOD_BIN")
	if cli == "" {
		t.Skip("ETCD_STATICPOD_BIN is not set (make test sets it)")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	runSh, err := filepath.Abs("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	prelude := `. "$RUN_SH"
work=$WORK
cli=$ETCD_STATICPOD_BIN
etcd_cli() { "$cli" "$@"; }
trap teardown EXIT
`
	cmd := exec.Command("bash", "-c", prelude+script)
	cmd.Env = append(os.Environ(), "RUN_SH="+runSh, "WORK="+t.TempDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("bash: %v", err)
	}
	return out.String(), errOut.String(), code
}

// checkFailed: the run stopped at the failing step (nothing after it ran),
// exited wantCode (1 from a check; the command's own from the ERR trap),
// printed exactly one FAIL line, matching want, and counted it.
func checkFailed(t *testing.T, stdout, stderr string, code, wantCode int, want *regexp.Regexp) {
	t.Helper()
	t.Logf("stderr:\n%s", stderr)
	if code != wantCode {
		t.Errorf("exit code %d, want %d", code, wantCode)
	}
	if strings.Contains(stdout, "after the step") {
		t.Errorf("the script went on after the failing step")
	}
	if n := strings.Count(stderr, "FAIL:"); n != 1 {
		t.Errorf("%d FAIL lines, want 1", n)
	}
	if !want.MatchString(stderr) {
		t.Errorf("no line matching %q", want)
	}
	if !strings.Contains(stderr, "0 passed, 1 failed") {
		t.Errorf("no summary line counting the failure")
	}
}

// The day-2 steps that show their command's output through sed: a failing
// command must end the run with the step's FAIL line, the command's own error
// shown above it.
func TestStepFailurePrintsFail(t *testing.T) {
	for _, tc := range []struct {
		name, step string
		want       *regexp.Regexp
	}{
		{"snapshot save", "step_snapshot",
			regexp.MustCompile(`(?m)^    error: --bundle "[^"]*/bundles/etcd01": .*\n.*FAIL: etcd-staticpod snapshot save failed$`)},
		{"upgrade", "step_upgrade",
			regexp.MustCompile(`(?m)^    error: --out "[^"]*/bundles": no cluster.yaml there.*\n.*FAIL: etcd-staticpod upgrade failed$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runSteps(t, tc.step+"\necho after the step\n")
			checkFailed(t, stdout, stderr, code, 1, tc.want)
		})
	}
}

// A command that fails where no check looks: the ERR trap names its line and
// function instead of the run ending silently.
func TestUncheckedFailureNamed(t *testing.T) {
	stdout, stderr, code := runSteps(t, `unchecked() {
	"$cli" snapshot status "$work/missing.db" >/dev/null
	passed=$((passed + 1))
}
unchecked
echo after the step
`)
	checkFailed(t, stdout, stderr, code, 2,
		regexp.MustCompile(`FAIL: line \d+ \(in unchecked\): exit status 2; the command that failed last: "\$cli" snapshot status "\$work/missing.db"`))
}

// A step that passes counts as passed and prints no FAIL line.
func TestStepPassCounted(t *testing.T) {
	stdout, stderr, code := runSteps(t, `ok_step() {
	"$cli" --help >/dev/null
	passed=$((passed + 1))
}
ok_step
echo after the step
`)
	if code != 0 || !strings.Contains(stdout, "after the step") || strings.Contains(stderr, "FAIL:") ||
		!strings.Contains(stderr, "1 passed, 0 failed") {
		t.Errorf("exit code %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
}
