// Package harness runs the etcd static Pods that etcd-staticpod generates
// as kubelet would, on throwaway hosts: one network namespace per host with
// the host's address, joined by a bridge in a hub namespace, and a private
// mount namespace per etcd process in which the Pod's hostPath volumes are
// the host's bundle. The test itself talks to the members from the hub.
package harness

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Tools are the programs the tests run.
type Tools struct {
	// Etcd is ETCD_BIN, the release the manifests name by default.
	Etcd string
	// EtcdNext is ETCD_NEXT_BIN, the release upgrades go to; optional.
	EtcdNext string
	// EtcdByTag maps an etcd image tag (3.6.8-0) to the binary of that
	// release, which replaces argv[0] of a manifest's container command.
	// RequireTools fills it from each binary's --version.
	EtcdByTag map[string]string
	// Etcdctl and Etcdutl are optional.
	Etcdctl, Etcdutl string
	// CLI is the etcd-staticpod binary under test.
	CLI string
}

// InCI reports whether we run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTools finds the programs from ETCD_BIN, ETCD_NEXT_BIN (optional;
// see RequireImage), ETCDCTL_BIN, ETCDUTL_BIN and ETCD_STATICPOD_BIN.
// Without ETCD_BIN the test is skipped, except in CI
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
	etcd, err := resolveBin(tools.Etcd)
	if err != nil {
		t.Fatalf("ETCD_BIN: %v", err)
	}
	tools.Etcd = etcd
	tools.EtcdByTag = map[string]string{}
	if err := tools.addEtcd(etcd); err != nil {
		t.Fatalf("ETCD_BIN: %v", err)
	}
	if next := os.Getenv("ETCD_NEXT_BIN"); next != "" {
		if next, err = resolveBin(next); err == nil {
			err = tools.addEtcd(next)
		}
		if err != nil {
			t.Fatalf("ETCD_NEXT_BIN: %v", err)
		}
		tools.EtcdNext = next
	}
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

// resolveBin makes a binary's path absolute and resolved: it is what
// /proc/PID/exe shows.
func resolveBin(bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	return abs, err
}

// addEtcd files the binary under the image tag of its release: etcd
// v3.6.8 is registry.k8s.io/etcd:3.6.8-0.
func (t *Tools) addEtcd(bin string) error {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", bin, err)
	}
	version, err := parseEtcdVersion(string(out))
	if err != nil {
		return fmt.Errorf("%s --version: %w", bin, err)
	}
	t.EtcdByTag[version+"-0"] = bin
	return nil
}

// parseEtcdVersion reads "etcd Version: 3.6.8" from etcd --version.
func parseEtcdVersion(out string) (string, error) {
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "etcd Version: "); ok && v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("no \"etcd Version:\" line in %q", out)
}

// ImageTag is the tag of an image reference: 3.6.8-0 of
// registry.k8s.io/etcd:3.6.8-0.
func ImageTag(image string) (string, error) {
	name := image[strings.LastIndex(image, "/")+1:]
	if strings.Contains(name, "@") {
		return "", fmt.Errorf("image %q: a digest names no release; use a tag", image)
	}
	_, tag, ok := strings.Cut(name, ":")
	if !ok || tag == "" {
		return "", fmt.Errorf("image %q has no tag", image)
	}
	return tag, nil
}

// EtcdFor is the binary that runs the image, chosen by its tag.
func (t Tools) EtcdFor(image string) (string, error) {
	tag, err := ImageTag(image)
	if err != nil {
		return "", err
	}
	bin, ok := t.EtcdByTag[tag]
	if !ok {
		return "", fmt.Errorf("no etcd binary for image %s: tags with a binary are %v (ETCD_BIN, ETCD_NEXT_BIN)", image, slices.Sorted(maps.Keys(t.EtcdByTag)))
	}
	return bin, nil
}

// RequireImage skips the test unless a binary runs the image tag (3.6.16-0),
// except in CI, where every binary `make test` builds must be there.
func (t Tools) RequireImage(tb testing.TB, tag string) {
	tb.Helper()
	if _, ok := t.EtcdByTag[tag]; ok {
		return
	}
	msg := fmt.Sprintf("no etcd binary for image tag %s (have %v): run `make test` or set ETCD_NEXT_BIN", tag, slices.Sorted(maps.Keys(t.EtcdByTag)))
	if InCI() {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}
