package kubeadmcheck

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// kubeadmVersion is the release whose output etcd-staticpod reproduces.
const kubeadmVersion = "v1.36.3"

const guideHosts = "etcd01=10.107.88.15,etcd02=10.107.88.16,etcd03=10.107.88.17"

// cluster is one `etcd-staticpod init` run that kubeadm must agree with.
type cluster struct {
	name string
	args []string
	// apiserverFlags names the file in testdata/kubeadmcheck that holds the
	// --etcd-* flags kubeadm gives kube-apiserver for kubeadm-config.yaml;
	// empty when no golden list exists for the input.
	apiserverFlags string
}

func clusters() []cluster {
	guide := []string{"--hosts", guideHosts, "--control-plane-endpoint", "10.107.88.9:6443", "--pod-subnet", "10.244.0.0/16"}
	return []cluster{
		{name: "guide", args: guide, apiserverFlags: "kube-apiserver-etcd-flags.v1beta4.txt"},
		{name: "guide-v1beta3", args: append(slices.Clone(guide), "--kubeadm-api-version", "v1beta3"), apiserverFlags: "kube-apiserver-etcd-flags.v1beta3.txt"},
		{name: "non-default", args: []string{"--hosts", guideHosts,
			"--cert-dir", "/srv/pki", "--data-dir", "/data/etcd",
			"--image-repository", "registry.example.internal", "--etcd-version", "3.6.8-0",
			"--extra-arg", "snapshot-count=5000", "--extra-env", "GOMAXPROCS=2",
			"--encryption-algorithm", "ECDSA-P256"}},
		{name: "ipv6", args: []string{"--hosts", "a=fd00::11,b=fd00::12,c=fd00::13"}},
		{name: "metrics", args: []string{"--hosts", guideHosts, "--extra-arg", "listen-metrics-urls=http://0.0.0.0:2391"}},
	}
}

// hosts are the names given to --hosts.
func (c cluster) hosts() []string {
	i := slices.Index(c.args, "--hosts")
	var names []string
	for _, h := range strings.Split(c.args[i+1], ",") {
		name, _, _ := strings.Cut(h, "=")
		names = append(names, name)
	}
	return names
}

// tools are the programs under test, shared by all tests of the package.
type tools struct {
	kubeadm string
	cli     string
	// proxy refuses every request, so that kubeadm's lookup of the
	// "stable-1" release label fails at once and it falls back to its own
	// version, online or not.
	proxy string
}

var (
	setupOnce sync.Once
	setup     tools
	setupErr  error
	cleanups  []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

// requireTools finds kubeadm in KUBEADM_BIN: missing, the tests are skipped,
// except in CI where that means a broken pipeline.
func requireTools(t *testing.T) tools {
	t.Helper()
	kubeadm := os.Getenv("KUBEADM_BIN")
	if kubeadm == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("KUBEADM_BIN is not set in CI; run the tests through `make test`")
		}
		t.Skip("KUBEADM_BIN is not set: run `make test`, or `make kubeadm` and KUBEADM_BIN=$PWD/.bin/kubeadm")
	}
	setupOnce.Do(func() { setup, setupErr = newTools(kubeadm) })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return setup
}

func newTools(kubeadm string) (tools, error) {
	if _, err := os.Stat(kubeadm); err != nil {
		return tools{}, fmt.Errorf("KUBEADM_BIN: %w", err)
	}
	tl := tools{kubeadm: kubeadm, cli: os.Getenv("ETCD_STATICPOD_BIN")}
	if tl.cli == "" {
		dir, err := os.MkdirTemp("", "kubeadmcheck-cli-")
		if err != nil {
			return tools{}, fmt.Errorf("folder for the CLI build: %w", err)
		}
		cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		tl.cli = filepath.Join(dir, "etcd-staticpod")
		if b, err := exec.Command("go", "build", "-o", tl.cli, "../cmd/etcd-staticpod").CombinedOutput(); err != nil {
			return tools{}, fmt.Errorf("build etcd-staticpod: %w\n%s", err, b)
		}
	} else if _, err := os.Stat(tl.cli); err != nil {
		return tools{}, fmt.Errorf("ETCD_STATICPOD_BIN: %w", err)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no network in these tests", http.StatusForbidden)
	}))
	cleanups = append(cleanups, proxy.Close)
	tl.proxy = proxy.URL
	return tl, nil
}

