package phases

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

func runAll(t *testing.T, opts Options, skip ...string) string {
	t.Helper()
	var log bytes.Buffer
	opts.Log = &log
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	r, err := NewRunner(opts)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := List().Select(skip)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ps); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return log.String()
}

// yamlDocs parses a multi-document YAML file for comparison.
func yamlDocs(t *testing.T, b []byte) []any {
	t.Helper()
	var docs []any
	for _, d := range strings.Split(string(b), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(d, "---")) == "" {
			continue
		}
		var v any
		if err := yaml.Unmarshal([]byte(d), &v); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, v)
	}
	return docs
}

func sameYAML(t *testing.T, gotPath, wantPath string) {
	t.Helper()
	got, err := os.ReadFile(gotPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(wantPath)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(yamlDocs(t, got), yamlDocs(t, want)) {
		t.Errorf("%s differs from kubeadm's %s:\n--- ours\n%s\n--- kubeadm\n%s", gotPath, wantPath, got, want)
	}
}

// TestInitMatchesKubeadm runs every phase for the guide's hosts and compares
// the files on disk with kubeadm's.
func TestInitMatchesKubeadm(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, func(c *spec.Cluster) {
		c.ControlPlane.ControlPlaneEndpoint = "10.107.88.9:6443"
		c.ControlPlane.PodSubnet = "10.244.0.0/16"
	})
	runAll(t, Options{Cluster: c, Out: out})
	golden := filepath.Join("..", "testdata", "manifests")
	for _, h := range guideHosts {
		sameYAML(t, filepath.Join(out, h.Name, "etc/kubernetes/manifests/etcd.yaml"), filepath.Join(golden, "ha-3node", h.Name, "etcd.yaml"))
		sameYAML(t, filepath.Join(out, h.Name, "etc/kubernetes/kubeadmcfg.yaml"), filepath.Join(golden, "ha-3node", h.Name, "kubeadmcfg.yaml"))
		checkMode(t, filepath.Join(out, h.Name, "etc/kubernetes/manifests"), 0o700)
		checkMode(t, filepath.Join(out, h.Name, "etc/kubernetes/manifests/etcd.yaml"), 0o600)
		checkMode(t, filepath.Join(out, h.Name, "var/lib/etcd"), 0o700)
		checkMode(t, filepath.Join(out, h.Name, "etc/systemd/system/kubelet.service.d/kubelet.conf"), 0o644)
		checkMode(t, filepath.Join(out, h.Name, "etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf"), 0o644)
		checkArchive(t, filepath.Join(out, h.Name+".tar.gz"), filepath.Join(out, h.Name))
	}
	sameYAML(t, filepath.Join(out, "kubeadm-config.yaml"), filepath.Join(golden, "external-etcd", "cluster-config-v1beta4.yaml"))
	for _, f := range []string{"etc/kubernetes/pki/etcd/ca.crt", "etc/kubernetes/pki/apiserver-etcd-client.crt", "etc/kubernetes/pki/apiserver-etcd-client.key"} {
		want, _ := os.ReadFile(filepath.Join(out, "etcd01", f))
		got, err := os.ReadFile(filepath.Join(out, "control-plane", f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("control-plane/%s: %v", f, err)
		}
	}
	checkArchive(t, filepath.Join(out, "control-plane.tar.gz"), filepath.Join(out, "control-plane"))
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil || strings.Count(string(sums), ".tar.gz\n") != 4 {
		t.Errorf("SHA256SUMS: %v\n%s", err, sums)
	}
}

// checkArchive: the archive holds exactly the folder, with modes, owned by
// root, and no CA key. It is packed from what the run was about to write, so
// it must also be byte for byte the archive of the folder as written.
func checkArchive(t *testing.T, archivePath, dir string) {
	t.Helper()
	all, err := archive.ReadTarGz(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	asWritten, err := new(archive.Packer).Pack(os.DirFS(dir), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, asWritten) {
		t.Errorf("%s is not the archive of %s as written", archivePath, dir)
	}
	entries := map[string]os.FileMode{}
	for _, e := range all {
		hdr := e.Header
		name := strings.TrimSuffix(hdr.Name, "/")
		if filepath.Base(name) == "ca.key" {
			t.Errorf("%s holds %s", archivePath, name)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d", archivePath, name, hdr.Uid, hdr.Gid)
		}
		entries[name] = os.FileMode(hdr.Mode).Perm()
	}
	want := map[string]os.FileMode{}
	_ = filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && path != dir {
			rel, _ := filepath.Rel(dir, path)
			want[rel] = fi.Mode().Perm()
		}
		return err
	})
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("%s:\n got %v\nwant %v", archivePath, entries, want)
	}
}

