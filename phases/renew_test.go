package phases

import (
	"bytes"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// renewLater is when the tests renew: 300 days after init, within the
// year the first certificates are valid for.
var renewLater = fixedNow.Add(300 * 24 * time.Hour)

func withECDSA(c *spec.Cluster) { c.EncryptionAlgorithm = "ECDSA-P256" }

// snapshot reads every regular file below dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// changed lists the files that differ between two snapshots.
func changed(before, after map[string][]byte) []string {
	var out []string
	for p, b := range after {
		if !bytes.Equal(before[p], b) {
			out = append(out, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out = append(out, p+" (removed)")
		}
	}
	slices.Sort(out)
	return out
}

func renew(t *testing.T, opts Options, names ...string) ([]Renewal, string) {
	t.Helper()
	var log bytes.Buffer
	opts.Log = &log
	opts.Now = func() time.Time { return renewLater }
	r, err := NewRunner(opts)
	if err != nil {
		t.Fatal(err)
	}
	var ps []certs.Profile
	for _, n := range names {
		p, ok := certs.Leaf(n)
		if n == certs.MonitoringClient().Name {
			p, ok = certs.MonitoringClient(), true
		}
		if !ok {
			t.Fatalf("no profile %s", n)
		}
		ps = append(ps, p)
	}
	done, err := r.Renew(ps)
	if err != nil {
		t.Fatalf("renew: %v\n%s", err, log.String())
	}
	if strings.Contains(log.String(), "PRIVATE KEY") {
		t.Error("renewal printed a key")
	}
	return done, log.String()
}

var allLeaves = []string{"etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"}

// TestRenewAllHosts: every host gets a new key and certificate for every
// profile, from the same CA, with a SAN added to the spec since init; the
// CA store stays as it was; the control plane's copy and the archives
// follow.
func TestRenewAllHosts(t *testing.T) {
	out := t.TempDir()
	runAll(t, Options{Cluster: guideCluster(t, withECDSA), Out: out})
	before := snapshot(t, out)
	ca := etcdtest.ReadCert(t, filepath.Join(out, "pki/etcd/ca.crt"))

	c := guideCluster(t, withECDSA, func(c *spec.Cluster) {
		c.Hosts[0].ServerCertSANs = []string{"etcd01.example.internal", "10.107.88.99"}
	})
	done, log := renew(t, Options{Cluster: c, Out: out}, allLeaves...)
	after := snapshot(t, out)

	if len(done) != 12 {
		t.Fatalf("%d renewals, want 4 certificates × 3 hosts", len(done))
	}
	for _, rn := range done {
		p, _ := certs.Leaf(rn.Name)
		h, _ := c.Host(rn.Host)
		base := strings.TrimSuffix(rn.Path, ".crt")
		if rn.Path != filepath.Join(out, rn.Host, "etc/kubernetes/pki", string(p.Files)+".crt") {
			t.Errorf("%s/%s: path %s", rn.Host, rn.Name, rn.Path)
		}
		if rn.Old == nil || rn.New == nil || rn.Old.SerialNumber.Cmp(rn.New.SerialNumber) == 0 {
			t.Fatalf("%s/%s: old %v new %v", rn.Host, rn.Name, rn.Old, rn.New)
		}
		cert := etcdtest.ReadCert(t, rn.Path)
		if !cert.Equal(rn.New) {
			t.Errorf("%s: not the certificate reported", rn.Path)
		}
		if err := cert.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s: not signed by the CA: %v", rn.Path, err)
		}
		if !cert.NotAfter.Equal(renewLater.Add(365*24*time.Hour).UTC().Truncate(time.Second)) || !rn.NotAfter.Equal(cert.NotAfter) {
			t.Errorf("%s: NotAfter %s", rn.Path, cert.NotAfter)
		}
		rel, _ := filepath.Rel(out, base+".key")
		if bytes.Equal(before[rel], after[rel]) {
			t.Errorf("%s: key not replaced", rel)
		}
		checkKeyFile(t, base+".key", cert, "ECDSA-P256")
		checkMode(t, base+".key", 0o600)
		checkMode(t, rn.Path, 0o644)
		if cert.Subject.CommonName != p.CommonName(h) || !slices.Equal(cert.ExtKeyUsage, p.Usages) || !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) {
			t.Errorf("%s: subject %s, usages %v, AKI %x: not the %s profile from this CA", rn.Path, cert.Subject, cert.ExtKeyUsage, cert.AuthorityKeyId, p.Name)
		}
		checkCritical(t, cert)
	}
	server := etcdtest.ReadCert(t, filepath.Join(out, "etcd01/etc/kubernetes/pki/etcd/server.crt"))
	if !slices.Contains(server.DNSNames, "etcd01.example.internal") || !slices.ContainsFunc(server.IPAddresses, func(ip net.IP) bool { return ip.String() == "10.107.88.99" }) {
		t.Errorf("the SANs added to the spec are not in etcd01's server certificate: %v %v", server.DNSNames, server.IPAddresses)
	}
	if peer := etcdtest.ReadCert(t, filepath.Join(out, "etcd01/etc/kubernetes/pki/etcd/peer.crt")); slices.Contains(peer.DNSNames, "etcd01.example.internal") {
		t.Errorf("a server SAN went into the peer certificate")
	}
	for _, f := range []string{"pki/etcd/ca.crt", "pki/etcd/ca.key", "etcd01/etc/kubernetes/pki/etcd/ca.crt", "etcd01/etc/kubernetes/manifests/etcd.yaml", "control-plane/etc/kubernetes/pki/etcd/ca.crt", "kubeadm-config.yaml"} {
		if !bytes.Equal(before[f], after[f]) {
			t.Errorf("%s changed", f)
		}
	}
	for _, ext := range []string{".crt", ".key"} {
		cp := "control-plane/etc/kubernetes/pki/apiserver-etcd-client" + ext
		if !bytes.Equal(after[cp], after["etcd01/etc/kubernetes/pki/apiserver-etcd-client"+ext]) || bytes.Equal(after[cp], before[cp]) {
			t.Errorf("%s is not etcd01's new pair", cp)
		}
	}
	checkMode(t, filepath.Join(out, "control-plane/etc/kubernetes/pki/apiserver-etcd-client.key"), 0o600)
	for _, name := range []string{"etcd01", "etcd02", "etcd03", "control-plane"} {
		if bytes.Equal(before[name+".tar.gz"], after[name+".tar.gz"]) {
			t.Errorf("%s.tar.gz was not packed again", name)
		}
		checkArchive(t, filepath.Join(out, name+".tar.gz"), filepath.Join(out, name))
	}
	checkSums(t, out, after)
	if !strings.Contains(log, "[renew] Renewed etcd-server for etcd02") || !strings.Contains(log, "[bundle] Wrote") {
		t.Errorf("log:\n%s", log)
	}
}