// run runs kubeadm and returns its stdout. KUBEADM_INIT_DRYRUN_DIR points
// at a fresh temporary folder so that no run writes below /etc.
func (tl tools) run(t *testing.T, args ...string) (stdout, dryRunDir string) {
	t.Helper()
	dryRunDir = t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tl.kubeadm, args...)
	cmd.Env = append(os.Environ(),
		"KUBEADM_INIT_DRYRUN_DIR="+dryRunDir,
		"HTTPS_PROXY="+tl.proxy, "https_proxy="+tl.proxy,
		"HTTP_PROXY="+tl.proxy, "http_proxy="+tl.proxy,
		"NO_PROXY=", "no_proxy=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubeadm %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), dryRunDir
}

// initCluster writes the files of c into a temporary folder and returns it.
func (tl tools) initCluster(t *testing.T, c cluster) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(tl.cli, append(append([]string{"init"}, c.args...), "--out", out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("etcd-staticpod init %s: %v\n%s", strings.Join(c.args, " "), err, b)
	}
	return out
}

func TestKubeadmVersion(t *testing.T) {
	tl := requireTools(t)
	// kubeadm derives its default kubernetesVersion, and from it the etcd
	// image, from its own version: an unstamped build would pick others.
	out, _ := tl.run(t, "version", "-o", "short")
	if got := strings.TrimSpace(out); got != kubeadmVersion {
		t.Fatalf("kubeadm version = %q, want %q", got, kubeadmVersion)
	}
	out, _ = tl.run(t, "config", "images", "list", "--kubernetes-version", kubeadmVersion)
	if !slices.Contains(strings.Fields(out), "registry.k8s.io/etcd:3.6.8-0") {
		t.Fatalf("kubeadm config images list does not name registry.k8s.io/etcd:3.6.8-0:\n%s", out)
	}
}

func TestKubeadmAgrees(t *testing.T) {
	tl := requireTools(t)
	for _, c := range clusters() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := tl.initCluster(t, c)
			t.Run("config validate", func(t *testing.T) {
				configs := []string{filepath.Join(out, "kubeadm-config.yaml")}
				for _, h := range c.hosts() {
					configs = append(configs, hostConfig(out, h))
				}
				for _, cfg := range configs {
					if got, _ := tl.run(t, "config", "validate", "--config", cfg); strings.TrimSpace(got) != "ok" {
						t.Errorf("kubeadm config validate --config %s printed %q, want ok", cfg, got)
					}
				}
			})
			if c.apiserverFlags != "" {
				t.Run("kube-apiserver etcd flags", func(t *testing.T) {
					checkAPIServerFlags(t, tl, filepath.Join(out, "kubeadm-config.yaml"), c.apiserverFlags)
				})
			}
			for _, h := range c.hosts() {
				t.Run("etcd local/"+h, func(t *testing.T) { checkEtcdManifest(t, tl, out, h) })
				t.Run("certs/"+h, func(t *testing.T) { checkCerts(t, tl, out, h) })
			}
		})
	}
}

func hostRoot(out, host string) string { return filepath.Join(out, host) }

func hostConfig(out, host string) string {
	return filepath.Join(hostRoot(out, host), "etc", "kubernetes", "kubeadmcfg.yaml")
}