// TestNodeModeWithoutCAKey: on a node, with the certificates in place and
// no CA key anywhere, every phase but certs runs and writes only that host.
func TestNodeModeWithoutCAKey(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t)
	runAll(t, Options{Cluster: c, Out: out}, "bundle")
	// The node: a copy of etcd02's bundle, then the CA store disappears.
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join(out, "etcd02"))); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(out, "pki")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml")); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	log := runAll(t, Options{Cluster: c, Out: empty, Node: "etcd02", Root: root})
	if !strings.Contains(log, "Using the existing etcd-server certificate and key for etcd02") {
		t.Errorf("log:\n%s", log)
	}
	sameYAML(t, filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml"), filepath.Join("..", "testdata", "manifests", "ha-3node", "etcd02", "etcd.yaml"))
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("node mode wrote into --out: %v", entries)
	}
	for _, other := range []string{"etcd01", "etcd03"} {
		if _, err := os.Stat(filepath.Join(root, other)); !os.IsNotExist(err) {
			t.Errorf("node mode wrote %s", other)
		}
	}
}

// TestNodeModeMissingCertNeedsCA: issuing on a node without the CA key is
// a clear error and writes nothing.
func TestNodeModeMissingCertNeedsCA(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t)
	runAll(t, Options{Cluster: c, Out: out}, "bundle")
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join(out, "etcd02"))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server.crt", "server.key"} {
		if err := os.Remove(filepath.Join(root, "etc/kubernetes/pki/etcd", f)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewRunner(Options{Cluster: c, Out: t.TempDir(), Node: "etcd02", Root: root})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(certsPhase().Leaves())
	if err == nil || !strings.Contains(err.Error(), "no etcd CA at") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/kubernetes/pki/etcd/server.crt")); !os.IsNotExist(err) {
		t.Error("server.crt written without a CA")
	}
}

func TestSkipPhases(t *testing.T) {
	ps, err := List().Select([]string{"certs/etcd-peer", "bundle", "kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	want := "etcd-ca etcd-server etcd-healthcheck-client apiserver-etcd-client local systemd statefulset kubeadm-config monitoring backup cli"
	if strings.Join(names, " ") != want {
		t.Errorf("got %v", names)
	}
	if _, err := List().Select([]string{"certs/nope"}); err == nil {
		t.Error("unknown phase accepted")
	}
}

func TestInitDryRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "b")
	log := runAll(t, Options{Cluster: guideCluster(t), Out: out, DryRun: true})
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("dry run created the output folder")
	}
	for _, want := range []string{"etcd02/etc/kubernetes/manifests/etcd.yaml (0600", "kubeadm-config.yaml (0600", "etcd03.tar.gz (0600", "SHA256SUMS"} {
		if !strings.Contains(log, want) {
			t.Errorf("dry run log lacks %q", want)
		}
	}
	if strings.Contains(log, "PRIVATE KEY") {
		t.Error("dry run printed a key")
	}
}

