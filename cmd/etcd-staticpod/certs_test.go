package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/expiry"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// initBundle makes the guide's three hosts' bundles with ECDSA keys.
func initBundle(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundles")
	if stdout, stderr, code := runCLI(t, "init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out); code != 0 {
		t.Fatalf("init exited %d\n%s%s", code, stdout, stderr)
	}
	return out
}

// reissue replaces a host's certificate with one from the bundle's CA that
// expires at notAfter.
func reissue(t *testing.T, out, host, name string, notAfter time.Time) {
	t.Helper()
	caCert, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
	caKey, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.key"))
	ca, err := certs.ParseAuthority(caCert, caKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := certs.Leaf(name)
	h := spec.Host{Name: host, Address: "10.107.88.15"}
	cert, key, err := ca.IssueNew(certs.Request{Profile: p, Host: h, Validity: 365 * 24 * time.Hour}, "ECDSA-P256", notAfter.Add(-365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := certs.EncodeKey(key)
	base := filepath.Join(out, host, layout.DefaultCertDir, string(p.Files))
	writeFile(t, base+".key", string(keyPEM))
	writeFile(t, base+".crt", string(certs.EncodeCert(cert)))
}

func expirationJSON(t *testing.T, stdout string) expiry.Document {
	t.Helper()
	var doc expiry.Document
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("check-expiration -o json: %v\n%s", err, stdout)
	}
	return doc
}

func findRow(rows []expiry.Row, host, name string) (expiry.Row, bool) {
	i := slices.IndexFunc(rows, func(r expiry.Row) bool { return r.Host == host && r.Name == name })
	if i < 0 {
		return expiry.Row{}, false
	}
	return rows[i], true
}

func TestCheckExpirationBundle(t *testing.T) {
	out := initBundle(t)
	stdout, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "CERTIFICATE HOST EXPIRES RESIDUAL TIME CERTIFICATE AUTHORITY EXTERNALLY MANAGED PATH" {
		t.Errorf("header %q", lines[0])
	}
	// 4 certificates × 3 hosts and the control plane's copy, a blank line,
	// the CA header, the CA store, 3 hosts' and the control plane's ca.crt.
	if len(lines) != 1+13+1+1+5 {
		t.Errorf("%d lines:\n%s", len(lines), stdout)
	}
	server := filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/server.crt")
	want := regexpLine(t, stdout, server)
	for _, field := range []string{"etcd-server", "etcd02", "364d", "etcd-ca", "no", expiry.Expires(etcdtest.ReadCert(t, server).NotAfter)} {
		if !strings.Contains(want, field) {
			t.Errorf("row %q lacks %q", want, field)
		}
	}
	if ca := regexpLine(t, stdout, filepath.Join(out, "pki/etcd/ca.crt")); !strings.Contains(ca, " 9y ") {
		t.Errorf("CA row %q", ca)
	}

	// Within a year every leaf is due; within 30 days none.
	stdout, stderr, code = runCLI(t, "certs", "check-expiration", "--out", out, "--within", "8760h", "-o", "json")
	if code != exitDue || !strings.Contains(lastLine(stderr), "13 certificate(s) due within 8760h: etcd01/etcd-server (364d left)") {
		t.Errorf("--within 8760h: exit %d, %s", code, stderr)
	}
	doc := expirationJSON(t, stdout)
	if len(doc.Certificates) != 13 || len(doc.CertificateAuthorities) != 5 {
		t.Fatalf("%d certificates and %d CAs", len(doc.Certificates), len(doc.CertificateAuthorities))
	}
	for _, r := range doc.Certificates {
		if !r.Due || r.Expired || r.Missing || r.Authority != "etcd-ca" || r.Serial == "" || r.ResidualSeconds < 363*86400 {
			t.Errorf("row %+v", r)
		}
		if _, err := time.Parse(time.RFC3339, r.NotAfter); err != nil {
			t.Errorf("notAfter %q: %v", r.NotAfter, err)
		}
		if d, err := time.ParseDuration(r.Residual); err != nil || int64(d/time.Second) != r.ResidualSeconds {
			t.Errorf("residual %q vs %d seconds", r.Residual, r.ResidualSeconds)
		}
	}
	if _, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out, "--within", "30d"); code != 0 {
		t.Errorf("--within 30d: exit %d, %s", code, stderr)
	}
}

// TestCheckExpirationVerdicts: an expired, an expiring and a missing
// certificate, with and without a threshold, in every output format.
func TestCheckExpirationVerdicts(t *testing.T) {
	out := initBundle(t)
	now := time.Now()
	reissue(t, out, "etcd01", "etcd-server", now.Add(-time.Hour))
	reissue(t, out, "etcd02", "etcd-peer", now.Add(10*24*time.Hour))
	if err := os.Remove(filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/healthcheck-client.crt")); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out)
	if code != 0 {
		t.Errorf("without --within: exit %d, %s", code, stderr)
	}
	if l := regexpLine(t, stdout, filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/healthcheck-client.crt")); !strings.HasPrefix(l, "!MISSING! etcd-healthcheck-client") {
		t.Errorf("missing row %q", l)
	}
	if l := regexpLine(t, stdout, filepath.Join(out, "etcd01/etc/kubernetes/pki/etcd/server.crt")); !strings.Contains(l, "<invalid>") {
		t.Errorf("expired row %q", l)
	}
	if l := regexpLine(t, stdout, filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/peer.crt")); !strings.Contains(l, " 9d") && !strings.Contains(l, " 10d") {
		t.Errorf("expiring row %q", l)
	}

	for _, tc := range []struct {
		within string
		code   int
		due    []string
	}{
		{"0", exitDue, []string{"etcd01/etcd-server", "etcd03/etcd-healthcheck-client"}},
		{"30d", exitDue, []string{"etcd01/etcd-server", "etcd02/etcd-peer", "etcd03/etcd-healthcheck-client"}},
		{"240h", exitDue, []string{"etcd01/etcd-server", "etcd02/etcd-peer", "etcd03/etcd-healthcheck-client"}},
		{"5d", exitDue, []string{"etcd01/etcd-server", "etcd03/etcd-healthcheck-client"}},
	} {
		for _, format := range []string{"json", "yaml"} {
			stdout, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out, "--within", tc.within, "-o", format)
			if code != tc.code {
				t.Errorf("--within %s: exit %d, want %d; %s", tc.within, code, tc.code, stderr)
			}
			var doc expiry.Document
			var err error
			if format == "json" {
				err = json.Unmarshal([]byte(stdout), &doc)
			} else {
				err = yaml.Unmarshal([]byte(stdout), &doc)
			}
			if err != nil {
				t.Fatalf("-o %s: %v\n%s", format, err, stdout)
			}
			var due []string
			for _, r := range append(doc.Certificates, doc.CertificateAuthorities...) {
				if r.Due {
					due = append(due, r.Host+"/"+r.Name)
				}
			}
			if !slices.Equal(due, tc.due) {
				t.Errorf("--within %s -o %s: due %v, want %v", tc.within, format, due, tc.due)
			}
			for _, d := range tc.due {
				if !strings.Contains(lastLine(stderr), d) {
					t.Errorf("--within %s: error line %q does not name %s", tc.within, lastLine(stderr), d)
				}
			}
			if r, _ := findRow(doc.Certificates, "etcd01", "etcd-server"); !r.Expired || r.ResidualSeconds >= 0 || !strings.HasPrefix(r.Residual, "-") {
				t.Errorf("expired row %+v", r)
			}
			if r, _ := findRow(doc.Certificates, "etcd03", "etcd-healthcheck-client"); !r.Missing || r.NotAfter != "" {
				t.Errorf("missing row %+v", r)
			}
		}
	}

	// An unreadable certificate is an error of its own, whatever is due.
	writeFile(t, filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/server.crt"), "garbage\n")
	stdout, stderr, code = runCLI(t, "certs", "check-expiration", "--out", out, "--within", "30d")
	if code != 1 || !strings.Contains(lastLine(stderr), "1 certificate file(s) cannot be read") || !strings.Contains(lastLine(stderr), "etcd02/etc/kubernetes/pki/etcd/server.crt") {
		t.Errorf("unreadable: exit %d, %s", code, stderr)
	}
	if !strings.Contains(stdout, "!UNREADABLE! etcd-server") {
		t.Errorf("unreadable row not shown:\n%s", stdout)
	}
}

// TestCheckExpirationNode reads a node's own files; the host name and the
// certificate folder come from its manifest, and without the CA key
// everything is externally managed.
func TestCheckExpirationNode(t *testing.T) {
	out := initBundle(t)
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join(out, "etcd02"))); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "certs", "check-expiration", "--root", root, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	doc := expirationJSON(t, stdout)
	if len(doc.Certificates) != 4 || len(doc.CertificateAuthorities) != 1 {
		t.Fatalf("%+v", doc)
	}
	for _, r := range append(doc.Certificates, doc.CertificateAuthorities...) {
		if r.Host != "etcd02" || !r.ExternallyManaged || !strings.HasPrefix(r.Path, filepath.Join(root, layout.DefaultCertDir)) || r.Missing {
			t.Errorf("node row %+v", r)
		}
	}
	// Another certificate folder: nothing there, all missing.
	stdout, _, code = runCLI(t, "certs", "check-expiration", "--root", root, "--cert-dir", "/srv/pki", "--within", "1h", "-o", "json")
	if code != exitDue {
		t.Errorf("--cert-dir with nothing in it: exit %d", code)
	}
	for _, r := range expirationJSON(t, stdout).Certificates {
		if !r.Missing || !strings.HasPrefix(r.Path, filepath.Join(root, "/srv/pki")) {
			t.Errorf("row %+v", r)
		}
	}
}

