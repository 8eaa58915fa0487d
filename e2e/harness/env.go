// Package harness runs the etcd static Pods that etcd-staticpod generates
// as kubelet would, on throwaway hosts: one network namespace per host with
// the host's address, joined by a bridge in a hub namespace, and a private
// mount namespace per etcd process in which the Pod's hostPath volumes are
// the host's bundle. The test itself talks to the members from the hub.
package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tools are the programs the tests run.
type Tools struct {
	// Etcd replaces argv[0] of the manifest's container command.
	Etcd string
	// Etcdctl and Etcdutl are optional.
	Etcdctl, Etcdutl string
	// CLI is the etcd-staticpod binary under test.
	CLI string
}

// InCI reports whether we run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTools finds the programs from ETCD_BIN, ETCDCTL_BIN, ETCDUTL_BIN and
// ETCD_STATICPOD_BIN. Without ETCD_BIN the test is skipped, except in CI
// where a missing etcd means a broken pipeline and fails. Without
// ETCD_STATICPOD_BIN the CLI is built from this module.
func RequireTools(t testing.TB) Tools {
	t.Helper()
	tools := Tools{
		Etcd:    os.Getenv("ETCD_BIN"),
		Etcdctl: os.Getenv("ETCDCTL_BIN"),
		Etcdutl: os.Getenv("ETCDUTL_BIN"),
		CLI:     os.Getenv("ETCD_STATICPOD_BIN"),
	}
	if tools.Etcd == "" {
		if InCI() {
			t.Fatal("ETCD_BIN is not set in CI; run the tests through `make test`")
		}
		t.Skip("ETCD_BIN is not set: run `make etcd` and `make test` (or set ETCD_BIN) to run the end-to-end tests")
	}
	// An absolute, resolved path: it is what /proc/PID/exe shows.
	etcd, err := filepath.Abs(tools.Etcd)
	if err == nil {
		etcd, err = filepath.EvalSymlinks(etcd)
	}
	if err != nil {
		t.Fatalf("ETCD_BIN: %v", err)
	}
	tools.Etcd = etcd
	if tools.CLI == "" {
		tools.CLI = buildCLI(t)
	} else if _, err := os.Stat(tools.CLI); err != nil {
		t.Fatalf("ETCD_STATICPOD_BIN: %v", err)
	}
	return tools
}

// buildCLI compiles the CLI for runs outside `make test`; the build cache
// makes every build after the first cheap.
func buildCLI(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "etcd-staticpod")
	cmd := exec.Command("go", "build", "-o", out, "github.com/etcd-staticpod/etcd-staticpod/cmd/etcd-staticpod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ETCD_STATICPOD_BIN is not set and building the CLI failed: %v\n%s", err, b)
	}
	t.Logf("ETCD_STATICPOD_BIN is not set: built the CLI into %s", out)
	return out
}