// checkSums: SHA256SUMS names every archive with its current digest.
func checkSums(t *testing.T, out string, files map[string][]byte) {
	t.Helper()
	var names []string
	for p := range files {
		if strings.HasSuffix(p, ".tar.gz") {
			names = append(names, p)
		}
	}
	slices.Sort(names)
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), files[n], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := archive.WriteSHA256Sums(dir, names); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(dir, layout.SumsFile))
	if !bytes.Equal(files[layout.SumsFile], want) {
		t.Errorf("SHA256SUMS:\n%s\nwant\n%s", files[layout.SumsFile], want)
	}
}

// TestRenewOneNode: with --node only that host's certificates change, its
// archive and SHA256SUMS with them; the other archives are the same bytes.
func TestRenewOneNode(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA)
	runAll(t, Options{Cluster: c, Out: out})
	before := snapshot(t, out)
	done, _ := renew(t, Options{Cluster: c, Out: out, Node: "etcd02"}, allLeaves...)
	if len(done) != 4 {
		t.Fatalf("%d renewals, want 4", len(done))
	}
	want := []string{"SHA256SUMS", "etcd02.tar.gz"}
	for _, p := range []string{"etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client"} {
		for _, ext := range []string{".crt", ".key"} {
			want = append(want, "etcd02/etc/kubernetes/pki/"+p+ext)
		}
	}
	slices.Sort(want)
	after := snapshot(t, out)
	if got := changed(before, after); !slices.Equal(got, want) {
		t.Errorf("changed:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkSums(t, out, after)
}

// TestRenewOneCertificate: one profile changes, on every host; the control
// plane's copy follows the first host's apiserver-etcd-client only.
func TestRenewOneCertificate(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA)
	runAll(t, Options{Cluster: c, Out: out}, "bundle")
	before := snapshot(t, out)
	renew(t, Options{Cluster: c, Out: out}, "etcd-peer")
	after := snapshot(t, out)
	for _, p := range changed(before, after) {
		if !strings.HasSuffix(p, "/etcd/peer.crt") && !strings.HasSuffix(p, "/etcd/peer.key") && !strings.HasSuffix(p, ".tar.gz") && p != "SHA256SUMS" {
			t.Errorf("%s changed by renewing etcd-peer", p)
		}
	}
	const cpKey = "control-plane/etc/kubernetes/pki/apiserver-etcd-client.key"
	renew(t, Options{Cluster: c, Out: out, Node: "etcd02"}, "apiserver-etcd-client")
	if now := snapshot(t, out); !bytes.Equal(now[cpKey], before[cpKey]) {
		t.Errorf("renewing etcd02's apiserver-etcd-client changed the control plane's copy of etcd01's")
	}
	renew(t, Options{Cluster: c, Out: out, Node: "etcd01"}, "apiserver-etcd-client")
	now := snapshot(t, out)
	if bytes.Equal(now[cpKey], before[cpKey]) || !bytes.Equal(now[cpKey], now["etcd01/etc/kubernetes/pki/apiserver-etcd-client.key"]) {
		t.Errorf("the control plane's copy does not follow etcd01's renewed apiserver-etcd-client")
	}
}