// checkAPIServerFlags has kubeadm write the kube-apiserver manifest for our
// external-etcd ClusterConfiguration and compares its --etcd-* flags with
// the ones kubeadm wrote for the same cluster when given its documented
// config (testdata/kubeadmcheck/NAME).
func checkAPIServerFlags(t *testing.T, tl tools, cfg, golden string) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kubeadmcheck", golden))
	if err != nil {
		t.Fatalf("golden flags: %v", err)
	}
	want := strings.Fields(string(b))
	// With --dry-run kubeadm prints nothing of this manifest; it writes it
	// to KUBEADM_INIT_DRYRUN_DIR instead of /etc/kubernetes/manifests.
	_, dry := tl.run(t, "init", "phase", "control-plane", "apiserver", "--config", cfg, "--dry-run")
	pod := readPod(t, filepath.Join(dry, "kube-apiserver.yaml"))
	var got []string
	for _, c := range pod.Spec.Containers {
		if c.Name != "kube-apiserver" {
			continue
		}
		for _, arg := range c.Command {
			if strings.HasPrefix(arg, "--etcd-") {
				got = append(got, arg)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("kube-apiserver --etcd-* flags from %s:\n%s\nwant (%s):\n%s",
			cfg, strings.Join(got, "\n"), golden, strings.Join(want, "\n"))
	}
}

func readPod(t *testing.T, file string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("kubeadm's manifest: %v", err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(b, &pod); err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return &pod
}

var ensureDataDir = regexp.MustCompile(`\[etcd\] Would ensure that "([^"]+)" directory is present`)

// checkEtcdManifest runs kubeadm's etcd phase on the host's kubeadmcfg.yaml
// and compares the manifest kubeadm writes with ours.
func checkEtcdManifest(t *testing.T, tl tools, out, host string) {
	stdout, dry := tl.run(t, "init", "phase", "etcd", "local", "--config", hostConfig(out, host), "--dry-run")
	// kubeadm prints the path it would write; our file sits at the same
	// path below the host's root.
	const target = "/etc/kubernetes/manifests/etcd.yaml"
	if !strings.Contains(stdout, fmt.Sprintf("[dryrun] Would write file %q", target)) {
		t.Errorf("kubeadm does not say it would write %s:\n%s", target, stdout)
	}
	kubeadmYAML, err := os.ReadFile(filepath.Join(dry, "etcd.yaml"))
	if err != nil {
		t.Fatalf("kubeadm's manifest: %v", err)
	}
	oursYAML, err := os.ReadFile(filepath.Join(hostRoot(out, host), filepath.FromSlash(target)))
	if err != nil {
		t.Fatalf("our manifest: %v", err)
	}
	var kubeadmDoc, oursDoc any
	if err := yaml.Unmarshal(kubeadmYAML, &kubeadmDoc); err != nil {
		t.Fatalf("parse kubeadm's manifest: %v", err)
	}
	if err := yaml.Unmarshal(oursYAML, &oursDoc); err != nil {
		t.Fatalf("parse our manifest: %v", err)
	}
	if !reflect.DeepEqual(oursDoc, kubeadmDoc) {
		t.Errorf("etcd manifest of %s differs from kubeadm's (- ours, + kubeadm):\n%s", host, lineDiff(string(oursYAML), string(kubeadmYAML)))
	} else if !bytes.Equal(oursYAML, kubeadmYAML) {
		t.Logf("etcd manifest of %s: same content as kubeadm's, other bytes (- ours, + kubeadm):\n%s", host, lineDiff(string(oursYAML), string(kubeadmYAML)))
	}

	// The data folder kubeadm would create (0700) ships in the host's tree.
	m := ensureDataDir.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("kubeadm names no etcd data folder:\n%s", stdout)
	}
	fi, err := os.Stat(filepath.Join(hostRoot(out, host), filepath.FromSlash(m[1])))
	if err != nil {
		t.Fatalf("data folder kubeadm would create: %v", err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("our %s is %v, kubeadm makes a folder with mode 0700", m[1], fi.Mode())
	}
}

// certPhase is one `kubeadm init phase certs` subcommand and the file base
// name of what it writes under certificatesDir.
type certPhase struct{ phase, base string }

var leafPhases = []certPhase{
	{"etcd-server", "etcd/server"},
	{"etcd-peer", "etcd/peer"},
	{"etcd-healthcheck-client", "etcd/healthcheck-client"},
	{"apiserver-etcd-client", "apiserver-etcd-client"},
}

// checkCerts runs kubeadm's certificate phases on the host's kubeadmcfg.yaml
// twice, always on temporary copies: over our certificates, which kubeadm
// must keep, and over our CA alone, where kubeadm issues its own, which
// must look like ours apart from keys, serials and signatures.
func checkCerts(t *testing.T, tl tools, out, host string) {
	cfg := hostConfig(out, host)
	certDir := certificatesDir(t, cfg)
	ours := filepath.Join(hostRoot(out, host), filepath.FromSlash(certDir))
	ca := filepath.Join(out, "pki", "etcd")

	t.Run("existing", func(t *testing.T) {
		pki := t.TempDir()
		copyTree(t, ours, pki)
		copyCA(t, ca, pki)
		kcfg := withCertificatesDir(t, cfg, pki)
		before := snapshot(t, pki)
		phases := append([]certPhase{{"etcd-ca", "etcd/ca"}}, leafPhases...)
		for _, p := range phases {
			stdout, _ := tl.run(t, "init", "phase", "certs", p.phase, "--config", kcfg)
			want := fmt.Sprintf("[certs] Using existing %s certificate and key on disk", p.base)
			if p.phase == "etcd-ca" {
				want = "[certs] Using existing etcd/ca certificate authority"
			}
			if !strings.Contains(stdout, want) {
				t.Errorf("kubeadm init phase certs %s does not use our certificate (want %q):\n%s", p.phase, want, stdout)
			}
		}
		if after := snapshot(t, pki); !reflect.DeepEqual(before, after) {
			t.Errorf("kubeadm changed the certificate folder:\nbefore %v\nafter  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
		}
	})

	t.Run("issued by kubeadm", func(t *testing.T) {
		pki := t.TempDir()
		copyCA(t, ca, pki)
		kcfg := withCertificatesDir(t, cfg, pki)
		for _, p := range leafPhases {
			stdout, _ := tl.run(t, "init", "phase", "certs", p.phase, "--config", kcfg)
			if !strings.Contains(stdout, fmt.Sprintf("[certs] Generating %q certificate and key", p.base)) {
				t.Errorf("kubeadm init phase certs %s did not generate:\n%s", p.phase, stdout)
			}
			base := filepath.FromSlash(p.base)
			// kubeadm never reads the key of an existing certificate; etcd does.
			if _, err := tls.LoadX509KeyPair(filepath.Join(ours, base+".crt"), filepath.Join(ours, base+".key")); err != nil {
				t.Errorf("our %s key does not match its certificate: %v", p.base, err)
			}
			oursCert := etcdtest.ReadCert(t, filepath.Join(ours, base+".crt"))
			kubeadmCert := etcdtest.ReadCert(t, filepath.Join(pki, base+".crt"))
			if o, k := shape(oursCert), shape(kubeadmCert); !reflect.DeepEqual(o, k) {
				t.Errorf("%s of %s differs from kubeadm's:\nours    %+v\nkubeadm %+v", p.base, host, o, k)
			}
			// kubeadm backdates NotBefore from its start time and counts
			// NotAfter from it, so only the span and, loosely, the instant
			// can match.
			if o, k := oursCert.NotAfter.Sub(oursCert.NotBefore), kubeadmCert.NotAfter.Sub(kubeadmCert.NotBefore); o != k {
				t.Errorf("%s of %s is valid for %v (%v to %v), kubeadm's for %v (%v to %v)", p.base, host,
					o, oursCert.NotBefore, oursCert.NotAfter, k, kubeadmCert.NotBefore, kubeadmCert.NotAfter)
			}
			if d := oursCert.NotAfter.Sub(kubeadmCert.NotAfter).Abs(); d > time.Hour {
				t.Errorf("%s of %s expires %v, kubeadm's %v", p.base, host, oursCert.NotAfter, kubeadmCert.NotAfter)
			}
			if o, k := pemType(t, filepath.Join(ours, base+".key")), pemType(t, filepath.Join(pki, base+".key")); o != k {
				t.Errorf("%s.key of %s is PEM %q, kubeadm writes %q", p.base, host, o, k)
			}
		}
	})
}

// configDocs splits a kubeadm config file into its YAML documents.
func configDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("kubeadm config: %v", err)
	}
	var docs []map[string]any
	for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(part), &doc); err != nil {
			t.Fatalf("parse %s: %v", file, err)
		}
		docs = append(docs, doc)
	}
	return docs
}

