// Package promtooltest finds Prometheus' own checker, promtool, for the
// tests that check what we write for Prometheus with it.
package promtooltest

import (
	"os"
	"os/exec"
	"testing"
)

// Path is promtool's path (Debian's prometheus package; `make prometheus`
// installs it). Without it the test is skipped, except in CI, where it
// fails: CI must not pass on checks it did not run.
func Path(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("promtool is needed: make prometheus")
		}
		tb.Skip("no promtool: make prometheus installs it")
	}
	return p
}