// TestRenewOnNode: with --root the node's files are replaced in place, with
// the CA key from --ca-cert/--ca-key or the CA store; nothing is packed and
// the bundle folder stays as it was.
func TestRenewOnNode(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA)
	runAll(t, Options{Cluster: c, Out: out})
	for _, tc := range []struct {
		name string
		opts func(root string) Options
	}{
		{"CA store", func(root string) Options { return Options{Cluster: c, Out: out, Node: "etcd03", Root: root} }},
		{"CA flags", func(root string) Options {
			return Options{Cluster: c, Out: t.TempDir(), Node: "etcd03", Root: root,
				CACert: filepath.Join(out, "pki/etcd/ca.crt"), CAKey: filepath.Join(out, "pki/etcd/ca.key")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.CopyFS(root, os.DirFS(filepath.Join(out, "etcd03"))); err != nil {
				t.Fatal(err)
			}
			bundleBefore, nodeBefore := snapshot(t, out), snapshot(t, root)
			opts := tc.opts(root)
			done, log := renew(t, opts, allLeaves...)
			if len(done) != 4 {
				t.Fatalf("%d renewals", len(done))
			}
			for _, rn := range done {
				if !strings.HasPrefix(rn.Path, root+"/etc/kubernetes/pki/") || rn.Host != "etcd03" {
					t.Errorf("renewed %s for %s", rn.Path, rn.Host)
				}
				checkMode(t, strings.TrimSuffix(rn.Path, ".crt")+".key", 0o600)
			}
			if got := changed(bundleBefore, snapshot(t, out)); len(got) > 0 {
				t.Errorf("node mode changed the bundle folder: %v", got)
			}
			if got := changed(nodeBefore, snapshot(t, root)); len(got) != 8 {
				t.Errorf("node mode changed %v, want the 4 pairs", got)
			}
			if entries, _ := os.ReadDir(opts.Out); opts.Out != out && len(entries) > 0 {
				t.Errorf("node mode wrote into --out: %v", entries)
			}
			if strings.Contains(log, "[bundle]") {
				t.Errorf("node mode packed archives:\n%s", log)
			}
		})
	}
}

