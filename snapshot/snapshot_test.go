package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.uber.org/zap"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/snapshot"
)

// savedDoc is `snapshot save -o json`.
type savedDoc struct {
	Path           string `json:"path"`
	Endpoint       string `json:"endpoint"`
	Member         string `json:"member"`
	Revision       int64  `json:"revision"`
	TotalKeys      int    `json:"totalKeys"`
	Size           int64  `json:"size"`
	SHA256         string `json:"sha256"`
	StorageVersion string `json:"storageVersion"`
	Hash           uint32 `json:"hash"`
}

// restoredDoc is `snapshot restore -o json`.
type restoredDoc struct {
	Token          string           `json:"token"`
	ClusterID      string           `json:"clusterID"`
	InitialCluster string           `json:"initialCluster"`
	Members        []restoredMember `json:"members"`
}

type restoredMember struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	PeerURLs   []string `json:"peerURLs"`
	RestoreDir string   `json:"restoreDir"`
	Written    string   `json:"written"`
	Swap       []string `json:"swap"`
}

// wantRefusal expects exit status 2 and one error line containing want.
func wantRefusal(t *testing.T, bin, want string, args ...string) {
	t.Helper()
	stdout, stderr, code := etcdtest.Exec(t, bin, args...)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "error: ") || !strings.Contains(lines[0], want) {
		t.Errorf("%v: exit %d, stderr %q, want exit 2 and one error line with %q", args, code, stderr, want)
	}
	if stdout != "" {
		t.Errorf("%v: printed %q on a refusal", args, stdout)
	}
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	if d := etcdtest.DiffTree(before, after); len(d) > 0 {
		t.Errorf("%s changed %v", what, d)
	}
}

