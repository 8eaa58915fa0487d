package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/expiry"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// scrape asks a member for /metrics as Prometheus does with the files of
// OUT/monitoring: the member verified against ca.crt, the client pair
// presented.
func scrape(ctx context.Context, url, caFile, certFile, keyFile string) (string, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &scrapeError{resp.Status}
	}
	return string(body), nil
}

type scrapeError struct{ status string }

func (e *scrapeError) Error() string { return "scrape: " + e.status }

// TestRenewMonitoringScrapes: certs renew etcd-monitoring-client replaces
// the pair in OUT/monitoring (new serial and NotAfter, from the etcd CA,
// key 0600), lists it like the hosts' certificates, leaves prometheus.yml
// and the rules as they were, and a running member serves /metrics to the
// new pair as it refuses a pair of another CA. Bad input changes nothing.
func TestRenewMonitoringScrapes(t *testing.T) {
	dir := etcdtest.Bundles(t, initInProcess(t), 1, "--monitoring")
	c := etcdtest.Run(t, dir)
	member := c.Member("etcd01")
	mon := filepath.Join(dir, layout.MonitoringDir)
	caFile := filepath.Join(mon, layout.MonitoringCA)
	certFile, keyFile := layout.MonitoringClient.Cert(mon), layout.MonitoringClient.Key(mon)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	before := treeHash(t, dir)
	for _, args := range [][]string{
		{"certs", "renew", "etcd-monitoring-client", "--out", dir, "--node", "etcd01"},
		{"certs", "renew", "etcd-monitoring-client", "--out", dir, "--root", t.TempDir(), "--node", "etcd01"},
	} {
		stdout, stderr, code := runCLI(t, args...)
		assertOneLine(t, args, stdout, stderr, code, `--node "etcd01": etcd-monitoring-client belongs to no host`)
	}
	args := []string{"certs", "renew", "all", "--out", dir, "--within", "soon"}
	stdout, stderr, code := runCLI(t, args...)
	assertOneLine(t, args, stdout, stderr, code, `--within "soon": not a duration such as 720h or 30d`)
	if treeHash(t, dir) != before {
		t.Fatal("a refused renewal changed the bundles")
	}

	// Nothing expires within 30 days of init: nothing is written.
	nothingDueWithin30d(t, dir, "[renew] Kept etcd-monitoring-client for monitoring")

	if _, err := scrape(ctx, member.ClientURL, caFile, certFile, keyFile); err != nil {
		t.Fatalf("the pair init wrote: %v", err)
	}
	old := etcdtest.ReadCert(t, certFile)
	keep := map[string][]byte{}
	for _, f := range []string{layout.MonitoringConfig, layout.MonitoringRules, layout.MonitoringCA} {
		keep[f], _ = os.ReadFile(filepath.Join(mon, f))
	}
	hosts := treeHash(t, filepath.Join(dir, "etcd01"))
	archive, _ := os.ReadFile(filepath.Join(dir, "etcd01.tar.gz"))

	// The command's clock is the real one: NotAfter moves by the seconds
	// since init.
	time.Sleep(1100 * time.Millisecond)
	// Due within 400 days (it was made for 365).
	stdout, stderr, code = runCLI(t, "certs", "renew", "etcd-monitoring-client", "--out", dir, "--within", "400d", "-o", "json")
	if code != 0 {
		t.Fatalf("renew: exit %d\n%s", code, stderr)
	}
	var rows []renewalRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("renew -o json: %v\n%s", err, stdout)
	}
	cert := etcdtest.ReadCert(t, certFile)
	ca := etcdtest.ReadCert(t, caFile)
	want := renewalRow{Name: "etcd-monitoring-client", Host: "monitoring", Path: certFile,
		OldNotAfter: old.NotAfter.UTC().Format(time.RFC3339), NewNotAfter: cert.NotAfter.UTC().Format(time.RFC3339),
		OldSerial: expiry.Serial(old.SerialNumber), NewSerial: expiry.Serial(cert.SerialNumber)}
	if rows[0] != want {
		t.Errorf("row %+v, want %+v", rows[0], want)
	}
	if cert.SerialNumber.Cmp(old.SerialNumber) == 0 || !cert.NotAfter.After(old.NotAfter) {
		t.Errorf("not a new certificate: serial %s → %s, NotAfter %s → %s", old.SerialNumber, cert.SerialNumber, old.NotAfter, cert.NotAfter)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: certPool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the renewed certificate does not verify against the etcd CA: %v", err)
	}
	if cert.Subject.CommonName != "etcd-monitoring-client" || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("CN %q, usages %v", cert.Subject.CommonName, cert.ExtKeyUsage)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v", keyFile, fi.Mode(), err)
	}
	for f, data := range keep {
		if now, _ := os.ReadFile(filepath.Join(mon, f)); string(now) != string(data) {
			t.Errorf("%s changed", f)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "etcd01.tar.gz")); treeHash(t, filepath.Join(dir, "etcd01")) != hosts || string(now) != string(archive) {
		t.Error("renewing the monitoring certificate changed etcd01's files")
	}
	if strings.Contains(stdout+stderr, "PRIVATE KEY") {
		t.Error("key material printed")
	}

	body, err := scrape(ctx, member.ClientURL, caFile, certFile, keyFile)
	if err != nil || !strings.Contains(body, "\netcd_server_has_leader 1\n") {
		t.Fatalf("scrape with the renewed pair: %v\n%.300s", err, body)
	}
	t.Logf("etcd01 served %d bytes of /metrics to the renewed pair (serial %s, until %s)", len(body), expiry.Serial(cert.SerialNumber), cert.NotAfter.UTC().Format(time.RFC3339))

	// A pair of another CA gets nothing: the scrape above proves the
	// member checked the renewed one.
	fdir := t.TempDir()
	fcert, fkey := filepath.Join(fdir, "c.crt"), filepath.Join(fdir, "c.key")
	writeForeignMonitoringPair(t, fcert, fkey)
	if _, err := scrape(ctx, member.ClientURL, caFile, fcert, fkey); err == nil {
		t.Error("the member served /metrics to a client certificate of another CA")
	}

	// all: the table lists it with the hosts' and says what to do with it.
	stdout, stderr, code = runCLI(t, "certs", "renew", "all", "--out", dir)
	if code != 0 {
		t.Fatalf("renew all: exit %d\n%s", code, stderr)
	}
	var row []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "etcd-monitoring-client ") {
			row = strings.Fields(l)
		}
	}
	if len(row) < 3 || row[1] != "monitoring" || row[len(row)-1] != certFile {
		t.Errorf("table row %q:\n%s", row, stdout)
	}
	if !strings.Contains(stdout, "Prometheus needs the new etcd-monitoring-client.crt and etcd-monitoring-client.key") || !strings.Contains(stdout, "Copy each renewed host's") {
		t.Errorf("table:\n%s", stdout)
	}
	if _, err := scrape(ctx, member.ClientURL, caFile, certFile, keyFile); err != nil {
		t.Errorf("scrape after renew all: %v", err)
	}
}

