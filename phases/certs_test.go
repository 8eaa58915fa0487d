package phases

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

var guideHosts = []spec.Host{
	{Name: "etcd01", Address: "10.107.88.15"},
	{Name: "etcd02", Address: "10.107.88.16"},
	{Name: "etcd03", Address: "10.107.88.17"},
}

func guideCluster(t testing.TB, mutate ...func(*spec.Cluster)) *spec.Cluster {
	t.Helper()
	c := &spec.Cluster{Hosts: append([]spec.Host(nil), guideHosts...)}
	for _, m := range mutate {
		m(c)
	}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

var fixedNow = time.Date(2026, 11, 22, 3, 9, 12, 0, time.UTC)

func runCerts(t testing.TB, c *spec.Cluster, out string) {
	t.Helper()
	r, err := NewRunner(Options{Cluster: c, Out: out, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(certsPhase().Leaves()); err != nil {
		t.Fatal(err)
	}
}

// kubeadm's dump file name for each certificate.
var dumpNames = map[string]string{
	"etcd/ca":                 "etcd_ca.crt.txt",
	"etcd/server":             "etcd_server.crt.txt",
	"etcd/peer":               "etcd_peer.crt.txt",
	"etcd/healthcheck-client": "etcd_healthcheck-client.crt.txt",
	"apiserver-etcd-client":   "apiserver-etcd-client.crt.txt",
}

var (
	hexLine   = regexp.MustCompile(`^([0-9a-fA-F]{2}:)*[0-9a-fA-F]{2}:?$`)
	keyID     = regexp.MustCompile(`^([0-9A-F]{2}:){19}[0-9A-F]{2}$`)
	serialNum = regexp.MustCompile(`^Serial Number:.*$`)
	dateLine  = regexp.MustCompile(`^(Not Before|Not After) ?:.*$`)
)

// normalize keeps every line of an openssl dump that does not change from
// run to run: serials, dates, key material, key identifiers and signatures go.
func normalize(dump string, keepKey bool) []string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "", hexLine.MatchString(l) && !keyID.MatchString(l):
			continue
		case keyID.MatchString(l):
			l = "<key id>"
		case serialNum.MatchString(l):
			l = "Serial Number: <random>"
		case dateLine.MatchString(l):
			l = strings.SplitN(l, ":", 2)[0] + ": <date>"
		case !keepKey && (strings.HasPrefix(l, "Public Key Algorithm") || strings.HasPrefix(l, "Public-Key") ||
			strings.HasPrefix(l, "Modulus") || strings.HasPrefix(l, "Exponent") || strings.HasPrefix(l, "Signature Algorithm") ||
			strings.HasPrefix(l, "pub:") || strings.HasPrefix(l, "ASN1 OID") || strings.HasPrefix(l, "NIST CURVE")):
			continue
		}
		out = append(out, l)
	}
	return out
}

func opensslText(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("openssl", "x509", "-noout", "-text", "-in", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// TestCertsMatchKubeadm compares every certificate of the guide's three
// hosts with kubeadm v1.36.3's, line by line of openssl's dump.
func TestCertsMatchKubeadm(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed to compare with kubeadm's dumps")
	}
	out := t.TempDir()
	runCerts(t, guideCluster(t), out)
	for _, h := range guideHosts {
		for base, dump := range dumpNames {
			t.Run(h.Name+"/"+base, func(t *testing.T) {
				want, err := os.ReadFile(filepath.Join("..", "testdata", "kubeadm", "certs", h.Name, dump))
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(out, h.Name, "etc/kubernetes/pki", base+".crt")
				got := opensslText(t, path)
				w, g := normalize(string(want), true), normalize(got, true)
				if kw, ow := window(t, string(want)), window(t, got); kw != ow {
					t.Errorf("%s: validity window %s, kubeadm's %s", path, ow, kw)
				}
				if strings.Join(w, "\n") != strings.Join(g, "\n") {
					t.Errorf("%s differs from kubeadm's:\n--- kubeadm\n%s\n--- ours\n%s", path, strings.Join(w, "\n"), strings.Join(g, "\n"))
				}
			})
		}
	}
}

// TestCertProfiles checks the fields the comparison above cannot see
// (exact validity window, key identifiers, chain, key form) for RSA and ECDSA.
func TestCertProfiles(t *testing.T) {
	for _, alg := range spec.EncryptionAlgorithms() {
		t.Run(alg, func(t *testing.T) {
			if testing.Short() && alg != "RSA-2048" && alg != "ECDSA-P256" {
				t.Skip("large keys are slow")
			}
			c := guideCluster(t, func(c *spec.Cluster) { c.EncryptionAlgorithm = alg })
			out := t.TempDir()
			runCerts(t, c, out)
			ca := etcdtest.ReadCert(t, filepath.Join(out, "pki/etcd/ca.crt"))
			checkCA(t, ca, alg)
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			for _, h := range guideHosts {
				hostCA, err := os.ReadFile(filepath.Join(out, h.Name, "etc/kubernetes/pki/etcd/ca.crt"))
				if err != nil || !bytes.Equal(hostCA, certs.EncodeCert(ca)) {
					t.Fatalf("%s: ca.crt missing or not the CA: %v", h.Name, err)
				}
				if _, err := os.Stat(filepath.Join(out, h.Name, "etc/kubernetes/pki/etcd/ca.key")); !os.IsNotExist(err) {
					t.Fatalf("%s holds the CA key", h.Name)
				}
				for _, p := range certs.Leaves() {
					base := filepath.Join(out, h.Name, "etc/kubernetes/pki", string(p.Files))
					cert := etcdtest.ReadCert(t, base+".crt")
					checkLeaf(t, cert, ca, p, h, alg)
					if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: p.Usages, CurrentTime: fixedNow}); err != nil {
						t.Errorf("%s: chain: %v", base, err)
					}
					checkKeyFile(t, base+".key", cert, alg)
				}
			}
		})
	}
}