func TestRenewDryRun(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA)
	runAll(t, Options{Cluster: c, Out: out})
	before := snapshot(t, out)
	done, log := renew(t, Options{Cluster: c, Out: out, DryRun: true}, allLeaves...)
	if got := changed(before, snapshot(t, out)); len(got) > 0 {
		t.Errorf("dry run changed %v", got)
	}
	if len(done) != 12 {
		t.Fatalf("%d renewals", len(done))
	}
	for _, rn := range done {
		if rn.Old == nil || rn.New != nil || !rn.NotAfter.Equal(renewLater.Add(8760*time.Hour).UTC()) {
			t.Errorf("dry run %s/%s: old %v new %v until %s", rn.Host, rn.Name, rn.Old != nil, rn.New != nil, rn.NotAfter)
		}
	}
	for _, want := range []string{"[dry-run] would renew etcd-peer for etcd03", "control-plane/etc/kubernetes/pki/apiserver-etcd-client.key (0600)", "etcd02.tar.gz", "SHA256SUMS"} {
		if !strings.Contains(log, want) {
			t.Errorf("dry run log lacks %q:\n%s", want, log)
		}
	}
}

// TestRenewMissingCertificate: a certificate that is gone is issued again,
// with nothing to report as the old one.
func TestRenewMissingCertificate(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA)
	runAll(t, Options{Cluster: c, Out: out}, "bundle")
	base := filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/healthcheck-client")
	for _, ext := range []string{".crt", ".key"} {
		if err := os.Remove(base + ext); err != nil {
			t.Fatal(err)
		}
	}
	done, _ := renew(t, Options{Cluster: c, Out: out, Node: "etcd03"}, "etcd-healthcheck-client")
	if len(done) != 1 || done[0].Old != nil || done[0].New == nil {
		t.Fatalf("renewals: %+v", done)
	}
	checkKeyFile(t, base+".key", etcdtest.ReadCert(t, base+".crt"), "ECDSA-P256")
}

// TestRenewRefuses: without the CA key, for a host that trusts another CA,
// or for a host init never made, nothing is written.
func TestRenewRefuses(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA)
	runAll(t, Options{Cluster: c, Out: out})
	other, err := certs.NewAuthority("ECDSA-P256", time.Hour*24*365, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(otherCA, certs.EncodeCert(other.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	key, _ := certs.EncodeKey(other.Key)
	otherKey := filepath.Join(t.TempDir(), "ca.key")
	if err := os.WriteFile(otherKey, key, 0o600); err != nil {
		t.Fatal(err)
	}
	server, _ := certs.Leaf("etcd-server")
	for _, tc := range []struct {
		name string
		opts Options
		prep func(t *testing.T)
		want string
	}{
		{"no CA key", Options{Cluster: c, Out: out}, func(t *testing.T) {
			if err := os.Rename(filepath.Join(out, "pki/etcd/ca.key"), filepath.Join(out, "ca.key.away")); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Rename(filepath.Join(out, "ca.key.away"), filepath.Join(out, "pki/etcd/ca.key")) })
		}, "no " + filepath.Join(out, "pki/etcd/ca.key") + ": renewing signs with the CA that made the hosts' certificates"},
		{"another CA", Options{Cluster: c, Out: out, CACert: otherCA, CAKey: otherKey}, func(*testing.T) {},
			`host "etcd01": ` + filepath.Join(out, "etcd01/etc/kubernetes/pki/etcd/ca.crt") + " is not the CA certificate " + otherCA},
		{"host never made", Options{Cluster: c, Out: out, Node: "etcd02"}, func(t *testing.T) {
			if err := os.Rename(filepath.Join(out, "etcd02"), filepath.Join(out, "etcd02.away")); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Rename(filepath.Join(out, "etcd02.away"), filepath.Join(out, "etcd02")) })
		}, `host "etcd02": no ` + filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/ca.crt")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prep(t)
			before := snapshot(t, out)
			r, err := NewRunner(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Renew([]certs.Profile{server})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if got := changed(before, snapshot(t, out)); len(got) > 0 {
				t.Errorf("a refused renewal changed %v", got)
			}
		})
	}
}