// waitStorageVersion waits until every member reports a storage version.
func waitStorageVersion(t *testing.T, cli *clientv3.Client, endpoints []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, ep := range endpoints {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := cli.Status(ctx, ep)
			cancel()
			if err == nil && st.StorageVersion != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s reports no storage version (%v)", ep, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// goroutineTB lets a blocking call that takes a testing.TB run in a
// goroutine of its own: a fatal failure is recorded and ends only that
// goroutine, as FailNow must not be called outside the test's goroutine.
type goroutineTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (g *goroutineTB) Helper() {}

func (g *goroutineTB) Fatal(args ...any) { g.fail(fmt.Sprint(args...)) }

func (g *goroutineTB) Fatalf(format string, args ...any) { g.fail(fmt.Sprintf(format, args...)) }

func (g *goroutineTB) fail(msg string) {
	g.mu.Lock()
	g.errs = append(g.errs, msg)
	g.mu.Unlock()
	runtime.Goexit()
}

// etcdutl is $ETCDUTL_BIN, else .bin/etcdutl, else "".
func etcdutl(t *testing.T) string {
	if p := os.Getenv("ETCDUTL_BIN"); p != "" {
		return p
	}
	p := filepath.Join(etcdtest.ModuleRoot(t), ".bin", "etcdutl")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// readRaftSnap is a raft snapshot file's metadata and the path and value of
// every node of the v2 store it holds, without their indexes: etcdutl adds
// the members in map order, which differs from one run to the next.
func readRaftSnap(t *testing.T, path string) (string, map[string]string) {
	t.Helper()
	rs, err := snap.Read(zap.NewNop(), path)
	if err != nil {
		t.Fatal(err)
	}
	var store struct{ Root json.RawMessage }
	if err := json.Unmarshal(rs.Data, &store); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	type node struct {
		Path     string
		Value    string
		Children map[string]json.RawMessage
	}
	nodes := map[string]string{}
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var n node
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		nodes[n.Path] = n.Value
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(store.Root)
	return rs.Metadata.String(), nodes
}

// dbStatus is `etcdutl snapshot status` of a database file.
func dbStatus(t *testing.T, util, path string) string {
	t.Helper()
	out, err := exec.Command(util, "snapshot", "status", path, "-w", "json").Output()
	if err != nil {
		t.Fatalf("etcdutl snapshot status %s: %v", path, err)
	}
	var st map[string]any
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	// The pages bbolt allocated follow the members' order (see above).
	delete(st, "totalSize")
	return fmt.Sprint(st)
}

// TestSaveAndRestore saves a snapshot of a real three-member cluster with
// the command, checks it, then restores it over the cluster: the data of
// the snapshot comes back, later writes do not, the members are new.
func TestSaveAndRestore(t *testing.T) {
	bin := etcdtest.CLIBinary(t)
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(bin), 3)
	c := etcdtest.Run(t, dir)
	ctx := context.Background()
	bundle := filepath.Join(dir, "etcd01")
	tgt, err := etcdops.Resolve(ctx, etcdops.Options{Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	oldIDs := map[string]uint64{}
	for _, m := range tgt.Members {
		oldIDs[m.Name] = m.ID
	}
	kv, err := tgt.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	// Enough data for the stream to come in many messages.
	value := strings.Repeat("v", 32*1024)
	var lastRev int64
	const before = 40
	for i := range before {
		r, err := kv.Put(ctx, fmt.Sprintf("/registry/before/%02d", i), value)
		if err != nil {
			t.Fatal(err)
		}
		lastRev = r.Header.Revision
	}

	// etcd records its storage version in the database a moment after the
	// cluster version is decided; a snapshot taken before has none.
	waitStorageVersion(t, kv, c.Endpoints())

	snapDir := t.TempDir()
	file := filepath.Join(snapDir, "etcd.db")
	// The snapshot every subtest below reads is taken here, so that each
	// of them runs alone (go test -run TestSaveAndRestore/restore) too.
	saveStart := time.Now()
	// Flags after FILE are read too.
	stdout, stderr, code := etcdtest.Exec(t, bin, "snapshot", "save", file, "--bundle", bundle, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Logf("saved %s in %s", file, time.Since(saveStart).Round(time.Millisecond))
	var saved savedDoc
	if err := json.Unmarshal([]byte(stdout), &saved); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	t.Run("save", func(t *testing.T) {
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v (%v), want 0600", fi.Mode(), err)
		}
		if saved.SHA256 != fileSHA256(t, file) || saved.Size != fi.Size() || saved.Path != file {
			t.Errorf("printed %+v; the file has size %d and SHA-256 %s", saved, fi.Size(), fileSHA256(t, file))
		}
		if saved.TotalKeys != before || saved.Revision != lastRev || saved.StorageVersion == "" || !slices.Contains(c.Endpoints(), saved.Endpoint) || saved.Member == "" {
			t.Errorf("printed %+v, want %d keys at revision %d from a member", saved, before, lastRev)
		}
		if names, _ := os.ReadDir(snapDir); len(names) != 1 {
			t.Errorf("snapshot folder holds %v", names)
		}
		// etcd's own tool reads the file the same way.
		if util := etcdutl(t); util != "" {
			out, err := exec.Command(util, "snapshot", "status", file, "-w", "json").Output()
			if err != nil {
				t.Fatalf("etcdutl snapshot status: %v", err)
			}
			var st struct {
				Hash     uint32 `json:"hash"`
				Revision int64  `json:"revision"`
				TotalKey int    `json:"totalKey"`
			}
			if err := json.Unmarshal(out, &st); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if st.Hash != saved.Hash || st.Revision != saved.Revision || st.TotalKey != saved.TotalKeys {
				t.Errorf("etcdutl says %+v, we said %+v", st, saved)
			}
		}
	})

	t.Run("named endpoint and table", func(t *testing.T) {
		m := c.Member("etcd03")
		other := filepath.Join(t.TempDir(), "from-etcd03.db")
		stdout, stderr, code := etcdtest.Exec(t, bin, "snapshot", "save", "--bundle", bundle, "--endpoint", m.ClientURL, other)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"FROM             etcd03 (" + m.ClientURL + ")", "SHA256           " + fileSHA256(t, other), fmt.Sprintf("TOTAL KEYS       %d", before)} {
			if !strings.Contains(stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, stdout)
			}
		}
		stdout, _, code = etcdtest.Exec(t, bin, "snapshot", "status", other)
		if code != 0 || !strings.Contains(stdout, fileSHA256(t, other)) {
			t.Errorf("status: exit %d\n%s", code, stdout)
		}
	})

	t.Run("damaged file", func(t *testing.T) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/3] ^= 0x10
		damaged := filepath.Join(t.TempDir(), "damaged.db")
		if err := os.WriteFile(damaged, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := etcdtest.Exec(t, bin, "snapshot", "status", damaged)
		if code != 1 || !strings.Contains(stderr, "the data is damaged") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("status of a damaged file: exit %d, %q", code, stderr)
		}
		was := etcdtest.Tree(t, dir)
		wantRefusal(t, bin, "the data is damaged", "snapshot", "restore", damaged, "--out", dir)
		sameTree(t, "restore of a damaged file", was, etcdtest.Tree(t, dir))
	})

	t.Run("interrupted save keeps the old file", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "etcd.db")
		if err := os.WriteFile(dst, []byte("yesterday's snapshot"), 0o600); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		calls := 0
		_, err := snapshot.Save(cctx, snapshot.SaveOptions{Target: tgt, Path: dst, Progress: func(done, total int64) {
			calls++
			if total <= 0 {
				t.Errorf("no expected size")
			}
			cancel()
		}})
		if err == nil || calls == 0 {
			t.Fatalf("cancelled save: err %v after %d chunks", err, calls)
		}
		t.Logf("cancelled save: %v", err)
		got, _ := os.ReadFile(dst)
		names, _ := os.ReadDir(filepath.Dir(dst))
		if string(got) != "yesterday's snapshot" || len(names) != 1 {
			t.Errorf("after a cancelled save the folder holds %v and the file %q", names, got)
		}
	})

	t.Run("save refuses bad input", func(t *testing.T) {
		wantRefusal(t, bin, "no such file or directory", "snapshot", "save", filepath.Join(t.TempDir(), "missing", "etcd.db"), "--bundle", bundle)
		wantRefusal(t, bin, "exists and is not a regular file", "snapshot", "save", t.TempDir(), "--bundle", bundle)
		wantRefusal(t, bin, "not one of the cluster's client URLs", "snapshot", "save", filepath.Join(t.TempDir(), "x.db"), "--bundle", bundle, "--endpoint", "https://127.0.0.99:2379")
		wantRefusal(t, bin, "FILE: missing", "snapshot", "save", "--bundle", bundle)
		wantRefusal(t, bin, `unexpected argument "b.db": etcd-staticpod snapshot save takes one FILE`, "snapshot", "save", "a.db", "b.db", "--bundle", bundle)
		wantRefusal(t, bin, `FILE "": must not be empty`, "snapshot", "save", "", "--bundle", bundle)
		wantRefusal(t, bin, `--output "xml"`, "snapshot", "save", "a.db", "--bundle", bundle, "-o", "xml")
	})

	// Writes after the snapshot must be gone once it is restored.
	for i := range 5 {
		if _, err := kv.Put(ctx, fmt.Sprintf("/registry/after/%d", i), "later"); err != nil {
			t.Fatal(err)
		}
	}
	kv.Close()

	t.Run("a member down", func(t *testing.T) {
		c.Stop(t, "etcd02")
		dst := filepath.Join(t.TempDir(), "etcd.db")
		// The stopped member is given up on after the timeout.
		quick := *tgt
		quick.Timeout = 2 * time.Second
		res, err := snapshot.Save(ctx, snapshot.SaveOptions{Target: &quick, Path: dst})
		if err != nil {
			t.Fatal(err)
		}
		// One note names the member passed over.
		passedOver := len(res.Notes) == 1 && strings.Contains(res.Notes[0], "passed over "+c.Member("etcd02").ClientURL)
		if res.Source.Name == "etcd02" || !res.Source.Healthy || !passedOver || res.TotalKeys != before+5 {
			t.Errorf("saved from %+v with notes %v, %d keys", res.Source, res.Notes, res.TotalKeys)
		}
		down := res.Candidates[len(res.Candidates)-1]
		if down.Endpoint != c.Member("etcd02").ClientURL || down.Error == "" {
			t.Errorf("the stopped member is not last with its error: %+v", res.Candidates)
		}
		// Named, it is an error of the cluster, not of the input.
		_, stderr, code := etcdtest.Exec(t, bin, "snapshot", "save", dst, "--bundle", bundle, "--endpoint", down.Endpoint, "--timeout", "2s")
		if code != 1 || !strings.Contains(stderr, "no member gave its status") {
			t.Errorf("save from a stopped member: exit %d, %s", code, stderr)
		}
	})

	// With its quorum gone, the last member still has the data: saving
	// from it is how a cluster beyond repair is rescued.
	t.Run("no quorum", func(t *testing.T) {
		c.Stop(t, "etcd03")
		dst := filepath.Join(t.TempDir(), "rescued.db")
		stdout, stderr, code := etcdtest.Exec(t, bin, "snapshot", "save", dst, "--bundle", bundle, "--timeout", "2s", "-o", "json")
		var doc savedDoc
		if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil {
			t.Fatalf("exit %d: %s%s", code, stdout, stderr)
		}
		if doc.Member != "etcd01" || doc.TotalKeys != before+5 || !strings.Contains(stderr, "note: no member is healthy; saving from "+c.Member("etcd01").ClientURL) {
			t.Errorf("rescue: %+v, stderr %q", doc, stderr)
		}
	})
	// Every member stopped for the restore, whichever subtests ran.
	for _, m := range c.Members {
		c.Stop(t, m.Name)
	}

	t.Run("restore refuses bad input", func(t *testing.T) {
		was := etcdtest.Tree(t, dir)
		// Another member's flags in one host's manifest.
		mf := layout.OnHost(filepath.Join(dir, "etcd02"), layout.EtcdManifest)
		orig, err := os.ReadFile(mf)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			want string
			args []string
		}{
			{"no cluster.yaml there", []string{"--out", t.TempDir()}},
			{`--node "etcd09": no such host`, []string{"--out", dir, "--node", "etcd09", "--token", "abc"}},
			{"give --token", []string{"--out", dir, "--node", "etcd02"}},
			{`--root "/": needs --node`, []string{"--out", dir, "--root", "/"}},
			{`--token "../x"`, []string{"--out", dir, "--token", "../x"}},
			{`--bump-revision "-1"`, []string{"--out", dir, "--bump-revision", "-1"}},
			// Added to the revision, it would wrap etcd's int64 negative.
			{`--bump-revision "9223372036854775807": want a whole number from 1 to 4611686018427387904`, []string{"--out", dir, "--bump-revision", "9223372036854775807"}},
			{`--bump-revision "4611686018427387905"`, []string{"--out", dir, "--bump-revision", "4611686018427387905"}},
			{"unexpected argument", []string{"--out", dir, file}},
		} {
			wantRefusal(t, bin, tc.want, append([]string{"snapshot", "restore", file}, tc.args...)...)
		}
		wantRefusal(t, bin, "no such file", "snapshot", "restore", filepath.Join(t.TempDir(), "none.db"), "--out", dir)
		sameTree(t, "refused restores", was, etcdtest.Tree(t, dir))

		bad := bytes.Replace(orig, []byte("--name=etcd02"), []byte("--name=etcd03"), 1)
		if err := os.WriteFile(mf, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, bin, "runs member --name=etcd03, but it is in the folder of host etcd02", "snapshot", "restore", file, "--out", dir)
		if err := os.WriteFile(mf, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		sameTree(t, "refused restores", was, etcdtest.Tree(t, dir))
	})

	const bump = 1000
	var doc restoredDoc
	t.Run("restore", func(t *testing.T) {
		stdout, stderr, code := etcdtest.Exec(t, bin, "snapshot", "restore", file, "--out", dir, "--bump-revision", fmt.Sprint(bump), "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		if len(doc.Members) != 3 || doc.Token == "" {
			t.Fatalf("restore printed %s", stdout)
		}
		for _, rm := range doc.Members {
			m := c.Member(rm.Name)
			if rm.RestoreDir != "/var/lib/etcd.restore-"+doc.Token || rm.Written != filepath.Join(m.Bundle, rm.RestoreDir) {
				t.Errorf("%s restored into %s (%s)", rm.Name, rm.RestoreDir, rm.Written)
			}
			if !slices.Equal(rm.PeerURLs, []string{m.PeerURL}) || !strings.Contains(doc.InitialCluster, rm.Name+"="+m.PeerURL) {
				t.Errorf("%s: peer URLs %v in %s, want %s", rm.Name, rm.PeerURLs, doc.InitialCluster, m.PeerURL)
			}
			if fi, err := os.Stat(rm.Written); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: %v (%v), want a 0700 folder", rm.Written, fi.Mode(), err)
			}
			if len(rm.Swap) != 1 || !strings.Contains(rm.Swap[0], "mv /var/lib/etcd.restore-"+doc.Token+" /var/lib/etcd") {
				t.Errorf("%s: swap %q", rm.Name, rm.Swap)
			}
			// No temp folder beside it.
			entries, _ := os.ReadDir(filepath.Dir(rm.Written))
			for _, e := range entries {
				if atomicfile.IsTemp(e.Name()) {
					t.Errorf("temp folder %s left behind", e.Name())
				}
			}
		}

		// The members' databases are the one finished database, byte for
		// byte: the first finished in place, the others made equal to it.
		firstDB := fileSHA256(t, filepath.Join(doc.Members[0].Written, "member/snap/db"))
		for _, rm := range doc.Members[1:] {
			if got := fileSHA256(t, filepath.Join(rm.Written, "member/snap/db")); got != firstDB {
				t.Errorf("%s's database differs from %s's", rm.Name, doc.Members[0].Name)
			}
		}

		// The folders are what etcd's own restore makes, byte for byte.
		if util := etcdutl(t); util != "" {
			rm := doc.Members[1]
			theirs := filepath.Join(t.TempDir(), "etcdutl")
			out, err := exec.Command(util, "snapshot", "restore", file, "--data-dir", theirs, "--name", rm.Name,
				"--initial-cluster", doc.InitialCluster, "--initial-cluster-token", doc.Token,
				"--initial-advertise-peer-urls", strings.Join(rm.PeerURLs, ","),
				"--bump-revision", fmt.Sprint(bump), "--mark-compacted").CombinedOutput()
			if err != nil {
				t.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
			}
			ours, want := etcdtest.Tree(t, rm.Written), etcdtest.Tree(t, theirs)
			// etcdutl leaves its folder's mode to the umask; ours is 0700.
			delete(ours, ".")
			delete(want, ".")
			// Their contents below: etcdutl adds the members in map order.
			const db, raftSnap = "member/snap/db", "member/snap/0000000000000001-0000000000000003.snap"
			for _, name := range []string{db, raftSnap} {
				if ours[name] == "" || want[name] == "" {
					t.Errorf("%s: ours %q, etcdutl's %q", name, ours[name], want[name])
				}
				delete(ours, name)
				delete(want, name)
			}
			if d := etcdtest.DiffTree(want, ours); len(d) > 0 || len(ours) < 4 {
				t.Errorf("%s differs from etcdutl's restore: %v", rm.Name, d)
			}
			meta, nodes := readRaftSnap(t, filepath.Join(rm.Written, raftSnap))
			wantMeta, wantNodes := readRaftSnap(t, filepath.Join(theirs, raftSnap))
			if meta != wantMeta || !reflect.DeepEqual(nodes, wantNodes) || len(nodes) < 3 {
				t.Errorf("raft snapshot %s %v, etcdutl's %s %v", meta, nodes, wantMeta, wantNodes)
			}
			if got, want := dbStatus(t, util, filepath.Join(rm.Written, db)), dbStatus(t, util, filepath.Join(theirs, db)); got != want {
				t.Errorf("database %s, etcdutl's %s", got, want)
			}
		}

		// One node on its own: only its folder, under the root given, with
		// the token of the others.
		root := t.TempDir()
		// What a restore killed midway leaves on the node: its temp folder.
		stale := filepath.Join(root, "var/lib/.etcd.restore-0badc0de.tmp-123", "member/snap")
		if err := os.MkdirAll(stale, 0o700); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code = etcdtest.Exec(t, bin, "snapshot", "restore", file, "--config", filepath.Join(dir, "cluster.yaml"), "--node", "etcd02", "--root", root, "--token", doc.Token)
		if code != 0 {
			t.Fatalf("node restore: exit %d: %s", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(root, "var/lib/.etcd.restore-0badc0de.tmp-123")); !os.IsNotExist(err) {
			t.Errorf("the killed restore's temp folder is left: %v", err)
		}
		written := filepath.Join(root, "var/lib/etcd.restore-"+doc.Token, "member/snap/db")
		if _, err := os.Stat(written); err != nil {
			t.Errorf("node restore: %v", err)
		}
		for _, want := range []string{"for 1 of 3 members", "--token " + doc.Token, "\n  mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.stopped && "} {
			if !strings.Contains(stdout, want) {
				t.Errorf("node restore output lacks %q:\n%s", want, stdout)
			}
		}

		// The same token again would overwrite: refused, nothing changed.
		was := etcdtest.Tree(t, dir)
		wantRefusal(t, bin, "refusing to overwrite", "snapshot", "restore", file, "--out", dir, "--token", doc.Token)
		wantRefusal(t, bin, "refusing to overwrite", "snapshot", "restore", file, "--out", dir, "--node", "etcd02", "--token", doc.Token)
		sameTree(t, "a restore over a restore", was, etcdtest.Tree(t, dir))
	})
	if t.Failed() {
		return
	}

	// The swap, as the printed sequence does it on each host.
	for _, rm := range doc.Members {
		m := c.Member(rm.Name)
		if err := os.RemoveAll(m.DataDir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(rm.Written, m.DataDir); err != nil {
			t.Fatal(err)
		}
	}
	// All at once: no member is ready before a quorum runs.
	begin := time.Now()
	starter := &goroutineTB{TB: t}
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Go(func() { c.Start(starter, m.Name) })
	}
	wg.Wait()
	if len(starter.errs) > 0 {
		t.Fatal(strings.Join(starter.errs, "\n"))
	}
	t.Logf("restored cluster ready %s after start", time.Since(begin).Round(time.Millisecond))

	tgt, err = etcdops.Resolve(ctx, etcdops.Options{Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range etcdops.Health(ctx, tgt) {
		if !h.Healthy {
			t.Errorf("%s unhealthy after the restore: %s", h.Endpoint, h.Error)
		}
	}
	ms, err := etcdops.Members(ctx, tgt)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members %v, %v", ms, err)
	}
	for _, m := range ms {
		i := slices.IndexFunc(doc.Members, func(d restoredMember) bool { return d.Name == m.Name })
		if i < 0 || doc.Members[i].ID != m.IDString() || m.ID == oldIDs[m.Name] {
			t.Errorf("member %s has ID %s; it had %s, the restore announced %v", m.Name, m.IDString(), etcdops.FormatID(oldIDs[m.Name]), doc.Members)
		}
	}
	kv, err = tgt.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	got, err := kv.Get(ctx, "/registry/before/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != before {
		t.Errorf("keys from before the snapshot: %v, %v; want %d", got, err, before)
	}
	got, err = kv.Get(ctx, "/registry/after/", clientv3.WithPrefix())
	if err != nil || got.Count != 0 {
		t.Errorf("keys written after the snapshot: %v, %v; want none", got, err)
	}
	// The revision moved on by the bump and what lies before is compacted,
	// so watchers list afresh rather than miss changes.
	if got != nil && got.Header.Revision < lastRev+bump {
		t.Errorf("revision %d after the restore, want at least %d", got.Header.Revision, lastRev+bump)
	}
	if _, err := kv.Get(ctx, "/registry/before/00", clientv3.WithRev(lastRev)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("read at the snapshot's revision: %v, want compacted", err)
	}
}
