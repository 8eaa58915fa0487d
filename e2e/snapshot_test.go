package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

// snapshotSaved is `snapshot save -o json`.
type snapshotSaved struct {
	Path      string `json:"path"`
	Endpoint  string `json:"endpoint"`
	Member    string `json:"member"`
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"totalKeys"`
	SHA256    string `json:"sha256"`
}

// snapshotRestored is `snapshot restore -o json`.
type snapshotRestored struct {
	Token   string `json:"token"`
	Members []struct {
		Name       string `json:"name"`
		ID         string `json:"id"`
		RestoreDir string `json:"restoreDir"`
		Written    string `json:"written"`
	} `json:"members"`
}

// TestSnapshotSaveAndRestore is the disaster drill: a snapshot saved from
// the hub with `etcd-staticpod snapshot save`, more writes, every member
// stopped and its data wiped, `snapshot restore` into the bundle's host
// folders, each member's data folder swapped for its restored one, and
// every member started again from its unchanged manifest. The new cluster
// has the data of the snapshot and nothing written after it, new member
// IDs (a new cluster token), and is healthy.
func TestSnapshotSaveAndRestore(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	ctx := stepContext(t, 5*time.Minute)
	cli := r.client(t, r.apiserver())
	list, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	oldIDs := map[string]uint64{}
	for _, m := range list.Members {
		oldIDs[m.Name] = m.ID
	}
	const before = 50
	for i := range before {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/snapshot/before/%02d", i), strings.Repeat("b", 1024)); err != nil {
			t.Fatalf("put: %v", err)
		}
	}

	// Saved from the hub, as an operator's machine would, finding every
	// member through the first host's bundle folder.
	file := filepath.Join(t.TempDir(), "etcd.db")
	begin := time.Now()
	cmd := r.lab.Command(ctx, r.tools.CLI, "snapshot", "save", file,
		"--bundle", r.bundle.HostRoot(r.bundle.Hosts[0].Name), "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("etcd-staticpod snapshot save: %v\n%s", err, stderr.String())
	}
	var saved snapshotSaved
	if err := json.Unmarshal(out, &saved); err != nil {
		t.Fatalf("snapshot save -o json: %v\n%s", err, out)
	}
	t.Logf("saved revision %d, %d keys from %s (%s) in %s", saved.Revision, saved.TotalKeys, saved.Member, saved.Endpoint, time.Since(begin).Round(time.Millisecond))
	if saved.TotalKeys != before || !slices.Contains(r.cluster.Endpoints(), saved.Endpoint) {
		t.Errorf("saved %+v, want %d keys from a member", saved, before)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: mode %v (%v), want 0600", fi.Mode(), err)
	}

	for i := range 10 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/snapshot/after/%d", i), "after"); err != nil {
			t.Fatalf("put: %v", err)
		}
	}

	// Down goes every member, as kubelet stops them once their manifests
	// leave the staticPodPath, and with them their data.
	begin = time.Now()
	for _, m := range r.cluster.Members {
		if err := m.Stop(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := emptyDir(m.DataDir()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("stopped every member and wiped its data in %s", time.Since(begin).Round(time.Millisecond))

	restore := exec.CommandContext(ctx, r.tools.CLI, "snapshot", "restore", file, "--out", r.bundle.Dir, "-o", "json")
	stderr.Reset()
	restore.Stderr = &stderr
	out, err = restore.Output()
	if err != nil {
		t.Fatalf("etcd-staticpod snapshot restore: %v\n%s", err, stderr.String())
	}
	var restored snapshotRestored
	if err := json.Unmarshal(out, &restored); err != nil {
		t.Fatalf("snapshot restore -o json: %v\n%s", err, out)
	}
	if len(restored.Members) != len(r.cluster.Members) {
		t.Fatalf("restored %d members, want %d: %s", len(restored.Members), len(r.cluster.Members), out)
	}
	announced := map[string]string{}
	for _, rm := range restored.Members {
		m := r.cluster.Member(rm.Name)
		if m == nil {
			t.Fatalf("restored an unknown member %s", rm.Name)
		}
		if want := m.Flag("data-dir") + ".restore-" + restored.Token; rm.RestoreDir != want {
			t.Errorf("%s: restored into %s, want %s beside its --data-dir", rm.Name, rm.RestoreDir, want)
		}
		// The swap: the restored folder's content becomes the data folder's.
		if err := moveContent(rm.Written, m.DataDir()); err != nil {
			t.Fatal(err)
		}
		announced[rm.Name] = rm.ID
	}

	for _, m := range r.cluster.Members {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	begin = time.Now()
	for _, m := range r.cluster.Members {
		if err := m.WaitReady(ctx); err != nil {
			t.Fatalf("restored cluster: %v", err)
		}
	}
	t.Logf("restored cluster ready %s after start", time.Since(begin).Round(time.Millisecond))

	cli = r.client(t, r.apiserver())
	list, err = cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	if len(list.Members) != len(r.cluster.Members) {
		t.Errorf("restored cluster has %d members: %v", len(list.Members), list.Members)
	}
	for _, m := range list.Members {
		id := fmt.Sprintf("%x", m.ID)
		if m.ID == oldIDs[m.Name] || id != announced[m.Name] {
			t.Errorf("member %s has ID %s; before the restore it was %x, the restore announced %s", m.Name, id, oldIDs[m.Name], announced[m.Name])
		}
	}
	got, err := cli.Get(ctx, "/registry/snapshot/before/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != before {
		t.Errorf("keys written before the snapshot: %v, %v; want %d", got, err, before)
	}
	got, err = cli.Get(ctx, "/registry/snapshot/after/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != 0 {
		t.Errorf("keys written after the snapshot: %v, %v; want none", got, err)
	}
	checkHealth(t, r, nil)
}

// emptyDir removes everything inside dir and keeps dir itself, which is
// the source of the member's bind mount.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// moveContent moves every entry of from into the empty folder to and
// removes from.
func moveContent(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return fmt.Errorf("swap in the restored data: %w", err)
		}
	}
	return os.Remove(from)
}