// certificatesDir is the ClusterConfiguration's certificatesDir, or
// kubeadm's default.
func certificatesDir(t *testing.T, file string) string {
	t.Helper()
	for _, doc := range configDocs(t, file) {
		if doc["kind"] == "ClusterConfiguration" {
			if dir, ok := doc["certificatesDir"].(string); ok && dir != "" {
				return dir
			}
		}
	}
	return "/etc/kubernetes/pki"
}

// withCertificatesDir writes a copy of the kubeadm config that differs only
// in certificatesDir: kubeadm refuses --cert-dir next to --config.
func withCertificatesDir(t *testing.T, file, dir string) string {
	t.Helper()
	var parts []string
	for _, doc := range configDocs(t, file) {
		if doc["kind"] == "ClusterConfiguration" {
			doc["certificatesDir"] = dir
		}
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatalf("marshal %s: %v", file, err)
		}
		parts = append(parts, string(b))
	}
	out := filepath.Join(t.TempDir(), "kubeadmcfg.yaml")
	if err := os.WriteFile(out, []byte(strings.Join(parts, "---\n")), 0o600); err != nil {
		t.Fatalf("write config copy: %v", err)
	}
	return out
}

func copyCA(t *testing.T, caDir, pki string) {
	t.Helper()
	for _, f := range []string{"ca.crt", "ca.key"} {
		copyFile(t, filepath.Join(caDir, f), filepath.Join(pki, "etcd", f))
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		copyFile(t, p, filepath.Join(to, rel))
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatalf("copy: %v", err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatalf("copy: %v", err)
	}
}

// snapshot maps every file below dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	return files
}