// TestBundleDryRunKeepsStaleTemp: a real bundle removes the temp files a
// killed run left in a host folder; a dry run only says it would.
func TestBundleDryRunKeepsStaleTemp(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t)
	runAll(t, Options{Cluster: c, Out: out}, "bundle")
	stale := filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/.peer.key.tmp-123456")
	if err := os.WriteFile(stale, []byte("half a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := runAll(t, Options{Cluster: c, Out: out, DryRun: true}, "certs", "kubelet", "etcd", "kubeadm-config")
	if !strings.Contains(log, "[dry-run] would remove the stale temp file "+stale) {
		t.Errorf("dry run log:\n%s", log)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the dry run removed %s: %v", stale, err)
	}
	runAll(t, Options{Cluster: c, Out: out}, "certs", "kubelet", "etcd", "kubeadm-config")
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("bundle left %s: %v", stale, err)
	}
	checkArchive(t, filepath.Join(out, "etcd02.tar.gz"), filepath.Join(out, "etcd02"))
}

func TestBundleRefusesCAKeyInHostFolder(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t)
	runAll(t, Options{Cluster: c, Out: out}, "bundle")
	key, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.key"))
	if err := os.WriteFile(filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/ca.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	r, _ := NewRunner(Options{Cluster: c, Out: out})
	err := r.Run([]Phase{Bundle()})
	if err == nil || !strings.Contains(err.Error(), "etcd03/etc/kubernetes/pki/etcd/ca.key is a copy of the etcd CA's private key") {
		t.Fatalf("got %v", err)
	}
	// Another CA's key under that name is refused by its name.
	other, err := certs.GenerateKey("ECDSA-P256")
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := certs.EncodeKey(other)
	if err := os.WriteFile(filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/ca.key"), otherPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r, _ = NewRunner(Options{Cluster: c, Out: out})
	err = r.Run([]Phase{Bundle()})
	if err == nil || !strings.Contains(err.Error(), "etcd03/etc/kubernetes/pki/etcd/ca.key is a CA key inside a host folder") {
		t.Fatalf("got %v", err)
	}
}

// TestBundleLeavesEtcdDataOut: a host folder that holds etcd data (a restore
// written into the bundle, or a copied data folder) ships without it: the
// data folder goes in empty, with its mode, and its restore siblings stay
// behind, untouched.
func TestBundleLeavesEtcdDataOut(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t)
	runAll(t, Options{Cluster: c, Out: out})
	host := filepath.Join(out, "etcd02")
	data := []string{
		"var/lib/etcd/member/snap/db",
		"var/lib/etcd.restore-3f9ac0d2/member/snap/db",
		"var/lib/etcd.restore-3f9ac0d2/member/wal/0000000000000000-0000000000000000.wal",
		"var/lib/etcd.before-restore-1a2b/member/snap/db",
	}
	for _, name := range data {
		p := filepath.Join(host, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("bbolt"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := runAll(t, Options{Cluster: c, Out: out}, "certs", "kubelet", "etcd", "kubeadm-config")
	if !strings.Contains(log, "Left etcd data out of etcd02.tar.gz: var/lib/etcd/member, var/lib/etcd.before-restore-1a2b, var/lib/etcd.restore-3f9ac0d2") {
		t.Errorf("the log does not say what was left out:\n%s", log)
	}
	entries, err := archive.ReadTarGz(filepath.Join(out, "etcd02.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Header.Name)
		if strings.HasPrefix(e.Header.Name, "var/lib/etcd/") && e.Header.Name != "var/lib/etcd/" || strings.HasPrefix(e.Header.Name, "var/lib/etcd.") {
			t.Errorf("etcd02.tar.gz ships %s", e.Header.Name)
		}
		if e.Header.Name == "var/lib/etcd/" && e.Header.Mode != 0o700 {
			t.Errorf("var/lib/etcd/ ships with mode %o", e.Header.Mode)
		}
	}
	if !slices.Contains(names, "var/lib/etcd/") || !slices.Contains(names, "etc/kubernetes/manifests/etcd.yaml") {
		t.Errorf("etcd02.tar.gz lacks the data folder or the manifest: %v", names)
	}
	for _, name := range data {
		if _, err := os.Stat(filepath.Join(host, name)); err != nil {
			t.Errorf("the data on disk was touched: %v", err)
		}
	}
	// The other hosts hold no data, so their archives are the folders.
	checkArchive(t, filepath.Join(out, "etcd01.tar.gz"), filepath.Join(out, "etcd01"))
}
