package snapshot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// TestRestoreSystemd restores a snapshot of a cluster of runtime systemd,
// whose members run etcd with --config-file as their units do, through the
// built binary: the runbook stops and starts etcd.service and swaps the
// folder the unit's DynamicUser= keeps the data in, /var/lib/private/etcd.
// Each host's swap command runs verbatim in a folder that stands for the
// host's /var/lib (the data folder a link into private/, as systemd makes
// it), and the members start on the restored data through that link.
func TestRestoreSystemd(t *testing.T) {
	bin := etcdtest.CLIBinary(t)
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(bin), 3, "--runtime", "systemd")
	c := etcdtest.Run(t, dir)
	ctx := context.Background()
	bundle := filepath.Join(dir, "etcd01")
	tgt, err := etcdops.Resolve(ctx, etcdops.Options{Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := tgt.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	for i := range 10 {
		if _, err := kv.Put(ctx, fmt.Sprintf("/registry/before/%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	waitStorageVersion(t, kv, c.Endpoints())
	file := filepath.Join(t.TempDir(), "etcd.db")
	if _, stderr, code := etcdtest.Exec(t, bin, "snapshot", "save", file, "--bundle", bundle); code != 0 {
		t.Fatalf("snapshot save: exit %d: %s", code, stderr)
	}
	if _, err := kv.Put(ctx, "/registry/after/00", "v"); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := etcdtest.Exec(t, bin, "snapshot", "restore", file, "--out", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	var doc struct {
		Token   string `json:"token"`
		Members []struct {
			restoredMember
			Runtime  string   `json:"runtime"`
			DataDir  string   `json:"dataDir"`
			StateDir string   `json:"stateDir"`
			AsideDir string   `json:"asideDir"`
			Source   string   `json:"source"`
			Copy     string   `json:"copy"`
			Stop     []string `json:"stop"`
			Start    []string `json:"start"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Members) != 3 {
		t.Fatalf("restore -o json: %v\n%s", err, stdout)
	}
	tok := doc.Token
	for _, rm := range doc.Members {
		host := filepath.Join(dir, rm.Name)
		got := []string{
			rm.Runtime, fmt.Sprint(rm.Source == layout.OnHost(host, layout.EtcdConfig)),
			rm.DataDir, rm.StateDir, rm.RestoreDir, rm.AsideDir,
			strings.Join(rm.Stop, ";"), strings.Join(rm.Start, ";"),
		}
		want := []string{
			"systemd", "true",
			"/var/lib/etcd", "/var/lib/private/etcd", "/var/lib/etcd.restore-" + tok, "/var/lib/private/etcd.before-restore-" + tok,
			"systemctl stop etcd.service", "systemctl start --no-block etcd.service",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: restored as %q, want %q", rm.Name, got, want)
		}
		if !strings.HasSuffix(rm.Copy, ":/var/lib/") {
			t.Errorf("%s: copy %q", rm.Name, rm.Copy)
		}
	}

	// The runbook, as a table: the systemd steps and where the data goes.
	stdout, stderr, code = etcdtest.Exec(t, bin, "snapshot", "restore", file, "--out", dir, "--node", "etcd02", "--token", "runbook")
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	t.Logf("snapshot restore --node etcd02:\n%s", stdout)
	for _, w := range []string{
		"'systemctl stop etcd.service'",
		"mv /var/lib/etcd.restore-runbook /var/lib/private/etcd'",
		"DynamicUser= keeps the data in /var/lib/private/etcd (/var/lib/etcd is a link to it)",
		"Leave it owned by root",
		"'systemctl start --no-block etcd.service'",
		"'rm -rf /var/lib/private/etcd.before-restore-runbook'",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("the runbook lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stdout, "kubelet") || strings.Contains(stdout, "manifest") {
		t.Errorf("the runbook of a systemd cluster speaks of static Pods:\n%s", stdout)
	}
	if err := os.RemoveAll(filepath.Join(dir, "etcd02", "var/lib/etcd.restore-runbook")); err != nil {
		t.Fatal(err)
	}
	// On the node itself: the same steps, run there.
	root := t.TempDir()
	stdout, stderr, code = etcdtest.Exec(t, bin, "snapshot", "restore", file, "--config", filepath.Join(dir, layout.SpecFile), "--node", "etcd03", "--root", root, "--token", "node")
	if code != 0 {
		t.Fatalf("node restore: exit %d: %s", code, stderr)
	}
	for _, w := range []string{
		"\n  systemctl stop etcd.service\n",
		"\n  { [ ! -e /var/lib/private/etcd ] || mv /var/lib/private/etcd /var/lib/private/etcd.before-restore-node; } && mkdir -p -m 0700 /var/lib/private && mv /var/lib/etcd.restore-node /var/lib/private/etcd\n",
		"\n  systemctl start --no-block etcd.service\n",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("the node's runbook lacks %q:\n%s", w, stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/etcd.restore-node/member/snap/db")); err != nil {
		t.Errorf("node restore: %v", err)
	}

	// Stop every member, then swap as printed, in a /var/lib of each host's
	// own, where the data folder is systemd's link into private/.
	for _, m := range c.Members {
		c.Stop(t, m.Name)
	}
	for i, rm := range doc.Members {
		m := c.Member(rm.Name)
		varLib := filepath.Join(t.TempDir(), "var", "lib")
		if err := os.MkdirAll(filepath.Join(varLib, "private"), 0o700); err != nil {
			t.Fatal(err)
		}
		// The member's old data is the state folder; etcd's data folder is
		// the link to it.
		if err := os.Rename(m.DataDir, filepath.Join(varLib, "private", "etcd")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("private/etcd", filepath.Join(varLib, "etcd")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(varLib, "etcd"), m.DataDir); err != nil {
			t.Fatal(err)
		}
		// The copy: scp -rp puts the folder beside the link.
		if err := exec.Command("cp", "-rp", rm.Written, varLib+"/").Run(); err != nil {
			t.Fatal(err)
		}
		swap := strings.ReplaceAll(strings.Join(doc.Members[i].Swap, " && "), "/var/lib/", varLib+"/")
		if out, err := exec.Command("sh", "-c", swap).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", swap, err, out)
		}
		if _, err := os.Stat(filepath.Join(varLib, "private", "etcd.before-restore-"+tok, "member")); err != nil {
			t.Errorf("%s: the old data is not aside: %v", rm.Name, err)
		}
		if _, err := os.Stat(filepath.Join(varLib, "etcd", "member", "snap", "db")); err != nil {
			t.Errorf("%s: the restored data is not behind the link: %v", rm.Name, err)
		}
	}
	starter := &goroutineTB{TB: t}
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Go(func() { c.Start(starter, m.Name) })
	}
	wg.Wait()
	if len(starter.errs) > 0 {
		t.Fatal(strings.Join(starter.errs, "\n"))
	}
	tgt, err = etcdops.Resolve(ctx, etcdops.Options{Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range etcdops.Health(ctx, tgt) {
		if !h.Healthy {
			t.Errorf("%s unhealthy after the restore: %s", h.Endpoint, h.Error)
		}
	}
	kv2, err := tgt.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kv2.Close()
	if got, err := kv2.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || got.Count != 10 {
		t.Errorf("keys after the restore: %v, %v; want the 10 from before the snapshot", got, err)
	}
}
