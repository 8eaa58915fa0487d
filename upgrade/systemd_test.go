package upgrade_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestUpgradeSystemd upgrades a loopback cluster of runtime systemd from
// etcd 3.6.8 to 3.6.16 through the built binary. Each member runs the etcd
// its host folder carries at the unit's ExecStart path with --config-file,
// and is restarted when its etcd ends, as systemd would. The --exec hook
// swaps the binary it is handed in the host folder and stands in for
// `systemctl restart etcd` by ending the member's etcd.
func TestUpgradeSystemd(t *testing.T) {
	etcd := etcdtest.EtcdBinary(t)
	next := etcdtest.NextEtcdBinary(t)
	bin, c, pids := supervisedSystemd(t, "--etcd-binary", etcd)
	dir := c.Dir
	base := []string{"upgrade", "--etcd-version", "3.6.16-0", "--out", dir, "--timeout", "5s"}
	run := func(args ...string) (string, string, int) {
		return etcdtest.Exec(t, bin, append(append([]string{}, base...), args...)...)
	}
	specBefore, err := os.ReadFile(filepath.Join(dir, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}

	// Refused, nothing changed: no binary while the bundles carry one, and
	// a binary of another release.
	before := etcdtest.Tree(t, dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--etcd-binary: the bundles carry the etcd of " + etcd},
		{[]string{"--etcd-binary", etcd}, `--etcd-binary "` + etcd + `": it is etcd 3.6.8, not 3.6.16`},
		{[]string{"--etcd-binary", dir}, "not a regular file"},
	} {
		_, stderr, code := run(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("upgrade %q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if d := etcdtest.DiffTree(before, etcdtest.Tree(t, dir)); len(d) > 0 {
		t.Errorf("refused upgrades changed %v", d)
	}

	// The plan names the binary; nothing changes.
	_, stderr, code := run("--etcd-binary", next, "--dry-run")
	if code != 0 || strings.Count(stderr, "/usr/local/bin/etcd for 3.6.16 and wait for it") != 3 {
		t.Errorf("upgrade --dry-run: exit %d\n%s", code, stderr)
	}
	if d := etcdtest.DiffTree(before, etcdtest.Tree(t, dir)); len(d) > 0 {
		t.Errorf("a dry run changed %v", d)
	}

	// Without --exec the first host's turn prints its steps and waits; a
	// member that does not come back stops the upgrade there.
	_, stderr, code = run("--etcd-binary", next, "--wait", "3s")
	t.Logf("upgrade without --exec:\n%s", stderr)
	for _, w := range []string{
		"scp -p " + next + " root@",
		":/usr/local/bin/etcd.new && ssh root@",
		" 'mv /usr/local/bin/etcd.new /usr/local/bin/etcd && systemctl restart etcd.service'",
		"stopped at etcd0", "upgraded: none",
	} {
		if !strings.Contains(stderr, w) {
			t.Errorf("upgrade without --exec: exit %d, stderr lacks %q", code, w)
		}
	}
	if code != 1 {
		t.Errorf("upgrade without --exec: exit %d, want 1", code)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, layout.SpecFile)); !bytes.Equal(b, specBefore) {
		t.Errorf("a stopped upgrade changed the spec:\n%s", b)
	}

	hookLog := filepath.Join(t.TempDir(), "hook.log")
	hook := `echo {name} "$ETCD_STATICPOD_ETCD_VERSION" "$ETCD_STATICPOD_ETCD_BINARY" "$ETCD_STATICPOD_ETCD_PATH" >> ` + hookLog + ` &&
		install -m 0755 "$ETCD_STATICPOD_ETCD_BINARY" {folder}"$ETCD_STATICPOD_ETCD_PATH.new" &&
		mv {folder}"$ETCD_STATICPOD_ETCD_PATH.new" {folder}"$ETCD_STATICPOD_ETCD_PATH" &&
		kill "$(cat ` + pids + `/{name}.pid)"`
	stdout, stderr, code := run("--etcd-binary", next, "--exec", hook, "--wait", "2m", "-o", "json")
	t.Logf("upgrade --exec:\n%s", stderr)
	if code != 0 {
		t.Fatalf("upgrade --exec: exit %d\n%s\n%s", code, stdout, stderr)
	}
	order := upgradedAll(t, stdout)
	// The hook got the new binary and the unit's path, once per host, in
	// the order of the upgrade.
	b, err := os.ReadFile(hookLog)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, name := range order {
		want.WriteString(name + " 3.6.16 " + next + " " + layout.EtcdBinary + "\n")
	}
	if string(b) != want.String() {
		t.Errorf("the hook ran with:\n%s\nwant:\n%s", b, want.String())
	}
	nextBytes, err := os.ReadFile(next)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range order {
		if got, err := os.ReadFile(layout.OnHost(filepath.Join(dir, h), layout.EtcdBinary)); err != nil || !bytes.Equal(got, nextBytes) {
			t.Errorf("%s's folder does not carry etcd 3.6.16: %v", h, err)
		}
	}
	checkRuns(t, c, "3.6.16")
	recorded, err := spec.Load(filepath.Join(dir, layout.SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	if recorded.Etcd.Version != "3.6.16-0" || recorded.EtcdBinary != next {
		t.Errorf("recorded etcd.version %q, etcdBinary %q", recorded.Etcd.Version, recorded.EtcdBinary)
	}
}