func TestCertsRejectBadInput(t *testing.T) {
	out := initBundle(t)
	before := treeHash(t, out)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check-expiration", "--out", out, "--within", "soon"}, `--within "soon": not a duration such as 720h or 30d`},
		{[]string{"check-expiration", "--out", out, "--within", "-1h"}, `--within "-1h": must not be negative`},
		{[]string{"check-expiration", "--out", out, "-o", "xml"}, `--output "xml": want table, json, yaml or prometheus`},
		{[]string{"check-expiration", "--out", filepath.Join(out, "nope")}, `--out "` + filepath.Join(out, "nope") + `": no such folder`},
		{[]string{"check-expiration", "--out", filepath.Join(out, "etcd01")}, "no bundles here"},
		{[]string{"check-expiration", "--out", out, "--root", "/"}, `--root "/": give --out or --root, not both`},
		{[]string{"check-expiration", "--out", out, "--cert-dir", "pki"}, `--cert-dir "pki": must be an absolute path`},
		{[]string{"check-expiration", "--out", out, "etcd01"}, `unexpected argument "etcd01"`},
		{[]string{"check-expiration", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"renew"}, "name the certificate to renew: all, etcd-server"},
		{[]string{"renew", "etcd-ca", "--out", out}, `certificate "etcd-ca": want all or one of etcd-server`},
		{[]string{"renew", "all", "extra", "--out", out}, `unexpected argument "extra"`},
		{[]string{"renew", "all", "--out", out, "--node", "etcd09"}, `--node "etcd09": no such host in the cluster spec`},
		{[]string{"renew", "all", "--out", out, "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{[]string{"renew", "etcd-peer", "--out", out, "--root", t.TempDir()}, "needs --node"},
		{[]string{"renew", "all", "--out", out, "--ca-cert", filepath.Join(out, "pki/etcd/ca.crt")}, "give both or neither"},
		{[]string{"renew", "all", "--out", out, "--config", filepath.Join(out, "nope.yaml")}, "read cluster spec"},
		{[]string{"renew", "all", "--out", out, "--certificate-validity", "1y"}, "flag provided but not defined"},
	} {
		stdout, stderr, code := runCLI(t, append([]string{"certs"}, tc.args...)...)
		if code != exitBadInput || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	if treeHash(t, out) != before {
		t.Error("bad input changed the bundle folder")
	}
}

// TestRenewCommand: renewing from the bundle folder picks up a SAN added to
// the recorded spec, reports old and new expiry and serial, never prints a
// key, keeps the CA and repacks the archives; --node leaves the other hosts
// alone; --dry-run writes nothing.
func TestRenewCommand(t *testing.T) {
	out := initBundle(t)
	recorded := filepath.Join(out, layout.SpecFile)
	cl, err := spec.Load(recorded)
	if err != nil {
		t.Fatal(err)
	}
	cl.Hosts[1].ServerCertSANs = []string{"etcd02.example.internal"}
	b, _ := spec.Marshal(cl)
	writeFile(t, recorded, string(b))
	keys := keyBodies(t, out)

	before := treeHash(t, out)
	stdout, stderr, code := runCLI(t, "certs", "renew", "all", "--out", out, "--dry-run")
	if code != 0 || treeHash(t, out) != before {
		t.Fatalf("dry run: exit %d, changed %v: %s", code, treeHash(t, out) != before, stderr)
	}
	if !strings.Contains(stdout, "[dry-run] would renew etcd-server for etcd02") || !strings.Contains(stdout, "(dry run)") {
		t.Errorf("dry run output:\n%s", stdout)
	}

	oldServer := etcdtest.ReadCert(t, filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/server.crt"))
	otherHosts := map[string]string{"etcd01": treeHash(t, filepath.Join(out, "etcd01")), "etcd03": treeHash(t, filepath.Join(out, "etcd03")), "control-plane": treeHash(t, filepath.Join(out, "control-plane"))}
	archives := map[string][]byte{}
	for _, n := range []string{"etcd01", "etcd02", "etcd03", "control-plane"} {
		archives[n], _ = os.ReadFile(filepath.Join(out, n+".tar.gz"))
	}
	caStore := treeHash(t, filepath.Join(out, "pki"))
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))

	stdout, stderr, code = runCLI(t, "certs", "renew", "all", "--node", "etcd02", "--out", out, "-o", "json")
	if code != 0 {
		t.Fatalf("renew: exit %d: %s", code, stderr)
	}
	var rows []map[string]string
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("renew -o json: %v\n%s", err, stdout)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		var keys []string
		for k := range r {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if strings.Join(keys, ",") != "host,name,newNotAfter,newSerial,oldNotAfter,oldSerial,path" {
			t.Errorf("row fields %v", keys)
		}
		cert := etcdtest.ReadCert(t, r["path"])
		if r["host"] != "etcd02" || r["newSerial"] != expiry.Serial(cert.SerialNumber) || r["oldSerial"] == r["newSerial"] || r["oldSerial"] == "" ||
			r["newNotAfter"] != cert.NotAfter.UTC().Format(time.RFC3339) {
			t.Errorf("row %v", r)
		}
	}
	server := etcdtest.ReadCert(t, filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/server.crt"))
	if !slices.Contains(server.DNSNames, "etcd02.example.internal") || server.SerialNumber.Cmp(oldServer.SerialNumber) == 0 {
		t.Errorf("new server certificate: serial %v, SANs %v", server.SerialNumber, server.DNSNames)
	}
	if !strings.Contains(stderr, "[renew] Renewed etcd-server for etcd02") {
		t.Errorf("-o json: progress not on stderr: %q", stderr)
	}
	for host, h := range otherHosts {
		if treeHash(t, filepath.Join(out, host)) != h {
			t.Errorf("renewing etcd02 changed %s", host)
		}
	}
	if treeHash(t, filepath.Join(out, "pki")) != caStore {
		t.Error("the CA store changed")
	}
	for n, old := range archives {
		now, _ := os.ReadFile(filepath.Join(out, n+".tar.gz"))
		if (n == "etcd02") == bytes.Equal(old, now) {
			t.Errorf("%s.tar.gz changed: %v", n, !bytes.Equal(old, now))
		}
	}
	if now, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS")); bytes.Equal(now, sums) {
		t.Error("SHA256SUMS not rewritten")
	}

	// All hosts, as a table: the control plane's copy follows etcd01's.
	stdout, stderr, code = runCLI(t, "certs", "renew", "apiserver-etcd-client", "--out", out)
	if code != 0 {
		t.Fatalf("renew apiserver-etcd-client: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "CERTIFICATE") || !strings.Contains(stdout, "EXPIRES (OLD → NEW)") || strings.Count(stdout, "\napiserver-etcd-client ") != 3 || !strings.Contains(stdout, "control-plane.tar.gz") {
		t.Errorf("table:\n%s", stdout)
	}
	cp, _ := os.ReadFile(filepath.Join(out, "control-plane/etc/kubernetes/pki/apiserver-etcd-client.crt"))
	first, _ := os.ReadFile(filepath.Join(out, "etcd01/etc/kubernetes/pki/apiserver-etcd-client.crt"))
	if !bytes.Equal(cp, first) {
		t.Error("the control plane's copy does not follow etcd01's new apiserver-etcd-client")
	}
	for path, lines := range keyBodies(t, out) {
		_ = path
		for _, l := range lines {
			if strings.Contains(stdout+stderr, l) {
				t.Fatalf("key material of %s printed", path)
			}
		}
	}
	for path := range keys {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", path, fi.Mode(), err)
		}
	}
}

// regexpLine returns the line of out that contains s.
func regexpLine(t *testing.T, out, s string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	t.Fatalf("no line with %q in:\n%s", s, out)
	return ""
}

// TestRenewCommandOnNode: on a node the CA comes from --ca-cert/--ca-key;
// without it the run is refused (exit 2) in one line and writes nothing.
func TestRenewCommandOnNode(t *testing.T) {
	out := initBundle(t)
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join(out, "etcd03"))); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, root)
	config := filepath.Join(out, layout.SpecFile)
	empty := t.TempDir()
	args := []string{"certs", "renew", "all", "--config", config, "--node", "etcd03", "--root", root, "--out", empty}
	stdout, stderr, code := runCLI(t, args...)
	if code != exitBadInput || !strings.Contains(stderr, "no "+filepath.Join(empty, "pki/etcd/ca.crt")+": renewing signs with the CA") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("without a CA: exit %d\n%s%s", code, stdout, stderr)
	}
	if treeHash(t, root) != before {
		t.Error("a failed renewal changed the node")
	}
	oldPeer := etcdtest.ReadCert(t, filepath.Join(root, "etc/kubernetes/pki/etcd/peer.crt"))
	stdout, stderr, code = runCLI(t, append(args, "--ca-cert", filepath.Join(out, "pki/etcd/ca.crt"), "--ca-key", filepath.Join(out, "pki/etcd/ca.key"))...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	peer := etcdtest.ReadCert(t, filepath.Join(root, "etc/kubernetes/pki/etcd/peer.crt"))
	if peer.SerialNumber.Cmp(oldPeer.SerialNumber) == 0 || !strings.Contains(stdout, expiry.Serial(oldPeer.SerialNumber)+" → "+expiry.Serial(peer.SerialNumber)) {
		t.Errorf("peer %s → %s not reported:\n%s", expiry.Serial(oldPeer.SerialNumber), expiry.Serial(peer.SerialNumber), stdout)
	}
	if !strings.Contains(stdout, "Restart etcd on this host") {
		t.Errorf("no restart hint:\n%s", stdout)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("node mode wrote into --out: %v", entries)
	}
}