// writeForeignMonitoringPair writes a monitoring client pair signed by a
// CA of its own, which no member of ours trusts.
func writeForeignMonitoringPair(t *testing.T, certFile, keyFile string) {
	t.Helper()
	other, err := certs.NewAuthority("ECDSA-P256", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, foreignKey, err := other.IssueNew(certs.Request{Profile: certs.MonitoringClient(), Validity: time.Hour}, "ECDSA-P256", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := certs.EncodeKey(foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(certs.EncodeCert(foreign)))
	writeFile(t, keyFile, string(keyPEM))
}

func certPool(ca *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}

// nothingDueWithin30d runs certs renew all --within 30d in the bundle
// folder out, as a table and as JSON: nothing is due, so it says so, logs
// kept (a Kept line), prints an empty list and changes no byte.
func nothingDueWithin30d(t *testing.T, out, kept string) {
	t.Helper()
	before := treeHash(t, out)
	stdout, stderr, code := runCLI(t, "certs", "renew", "all", "--out", out, "--within", "30d")
	if code != 0 || !strings.Contains(stdout, "Nothing is due within 30d: no certificate renewed.") || !strings.Contains(stdout, kept) {
		t.Errorf("renew --within 30d: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, _, code := runCLI(t, "certs", "renew", "all", "--out", out, "--within", "30d", "-o", "json"); code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("renew --within 30d -o json: exit %d\n%s", code, stdout)
	}
	if treeHash(t, out) != before {
		t.Fatal("renew --within 30d with nothing due changed the output")
	}
}