func withMonitoring(c *spec.Cluster) { c.Monitoring = true }

// TestRenewMonitoringClient: all, without --node, renews the monitoring
// client certificate with the hosts' rules (a new key, 0600, first; the
// CA in use; the spec's validity; CN etcd-monitoring-client, client auth
// only) and leaves prometheus.yml, the rules and ca.crt byte for byte.
// Renewed alone, nothing else changes; a run for other certificates or
// for one node leaves it byte for byte.
func TestRenewMonitoringClient(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA, withMonitoring)
	runAll(t, Options{Cluster: c, Out: out})
	mon := filepath.Join(out, layout.MonitoringDir)
	crt, key := filepath.Join(mon, "etcd-monitoring-client.crt"), filepath.Join(mon, "etcd-monitoring-client.key")
	ca := etcdtest.ReadCert(t, filepath.Join(out, "pki/etcd/ca.crt"))
	monFiles := []string{"monitoring/etcd-monitoring-client.crt", "monitoring/etcd-monitoring-client.key"}

	// Not asked for, or a run for one host: left byte for byte.
	before := snapshot(t, out)
	renew(t, Options{Cluster: c, Out: out}, "etcd-server")
	_, nodeLog := renew(t, Options{Cluster: c, Out: out, Node: "etcd02"}, append(allLeaves, "etcd-monitoring-client")...)
	if !strings.Contains(nodeLog, "[renew] Not renewing etcd-monitoring-client in "+mon+" in a --node run") {
		t.Errorf("a --node run does not say it leaves the monitoring pair:\n%s", nodeLog)
	}
	after := snapshot(t, out)
	for _, f := range append(monFiles, "monitoring/prometheus.yml") {
		if !bytes.Equal(before[f], after[f]) {
			t.Errorf("%s changed by a renewal that did not ask for it", f)
		}
	}

	// Alone: only its pair changes, no archive is packed again.
	before = after
	old := etcdtest.ReadCert(t, crt)
	done, log := renew(t, Options{Cluster: c, Out: out}, "etcd-monitoring-client")
	after = snapshot(t, out)
	if got := changed(before, after); !slices.Equal(got, monFiles) {
		t.Errorf("renewing etcd-monitoring-client changed %v, want %v", got, monFiles)
	}
	if len(done) != 1 || done[0].Host != "monitoring" || done[0].Path != crt || done[0].Old == nil || !done[0].Old.Equal(old) {
		t.Fatalf("renewals %+v", done)
	}
	cert := etcdtest.ReadCert(t, crt)
	if !cert.Equal(done[0].New) || cert.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Errorf("%s: not the new certificate reported, or the old serial", crt)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil || !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) {
		t.Errorf("not signed by the CA: %v", err)
	}
	if want := renewLater.Add(365 * 24 * time.Hour).UTC().Truncate(time.Second); !cert.NotAfter.Equal(want) || !done[0].NotAfter.Equal(want) || !cert.NotAfter.After(old.NotAfter) {
		t.Errorf("NotAfter %s (reported %s), old %s, want %s", cert.NotAfter, done[0].NotAfter, old.NotAfter, want)
	}
	if cert.Subject.CommonName != "etcd-monitoring-client" || !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(cert.DNSNames)+len(cert.IPAddresses) != 0 {
		t.Errorf("subject %s, usages %v, SANs %v %v", cert.Subject, cert.ExtKeyUsage, cert.DNSNames, cert.IPAddresses)
	}
	checkCritical(t, cert)
	checkKeyFile(t, key, cert, "ECDSA-P256")
	checkMode(t, key, 0o600)
	checkMode(t, mon, 0o700)
	if !strings.Contains(log, "[renew] Renewed etcd-monitoring-client in "+mon) || strings.Contains(log, "[bundle]") {
		t.Errorf("log:\n%s", log)
	}

	// all: the hosts' and the monitoring pair, which goes into no archive.
	before = after
	done, _ = renew(t, Options{Cluster: c, Out: out}, append(allLeaves, "etcd-monitoring-client")...)
	after = snapshot(t, out)
	if len(done) != 13 || done[12].Name != "etcd-monitoring-client" {
		t.Fatalf("%d renewals, want 4 × 3 hosts and the monitoring pair", len(done))
	}
	for _, f := range monFiles {
		if bytes.Equal(before[f], after[f]) {
			t.Errorf("%s not renewed by all", f)
		}
	}
	for _, f := range []string{"monitoring/prometheus.yml", "monitoring/etcd-alerts.yml", "monitoring/ca.crt"} {
		if !bytes.Equal(before[f], after[f]) {
			t.Errorf("%s changed", f)
		}
	}
	// Each archive is its folder as written, and no folder holds the key.
	for _, name := range []string{"etcd01", "etcd02", "etcd03", "control-plane"} {
		checkArchive(t, filepath.Join(out, name+".tar.gz"), filepath.Join(out, name))
	}
	for f, data := range after {
		if !strings.HasPrefix(f, "monitoring/") && bytes.Contains(data, after["monitoring/etcd-monitoring-client.key"]) {
			t.Errorf("%s holds the monitoring key", f)
		}
	}

	// A dry run says so and writes nothing.
	before = after
	done, log = renew(t, Options{Cluster: c, Out: out, DryRun: true}, "etcd-monitoring-client")
	if got := changed(before, snapshot(t, out)); len(got) > 0 || len(done) != 1 || done[0].New != nil || !strings.Contains(log, "[dry-run] would renew etcd-monitoring-client in "+mon) {
		t.Errorf("dry run: changed %v, renewals %+v, log:\n%s", got, done, log)
	}
}