func pemType(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	return block.Type
}

// certShape is what two certificates issued by the same CA for the same
// config share; keys, serials, signatures and validity instants differ.
type certShape struct {
	Version                 int
	Subject, Issuer         string
	DNSNames, IPAddresses   []string
	KeyUsage                x509.KeyUsage
	ExtKeyUsage             []x509.ExtKeyUsage
	BasicConstraintsValid   bool
	IsCA                    bool
	PublicKey, SignatureAlg string
	HasSubjectKeyID         bool
	HasAuthorityKeyID       bool
	Extensions              []string
}

func shape(c *x509.Certificate) certShape {
	s := certShape{
		Version:               c.Version,
		Subject:               c.Subject.String(),
		Issuer:                c.Issuer.String(),
		DNSNames:              c.DNSNames,
		KeyUsage:              c.KeyUsage,
		ExtKeyUsage:           c.ExtKeyUsage,
		BasicConstraintsValid: c.BasicConstraintsValid,
		IsCA:                  c.IsCA,
		PublicKey:             publicKeyName(c.PublicKey),
		SignatureAlg:          c.SignatureAlgorithm.String(),
		HasSubjectKeyID:       len(c.SubjectKeyId) > 0,
		HasAuthorityKeyID:     len(c.AuthorityKeyId) > 0,
	}
	for _, ip := range c.IPAddresses {
		s.IPAddresses = append(s.IPAddresses, ip.String())
	}
	for _, e := range c.Extensions {
		s.Extensions = append(s.Extensions, fmt.Sprintf("%v critical=%t", e.Id, e.Critical))
	}
	return s
}

func publicKeyName(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", k)
	}
}

// lineDiff shows, line by line, how a and b differ (- a, + b).
func lineDiff(a, b string) string {
	return cmp.Diff(strings.Split(a, "\n"), strings.Split(b, "\n"))
}
