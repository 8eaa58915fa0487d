package expiry

import (
	"crypto/x509"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// now is the instant every test judges at.
var now = time.Date(2026, 11, 22, 3, 9, 12, 0, time.UTC)

var host = spec.Host{Name: "etcd01", Address: "10.107.88.15"}

// newCA makes a CA issued at issued, valid for validity.
func newCA(t *testing.T, issued time.Time, validity time.Duration) *certs.Authority {
	t.Helper()
	ca, err := certs.NewAuthority("ECDSA-P256", validity, issued)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes a leaf that expires at notAfter.
func issue(t *testing.T, ca *certs.Authority, name string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	p, ok := certs.Leaf(name)
	if !ok {
		t.Fatalf("no profile %s", name)
	}
	key, err := certs.GenerateKey("ECDSA-P256")
	if err != nil {
		t.Fatal(err)
	}
	issued := notAfter.Add(-365 * 24 * time.Hour)
	cert, err := ca.Issue(certs.Request{Profile: p, Host: host, Validity: 365 * 24 * time.Hour}, key.Public(), issued)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResidualTimeAsKubeadm(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{364*24*time.Hour + 23*time.Hour, "364d"},
		{9*365*24*time.Hour + 100*time.Hour, "9y"},
		{23*time.Hour + 59*time.Minute, "23h"},
		{47 * time.Hour, "47h"},
		{3*24*time.Hour + 5*time.Hour, "3d5h"},
		{90 * time.Second, "90s"},
		{-time.Hour, "<invalid>"},
	} {
		if got := ResidualTime(tc.d); got != tc.want {
			t.Errorf("ResidualTime(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if got, want := Expires(time.Date(2027, 11, 22, 3, 9, 59, 0, time.FixedZone("CET", 3600))), "Nov 22, 2027 02:09 UTC"; got != want {
		t.Errorf("Expires = %q, want %q", got, want)
	}
}

func TestParseWithin(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"720h": 720 * time.Hour, "30d": 30 * 24 * time.Hour, "0": 0, "0d": 0, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute, "106751d": 106751 * 24 * time.Hour,
	} {
		got, err := ParseWithin(in)
		if err != nil || got != want {
			t.Errorf("ParseWithin(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "d", "-1d", "-5h", "1.5d", "30days", "thirty", "106752d", "4294967295d"} {
		if _, err := ParseWithin(in); err == nil {
			t.Errorf("ParseWithin(%q) accepted", in)
		}
	}
}

// bundle writes a bundle folder with certificates of known lifetimes:
// etcd01's server certificate expired a day ago, its peer certificate
// expires in 23 hours, its healthcheck client in 364 days, and its
// apiserver-etcd-client is missing; etcd02 has no folder at all.
func bundle(t *testing.T) (string, *certs.Authority) {
	t.Helper()
	out := t.TempDir()
	ca := newCA(t, now.Add(-365*24*time.Hour), 10*365*24*time.Hour)
	key, err := certs.EncodeKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(out, "pki/etcd/ca.crt"), certs.EncodeCert(ca.Cert))
	write(t, filepath.Join(out, "pki/etcd/ca.key"), key)
	pki := filepath.Join(out, "etcd01", layout.DefaultCertDir)
	write(t, filepath.Join(pki, "etcd/ca.crt"), certs.EncodeCert(ca.Cert))
	write(t, filepath.Join(pki, "etcd/server.crt"), certs.EncodeCert(issue(t, ca, "etcd-server", now.Add(-24*time.Hour))))
	write(t, filepath.Join(pki, "etcd/peer.crt"), certs.EncodeCert(issue(t, ca, "etcd-peer", now.Add(23*time.Hour+30*time.Minute))))
	write(t, filepath.Join(pki, "etcd/healthcheck-client.crt"), certs.EncodeCert(issue(t, ca, "etcd-healthcheck-client", now.Add(364*24*time.Hour+time.Hour))))
	return out, ca
}

func byLabel(t *testing.T, entries []Entry) map[string]Entry {
	t.Helper()
	m := map[string]Entry{}
	for _, e := range entries {
		m[e.Label()] = e
	}
	return m
}

func TestReadBundle(t *testing.T) {
	out, ca := bundle(t)
	items := Bundle(out, []string{"etcd01", "etcd02"}, layout.DefaultCertDir, layout.DefaultCertDir)
	if len(items) != 1+5+5 {
		t.Fatalf("%d items, want the CA store and 5 per host (no control-plane folder): %v", len(items), items)
	}
	entries := Read(items, now)
	got := byLabel(t, entries)

	store := got["etcd-ca"]
	if store.Path != filepath.Join(out, "pki/etcd/ca.crt") || !store.CA || store.Missing || store.ExternallyManaged {
		t.Errorf("CA store entry: %+v", store)
	}
	if r := ResidualTime(store.Residual); r != "9y" {
		t.Errorf("CA residual time %q, want 9y", r)
	}
	for label, want := range map[string]struct {
		residual string
		expired  bool
		due30d   bool
	}{
		"etcd01/etcd-server":             {"<invalid>", true, true},
		"etcd01/etcd-peer":               {"23h", false, true},
		"etcd01/etcd-healthcheck-client": {"364d", false, false},
	} {
		e := got[label]
		if e.Cert == nil || e.Missing || e.Err != nil {
			t.Fatalf("%s: %+v", label, e)
		}
		if r := ResidualTime(e.Residual); r != want.residual || e.Expired != want.expired || e.Due(30*24*time.Hour) != want.due30d {
			t.Errorf("%s: residual %q expired %v due within 30d %v; want %q %v %v", label, r, e.Expired, e.Due(30*24*time.Hour), want.residual, want.expired, want.due30d)
		}
		if e.Issuer() != ca.Cert.Subject.CommonName || e.ExternallyManaged {
			t.Errorf("%s: authority %q externally managed %v", label, e.Issuer(), e.ExternallyManaged)
		}
	}
	if e := got["etcd01/etcd-peer"]; e.Due(23 * time.Hour) {
		t.Errorf("a certificate with 23h30m left is due within 23h")
	}
	if e := got["etcd01/etcd-healthcheck-client"]; !e.Due(365 * 24 * time.Hour) {
		t.Errorf("a certificate with 364d left is not due within 365d")
	}
	for _, label := range []string{"etcd01/apiserver-etcd-client", "etcd02/etcd-ca", "etcd02/etcd-server", "etcd02/apiserver-etcd-client"} {
		if e := got[label]; !e.Missing || e.Cert != nil || !e.Due(0) {
			t.Errorf("%s: want missing and due, got %+v", label, e)
		}
	}
	// Every entry's due verdict at 0 is exactly "missing or expired".
	for _, e := range entries {
		if e.Due(0) != (e.Missing || e.Expired) {
			t.Errorf("%s: due within 0 = %v, missing %v expired %v", e.Label(), e.Due(0), e.Missing, e.Expired)
		}
	}
}

func TestControlPlaneAndExternallyManaged(t *testing.T) {
	out, ca := bundle(t)
	cp := filepath.Join(out, ControlPlaneHost, layout.DefaultCertDir)
	write(t, filepath.Join(cp, "etcd/ca.crt"), certs.EncodeCert(ca.Cert))
	write(t, filepath.Join(cp, "apiserver-etcd-client.crt"), certs.EncodeCert(issue(t, ca, "apiserver-etcd-client", now.Add(100*24*time.Hour))))
	if err := os.Remove(filepath.Join(out, "pki/etcd/ca.key")); err != nil {
		t.Fatal(err)
	}
	entries := Read(Bundle(out, []string{"etcd01"}, layout.DefaultCertDir, layout.DefaultCertDir), now)
	got := byLabel(t, entries)
	e := got["control-plane/apiserver-etcd-client"]
	if e.Cert == nil || ResidualTime(e.Residual) != "100d" || e.Path != filepath.Join(cp, "apiserver-etcd-client.crt") {
		t.Errorf("control-plane client: %+v", e)
	}
	if !got["control-plane/etcd-ca"].CA {
		t.Errorf("control-plane ca.crt is not listed as a CA")
	}
	// Without the CA key nothing here can be renewed here.
	for _, e := range entries {
		if !e.ExternallyManaged {
			t.Errorf("%s: not externally managed without the CA key", e.Label())
		}
	}
	leaves, cas := Split(entries)
	if len(leaves) != 5 || len(cas) != 3 {
		t.Errorf("split into %d leaves and %d CAs, want 5 and 3", len(leaves), len(cas))
	}
}

func TestNodeAndUnreadable(t *testing.T) {
	root := t.TempDir()
	ca := newCA(t, now, 10*365*24*time.Hour)
	certDir := "/srv/pki"
	write(t, filepath.Join(root, certDir, "etcd/ca.crt"), certs.EncodeCert(ca.Cert))
	write(t, filepath.Join(root, certDir, "etcd/server.crt"), []byte("not a certificate\n"))
	items := Node(root, "etcd02", certDir)
	if len(items) != 5 {
		t.Fatalf("%d items on a node, want 5", len(items))
	}
	got := byLabel(t, Read(items, now))
	if e := got["etcd02/etcd-ca"]; !e.CA || !e.ExternallyManaged || e.Cert == nil {
		t.Errorf("node CA without its key: %+v", e)
	}
	bad := got["etcd02/etcd-server"]
	if bad.Err == nil || bad.Missing || bad.Due(time.Hour) || !strings.Contains(bad.Err.Error(), filepath.Join(root, certDir, "etcd/server.crt")) {
		t.Errorf("unreadable certificate: %+v", bad)
	}
	writeKey(t, filepath.Join(root, certDir, "etcd/ca.key"), ca)
	if e := byLabel(t, Read(items, now))["etcd02/etcd-peer"]; e.ExternallyManaged || !e.Missing {
		t.Errorf("node peer with the CA key beside it: %+v", e)
	}
}

func writeKey(t *testing.T, path string, ca *certs.Authority) {
	t.Helper()
	b, err := certs.EncodeKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, b)
}

// TestRowsJSON pins the printed document's field names and values.
func TestRowsJSON(t *testing.T) {
	out, _ := bundle(t)
	entries := Read(Bundle(out, []string{"etcd01"}, layout.DefaultCertDir, layout.DefaultCertDir), now)
	b, err := json.Marshal(Rows(entries, 30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string][]map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc) != 2 || len(doc["certificates"]) != 4 || len(doc["certificateAuthorities"]) != 2 {
		t.Fatalf("document: %s", b)
	}
	wantKeys := []string{"authority", "due", "error", "expired", "externallyManaged", "host", "missing", "name", "notAfter", "path", "residual", "residualSeconds", "serial"}
	for _, row := range append(doc["certificates"], doc["certificateAuthorities"]...) {
		var keys []string
		for k := range row {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, wantKeys) {
			t.Fatalf("row keys %v, want %v", keys, wantKeys)
		}
	}
	server := doc["certificates"][0]
	if server["name"] != "etcd-server" || server["host"] != "etcd01" || server["expired"] != true || server["due"] != true ||
		server["notAfter"] != now.Add(-24*time.Hour).Format(time.RFC3339) || server["residual"] != "-24h0m0s" || server["residualSeconds"] != float64(-86400) ||
		server["authority"] != "etcd-ca" || server["externallyManaged"] != false || server["missing"] != false || server["serial"] == "" {
		t.Errorf("expired server row: %v", server)
	}
	peer := doc["certificates"][1]
	if peer["residual"] != "23h30m0s" || peer["residualSeconds"] != float64(23*3600+1800) || peer["expired"] != false || peer["due"] != true {
		t.Errorf("expiring peer row: %v", peer)
	}
	if hc := doc["certificates"][2]; hc["due"] != false {
		t.Errorf("healthy row is due: %v", hc)
	}
	client := doc["certificates"][3]
	if client["missing"] != true || client["notAfter"] != "" || client["residual"] != "" || client["due"] != true || client["authority"] != "" {
		t.Errorf("missing row: %v", client)
	}
	if store := doc["certificateAuthorities"][0]; store["host"] != "" || store["authority"] != "" || store["name"] != "etcd-ca" {
		t.Errorf("CA store row: %v", store)
	}
	// Without a threshold nothing is due, not even what is missing.
	for _, r := range Rows(entries, -1).Certificates {
		if r.Due {
			t.Errorf("%s/%s due without a threshold", r.Host, r.Name)
		}
	}
}

func TestSerialAsOpenSSL(t *testing.T) {
	for in, want := range map[int64]string{0x69750C68F07FC01: "069750C68F07FC01", 0x1175DEF65789B1FA: "1175DEF65789B1FA", 1: "01"} {
		if got := Serial(big.NewInt(in)); got != want {
			t.Errorf("Serial(%x) = %s, want %s", in, got, want)
		}
	}
	if Serial(nil) != "" {
		t.Error("Serial(nil) is not empty")
	}
}