// TestRenewMonitoringRefuses: asked for alone with --node, or without
// OUT/monitoring, or with a monitoring ca.crt of another CA, the renewal is
// bad input and writes nothing; all without OUT/monitoring creates none.
func TestRenewMonitoringRefuses(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA, withMonitoring)
	runAll(t, Options{Cluster: c, Out: out})
	plain := t.TempDir()
	runAll(t, Options{Cluster: guideCluster(t, withECDSA), Out: plain})
	other, err := certs.NewAuthority("ECDSA-P256", 24*time.Hour, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	mon := certs.MonitoringClient()
	for _, tc := range []struct {
		name string
		opts Options
		prep func(t *testing.T)
		want string
	}{
		{"node", Options{Cluster: c, Out: out, Node: "etcd01"}, func(*testing.T) {}, `--node "etcd01": etcd-monitoring-client belongs to no host`},
		{"no folder", Options{Cluster: c, Out: plain}, func(*testing.T) {}, `no ` + filepath.Join(plain, "monitoring") + `; init --monitoring makes it`},
		{"another CA", Options{Cluster: c, Out: out}, func(t *testing.T) {
			path := filepath.Join(out, "monitoring/ca.crt")
			was, _ := os.ReadFile(path)
			if err := os.WriteFile(path, certs.EncodeCert(other.Cert), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.WriteFile(path, was, 0o644) })
		}, filepath.Join(out, "monitoring/ca.crt") + " is not the CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prep(t)
			before := snapshot(t, tc.opts.Out)
			r, err := NewRunner(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Renew([]certs.Profile{mon})
			if !badinput.Is(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want bad input with %q", err, tc.want)
			}
			if got := changed(before, snapshot(t, tc.opts.Out)); len(got) > 0 {
				t.Errorf("a refused renewal changed %v", got)
			}
		})
	}
	done, _ := renew(t, Options{Cluster: c, Out: plain}, append(allLeaves, mon.Name)...)
	if len(done) != 12 {
		t.Errorf("%d renewals without OUT/monitoring, want the hosts' 12", len(done))
	}
	if _, err := os.Stat(filepath.Join(plain, "monitoring")); !os.IsNotExist(err) {
		t.Errorf("renewing without OUT/monitoring made it (%v)", err)
	}
}

