// Package testtool finds the programs from outside Go that tests run to
// check our output with the real thing (Debian's promtool, prometheus and
// systemd-analyze).
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI, where a missing program is a
// broken pipeline rather than a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Path is the path of the program name. Without it the test is skipped,
// saying install (how to get it), except in CI, where it fails: CI must
// not pass on checks it did not run.
func Path(tb testing.TB, name, install string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if InCI() {
			tb.Fatalf("%s is needed: %s", name, install)
		}
		tb.Skipf("no %s: %s", name, install)
	}
	return p
}

// Promtool is Prometheus' checker, from Debian's prometheus package.
func Promtool(tb testing.TB) string {
	tb.Helper()
	return Path(tb, "promtool", "make prometheus installs Debian's prometheus")
}

// SystemdAnalyze is systemd's checker, from Debian's systemd package.
func SystemdAnalyze(tb testing.TB) string {
	tb.Helper()
	return Path(tb, "systemd-analyze", "make prometheus installs Debian's systemd")
}