func checkCA(t *testing.T, ca *x509.Certificate, alg string) {
	t.Helper()
	if ca.Subject.String() != "CN=etcd-ca" || ca.Issuer.String() != "CN=etcd-ca" {
		t.Errorf("CA subject %q issuer %q", ca.Subject, ca.Issuer)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Error("CA is not CA:TRUE")
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign; ca.KeyUsage != want {
		t.Errorf("CA key usage %v, want %v", ca.KeyUsage, want)
	}
	if len(ca.SubjectKeyId) == 0 || len(ca.AuthorityKeyId) != 0 {
		t.Errorf("CA SKI %x AKI %x: want an SKI and no AKI", ca.SubjectKeyId, ca.AuthorityKeyId)
	}
	if fmt.Sprint(ca.DNSNames) != "[etcd-ca]" || len(ca.IPAddresses) != 0 {
		t.Errorf("CA SANs %v %v", ca.DNSNames, ca.IPAddresses)
	}
	if !ca.NotBefore.Equal(fixedNow.Add(-5*time.Minute)) || !ca.NotAfter.Equal(fixedNow.Add(87600*time.Hour)) {
		t.Errorf("CA validity %s..%s", ca.NotBefore, ca.NotAfter)
	}
	if got := certs.KeyAlgorithm(ca.PublicKey); got != alg {
		t.Errorf("CA key %s, want %s", got, alg)
	}
	checkCritical(t, ca)
}

func checkLeaf(t *testing.T, cert, ca *x509.Certificate, p certs.Profile, h spec.Host, alg string) {
	t.Helper()
	if cert.Subject.String() != "CN="+p.CommonName(h) || len(cert.Subject.Organization) != 0 {
		t.Errorf("%s subject %q", p.Name, cert.Subject)
	}
	if cert.Issuer.String() != "CN=etcd-ca" {
		t.Errorf("%s issuer %q", p.Name, cert.Issuer)
	}
	if cert.IsCA || !cert.BasicConstraintsValid {
		t.Errorf("%s: want CA:FALSE", p.Name)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("%s key usage %v", p.Name, cert.KeyUsage)
	}
	if fmt.Sprint(cert.ExtKeyUsage) != fmt.Sprint(p.Usages) {
		t.Errorf("%s EKU %v", p.Name, cert.ExtKeyUsage)
	}
	if len(cert.SubjectKeyId) != 0 || !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) {
		t.Errorf("%s SKI %x AKI %x: want no SKI and the CA's as AKI", p.Name, cert.SubjectKeyId, cert.AuthorityKeyId)
	}
	var wantDNS, wantIP string
	if p.AltNames != nil {
		wantDNS = fmt.Sprint([]string{h.Name, "localhost"})
		wantIP = fmt.Sprint([]string{h.Address, "127.0.0.1", "::1"})
	} else {
		wantDNS, wantIP = "[]", "[]"
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if fmt.Sprint(cert.DNSNames) != wantDNS || fmt.Sprint(ips) != wantIP {
		t.Errorf("%s SANs DNS %v IP %v, want %s %s", p.Name, cert.DNSNames, ips, wantDNS, wantIP)
	}
	if !cert.NotBefore.Equal(fixedNow.Add(-5*time.Minute)) || !cert.NotAfter.Equal(fixedNow.Add(8760*time.Hour)) {
		t.Errorf("%s validity %s..%s", p.Name, cert.NotBefore, cert.NotAfter)
	}
	if got := certs.KeyAlgorithm(cert.PublicKey); got != alg {
		t.Errorf("%s key %s, want %s", p.Name, got, alg)
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 63 {
		t.Errorf("%s serial %v", p.Name, cert.SerialNumber)
	}
	checkCritical(t, cert)
}

// checkCritical: key usage and basic constraints critical, nothing else.
func checkCritical(t *testing.T, c *x509.Certificate) {
	t.Helper()
	for _, e := range c.Extensions {
		id := e.Id.String()
		wantCritical := id == "2.5.29.15" || id == "2.5.29.19"
		if e.Critical != wantCritical {
			t.Errorf("%s: extension %s critical=%v", c.Subject, id, e.Critical)
		}
	}
}

func checkKeyFile(t *testing.T, path string, cert *x509.Certificate, alg string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	wantType := "RSA PRIVATE KEY"
	if strings.HasPrefix(alg, "ECDSA") {
		wantType = "EC PRIVATE KEY"
	}
	if block == nil || block.Type != wantType {
		t.Fatalf("%s: PEM type %v, want %s", path, block, wantType)
	}
	key, err := certs.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.KeyMatches(cert, key); err != nil {
		t.Errorf("%s: %v", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if fmt.Sprintf("RSA-%d", k.N.BitLen()) != alg {
			t.Errorf("%s: RSA-%d", path, k.N.BitLen())
		}
	case *ecdsa.PrivateKey:
		want := map[string]elliptic.Curve{"ECDSA-P256": elliptic.P256(), "ECDSA-P384": elliptic.P384()}[alg]
		if k.Curve != want {
			t.Errorf("%s: curve %s", path, k.Curve.Params().Name)
		}
	}
}

// TestBundleModes checks every file's and folder's mode against kubeadm's,
// under a hostile umask.
func TestBundleModes(t *testing.T) {
	for _, mask := range []int{0, 0o077} {
		t.Run(fmt.Sprintf("umask=%04o", mask), func(t *testing.T) { testBundleModes(t, mask) })
	}
}

func testBundleModes(t *testing.T, mask int) {
	old := umask(mask)
	defer umask(old)
	out := t.TempDir()
	runCerts(t, guideCluster(t), out)
	for _, h := range guideHosts {
		// Entries as kubeadm's bundle tree lists them, minus the CA key
		// which only the first host keeps in the guide and no host keeps here.
		want := map[string]os.FileMode{
			".": 0o755, "apiserver-etcd-client.crt": 0o644, "apiserver-etcd-client.key": 0o600,
			"etcd": 0o755, "etcd/ca.crt": 0o644, "etcd/healthcheck-client.crt": 0o644, "etcd/healthcheck-client.key": 0o600,
			"etcd/peer.crt": 0o644, "etcd/peer.key": 0o600, "etcd/server.crt": 0o644, "etcd/server.key": 0o600,
		}
		checkTree(t, filepath.Join(out, h.Name, "etc/kubernetes/pki"), want)
		for _, d := range []string{"", "etc", "etc/kubernetes"} {
			checkMode(t, filepath.Join(out, h.Name, d), 0o755)
		}
	}
	checkMode(t, filepath.Join(out, "pki/etcd"), 0o700)
	checkMode(t, filepath.Join(out, "pki/etcd/ca.key"), 0o600)
	checkMode(t, filepath.Join(out, "pki/etcd/ca.crt"), 0o644)
}

func checkTree(t *testing.T, root string, want map[string]os.FileMode) {
	t.Helper()
	got := map[string]os.FileMode{}
	err := filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		got[rel] = fi.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", root, got, want)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), want)
	}
}

// window is NotAfter-NotBefore read off an openssl dump.
func window(t *testing.T, dump string) time.Duration {
	t.Helper()
	var nb, na time.Time
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		if k, v, ok := strings.Cut(l, ": "); ok && strings.HasPrefix(k, "Not ") {
			ts, err := time.Parse("Jan _2 15:04:05 2006 MST", strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("date %q: %v", v, err)
			}
			if strings.HasPrefix(k, "Not Before") {
				nb = ts
			} else {
				na = ts
			}
		}
	}
	return na.Sub(nb)
}