// TestRenewDue: with a limit, only the certificates that are missing or
// expire within it are renewed, the monitoring pair too; the others stay
// byte for byte, and so do the archives when nothing is due. Without a
// limit every one is renewed.
func TestRenewDue(t *testing.T) {
	out := t.TempDir()
	c := guideCluster(t, withECDSA, withMonitoring)
	runAll(t, Options{Cluster: c, Out: out})
	all := append(allLeaves, "etcd-monitoring-client")
	renewDue := func(t *testing.T, within time.Duration) ([]Renewal, string) {
		t.Helper()
		var log bytes.Buffer
		r, err := NewRunner(Options{Cluster: c, Out: out, Log: &log, Now: func() time.Time { return renewLater }})
		if err != nil {
			t.Fatal(err)
		}
		var ps []certs.Profile
		for _, n := range allLeaves {
			p, _ := certs.Leaf(n)
			ps = append(ps, p)
		}
		done, err := r.RenewDue(append(ps, certs.MonitoringClient()), within)
		if err != nil {
			t.Fatalf("renew within %s: %v\n%s", within, err, log.String())
		}
		return done, log.String()
	}

	// 300 days after init, every certificate has 65 days left.
	before := snapshot(t, out)
	done, log := renewDue(t, 30*24*time.Hour)
	if got := changed(before, snapshot(t, out)); len(done) != 0 || len(got) != 0 {
		t.Errorf("nothing due within 30d: renewed %d, changed %v", len(done), got)
	}
	for _, want := range []string{"[renew] Kept etcd-peer for etcd03: valid until ", ", not due within 30d", "[renew] Kept etcd-monitoring-client for monitoring"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// A missing certificate is due whatever the limit: only it, and its
	// host's archive and SHA256SUMS, change.
	base := filepath.Join(out, "etcd03/etc/kubernetes/pki/etcd/healthcheck-client")
	for _, ext := range []string{".crt", ".key"} {
		if err := os.Remove(base + ext); err != nil {
			t.Fatal(err)
		}
	}
	before = snapshot(t, out)
	done, _ = renewDue(t, 30*24*time.Hour)
	want := []string{"SHA256SUMS", "etcd03.tar.gz", "etcd03/etc/kubernetes/pki/etcd/healthcheck-client.crt", "etcd03/etc/kubernetes/pki/etcd/healthcheck-client.key"}
	if got := changed(before, snapshot(t, out)); len(done) != 1 || done[0].Old != nil || !slices.Equal(got, want) {
		t.Errorf("renewed %+v, changed %v, want %v", done, got, want)
	}

	// Within 90 days: the rest, the monitoring pair with them.
	before = snapshot(t, out)
	done, _ = renewDue(t, 90*24*time.Hour)
	after := snapshot(t, out)
	if len(done) != 12 {
		t.Errorf("%d renewed within 90d, want the 11 not just renewed and the monitoring pair", len(done))
	}
	for _, f := range []string{"monitoring/etcd-monitoring-client.crt", "etcd01/etc/kubernetes/pki/etcd/server.key", "etcd01.tar.gz"} {
		if bytes.Equal(before[f], after[f]) {
			t.Errorf("%s not renewed within 90d", f)
		}
	}
	if !bytes.Equal(before[base[len(out)+1:]+".crt"], after[base[len(out)+1:]+".crt"]) {
		t.Error("the certificate renewed a moment ago, valid a year, was renewed again")
	}

	// No limit: every one, due or not.
	done, _ = renew(t, Options{Cluster: c, Out: out}, all...)
	if len(done) != 13 {
		t.Errorf("%d renewed without a limit, want 13", len(done))
	}
}
