package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/expiry"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/testtool"
)

// TestInitMonitoring: without --monitoring there is no monitoring folder
// and no extra certificate; with it, OUT/monitoring holds a configuration
// promtool accepts, a client certificate of the etcd CA whose key is
// nowhere else, and a later run without the flag keeps it as it is.
func TestInitMonitoring(t *testing.T) {
	out := initBundle(t)
	if _, err := os.Stat(filepath.Join(out, layout.MonitoringDir)); !os.IsNotExist(err) {
		t.Fatalf("init without --monitoring made %s (%v)", layout.MonitoringDir, err)
	}
	for path := range etcdtest.Tree(t, out) {
		if strings.Contains(path, "monitoring") {
			t.Errorf("init without --monitoring wrote %s", path)
		}
	}

	stdout, stderr, code := runCLI(t, "init", "--out", out, "--monitoring")
	if code != 0 {
		t.Fatalf("init --monitoring exited %d\n%s%s", code, stdout, stderr)
	}
	dir := filepath.Join(out, layout.MonitoringDir)
	certFile, keyFile := layout.MonitoringClient.Cert(""), layout.MonitoringClient.Key("")
	wantModes := map[string]os.FileMode{
		".": os.ModeDir | 0o700, layout.MonitoringCA: 0o644, certFile: 0o644, keyFile: 0o600,
		layout.MonitoringConfig: 0o644, layout.MonitoringRules: 0o644,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(wantModes)-1 {
		t.Errorf("%s holds %d files, want %d", dir, len(entries), len(wantModes)-1)
	}
	for name, mode := range wantModes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
		}
	}

	caPEM, _ := os.ReadFile(filepath.Join(out, "pki/etcd/ca.crt"))
	ca, err := certs.ParseCert(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, layout.MonitoringCA)); !bytes.Equal(got, caPEM) {
		t.Error("monitoring/ca.crt is not the etcd CA")
	}
	crtPEM, _ := os.ReadFile(filepath.Join(dir, certFile))
	keyPEM, _ := os.ReadFile(filepath.Join(dir, keyFile))
	crt, err := certs.ParseCert(crtPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := crt.CheckSignatureFrom(ca); err != nil {
		t.Errorf("client certificate not signed by the etcd CA: %v", err)
	}
	if err := certs.KeyMatches(crt, key); err != nil {
		t.Errorf("client key does not match: %v", err)
	}
	if crt.Subject.CommonName != "etcd-monitoring-client" || !slices.Equal(crt.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) ||
		len(crt.DNSNames)+len(crt.IPAddresses) != 0 {
		t.Errorf("client certificate: CN %q, usages %v, SANs %v %v", crt.Subject.CommonName, crt.ExtKeyUsage, crt.DNSNames, crt.IPAddresses)
	}

	// The key's body is nowhere but OUT/monitoring: not in a host folder,
	// not in an archive.
	body := keyBody(t, keyPEM)
	for path := range etcdtest.Tree(t, out) {
		full := filepath.Join(out, path)
		if fi, err := os.Stat(full); err != nil || fi.IsDir() || strings.HasPrefix(path, layout.MonitoringDir+"/") {
			continue
		}
		data, _ := os.ReadFile(full)
		files := [][]byte{data}
		if strings.HasSuffix(path, ".tar.gz") {
			files = archiveFiles(t, full)
		}
		for _, f := range files {
			if bytes.Contains(f, keyPEM) || bytes.Contains(f, body) {
				t.Errorf("%s holds the monitoring client key", path)
			}
		}
	}

	if data, _ := os.ReadFile(filepath.Join(out, layout.SpecFile)); !strings.Contains(string(data), "\nmonitoring: true\n") {
		t.Errorf("%s does not record monitoring:\n%s", layout.SpecFile, data)
	}
	if b, err := exec.Command(testtool.Promtool(t), "check", "config", filepath.Join(dir, layout.MonitoringConfig)).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, b)
	}
	if b, err := exec.Command(testtool.Promtool(t), "check", "rules", filepath.Join(dir, layout.MonitoringRules)).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, b)
	}

	// A later run with the same --out keeps monitoring from cluster.yaml,
	// and its certificate byte for byte.
	before := treeHash(t, dir)
	if stdout, stderr, code := runCLI(t, "init", "--out", out); code != 0 {
		t.Fatalf("re-run exited %d\n%s%s", code, stdout, stderr)
	}
	if treeHash(t, dir) != before {
		t.Error("a re-run changed OUT/monitoring")
	}

	// A certificate that no longer matches is refused, with the way out.
	writeForeignMonitoringPair(t, filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	before = treeHash(t, out)
	_, stderr, code = runCLI(t, "init", "--out", out)
	if code == 0 || !strings.Contains(stderr, "not signed by the CA") || !strings.Contains(stderr, "`etcd-staticpod certs renew etcd-monitoring-client` makes a new one") {
		t.Errorf("foreign monitoring certificate: exit %d, %s", code, stderr)
	}
	if treeHash(t, out) != before {
		t.Error("a refused run changed the bundles")
	}
	// The way out it names works.
	if stdout, stderr, code := runCLI(t, "certs", "renew", "etcd-monitoring-client", "--out", out); code != 0 {
		t.Fatalf("certs renew etcd-monitoring-client: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := runCLI(t, "init", "--out", out); code != 0 {
		t.Errorf("init after renewing the monitoring certificate: exit %d\n%s%s", code, stdout, stderr)
	}
}

// keyBody is the base64 body of a PEM key, which would give it away even
// re-wrapped.
func keyBody(t *testing.T, keyPEM []byte) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	if len(lines) < 3 {
		t.Fatalf("short key PEM")
	}
	return []byte(strings.Join(lines[1:len(lines)-1], ""))
}

// TestCheckExpirationPrometheus: -o prometheus is node-exporter's textfile
// format, which promtool accepts: HELP, TYPE, one sample per certificate
// with its NotAfter, no timestamps; the monitoring certificate is listed.
func TestCheckExpirationPrometheus(t *testing.T) {
	out := initBundle(t)
	if _, stderr, code := runCLI(t, "init", "--out", out, "--monitoring"); code != 0 {
		t.Fatalf("init --monitoring: %s", stderr)
	}
	reissue(t, out, "etcd02", "etcd-peer", time.Now().Add(10*24*time.Hour).Truncate(time.Second))
	stdout, stderr, code := runCLI(t, "certs", "check-expiration", "--out", out, "-o", "prometheus")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cmd := exec.Command(testtool.Promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(stdout)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, b, stdout)
	}
	jsonOut, _, _ := runCLI(t, "certs", "check-expiration", "--out", out, "-o", "json")
	doc := expirationJSON(t, jsonOut)
	rows := append(doc.Certificates, doc.CertificateAuthorities...)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if !strings.HasPrefix(lines[0], "# HELP etcd_staticpod_certificate_expiry_timestamp_seconds ") ||
		lines[1] != "# TYPE etcd_staticpod_certificate_expiry_timestamp_seconds gauge" {
		t.Fatalf("no HELP and TYPE:\n%s", stdout)
	}
	samples := lines[2:]
	if len(samples) != len(rows) {
		t.Errorf("%d samples for %d certificates:\n%s", len(samples), len(rows), stdout)
	}
	for _, r := range rows {
		notAfter, err := time.Parse(time.RFC3339, r.NotAfter)
		if err != nil {
			t.Fatal(err)
		}
		want := `etcd_staticpod_certificate_expiry_timestamp_seconds{host="` + r.Host + `",name="` + r.Name + `",path="` + r.Path + `"} ` + strconv.FormatInt(notAfter.Unix(), 10)
		if !slices.Contains(samples, want) {
			t.Errorf("no sample %q", want)
		}
	}
	if _, ok := findRow(doc.Certificates, expiry.MonitoringHost, "etcd-monitoring-client"); !ok {
		t.Error("check-expiration does not list the monitoring client certificate")
	}
	if !strings.Contains(stdout, `{host="etcd02",name="etcd-peer",`) {
		t.Errorf("no sample for etcd02's peer certificate:\n%s", stdout)
	}
}

// TestInitBackupRejectsBadInput: each bad backup flag is one line naming
// the flag and the value, exit 2, and nothing written.
func TestInitBackupRejectsBadInput(t *testing.T) {
	existing := initBundle(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backup-host", "etcd09"}, `--backup-host "etcd09": no such host (hosts: etcd01, etcd02, etcd03)`},
		{[]string{"--backup-host", ""}, `--backup-host "": must name a host`},
		{[]string{"--backup-host", "etcd01", "--backup-schedule", "dayly"}, `--backup-schedule "dayly": not a systemd OnCalendar= expression`},
		{[]string{"--backup-host", "etcd01", "--backup-schedule", "25:00"}, `--backup-schedule "25:00": not a systemd OnCalendar= expression`},
		{[]string{"--backup-host", "etcd01", "--backup-keep", "0"}, `--backup-keep "0": must be at least 1`},
		{[]string{"--backup-host", "etcd01", "--backup-keep", "seven"}, `--backup-keep "seven": not a whole number`},
		{[]string{"--backup-host", "etcd01", "--backup-dir", "backups"}, `--backup-dir "backups": must be an absolute, clean path`},
		{[]string{"--backup-host", "etcd01", "--backup-dir", "/var/lib/etcd/backups"}, `--backup-dir "/var/lib/etcd/backups": must be outside the etcd data folder /var/lib/etcd`},
		{[]string{"--backup-keep", "3"}, `--backup-keep "3": needs --backup-host NAME`},
	} {
		before := treeHash(t, existing)
		fresh := filepath.Join(t.TempDir(), "bundles")
		for _, args := range [][]string{
			append([]string{"init", "--out", existing}, tc.args...),
			append([]string{"init", "--out", fresh, "--hosts", threeHosts}, tc.args...),
		} {
			stdout, stderr, code := runCLI(t, args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Errorf("%q: exit %d, stderr %q, want exit 2 and one line with %q\n%s", args, code, stderr, tc.want, stdout)
			}
		}
		if treeHash(t, existing) != before {
			t.Errorf("%q changed the bundles", tc.args)
		}
		if treeHash(t, fresh) != "absent" {
			t.Errorf("%q created the output folder", tc.args)
		}
	}
}

// TestInitBackupUnits runs the built binary: the backup host's bundle and
// archive get the units, every bundle this very binary at
// /usr/local/bin/etcd-staticpod (0755), and cluster.yaml the settings.
func TestInitBackupUnits(t *testing.T) {
	bin := binary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	stdout, stderr, code := etcdtest.Exec(t, bin, "init", "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256", "--out", out,
		"--backup-host", "etcd02", "--backup-schedule", "Mon..Fri 02:30", "--backup-keep", "3", "--backup-dir", "/srv/etcd-snapshots")
	if code != 0 {
		t.Fatalf("init exited %d\n%s%s", code, stdout, stderr)
	}
	self := fileSum(t, bin)
	for _, h := range []string{"etcd01", "etcd02", "etcd03"} {
		cli := filepath.Join(out, h, "usr/local/bin/etcd-staticpod")
		if fi, err := os.Stat(cli); err != nil || fi.Mode() != 0o755 || fileSum(t, cli) != self {
			t.Errorf("%s: not this binary with mode 0755 (%v)", cli, err)
		}
		// The archives are read with tar(1): the race detector makes Go's
		// gzip too slow for 40 MB binaries.
		archivePath := filepath.Join(out, h+".tar.gz")
		list, err := exec.Command("tar", "-tvzf", archivePath).Output()
		if err != nil {
			t.Fatalf("tar -tvzf %s: %v", archivePath, err)
		}
		modes := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(list)), "\n") {
			f := strings.Fields(l)
			modes[strings.TrimSuffix(f[len(f)-1], "/")] = f[0]
		}
		if modes["usr/local/bin/etcd-staticpod"] != "-rwxr-xr-x" {
			t.Errorf("%s.tar.gz: usr/local/bin/etcd-staticpod is %q", h, modes["usr/local/bin/etcd-staticpod"])
		}
		// Hashed as it streams: a 40 MB buffer would swell this test
		// process, whose size the children it starts later inherit.
		packed := sha256.New()
		tarCmd := exec.Command("tar", "-xzOf", archivePath, "usr/local/bin/etcd-staticpod")
		tarCmd.Stdout = packed
		if err := tarCmd.Run(); err != nil || fmt.Sprintf("%x", packed.Sum(nil)) != self {
			t.Errorf("%s.tar.gz: usr/local/bin/etcd-staticpod is not this binary (%v)", h, err)
		}
		_, hasService := modes["etc/systemd/system/etcd-backup.service"]
		_, hasTimer := modes["etc/systemd/system/etcd-backup.timer"]
		if hasService != (h == "etcd02") || hasTimer != (h == "etcd02") {
			t.Errorf("%s.tar.gz: service %v, timer %v", h, hasService, hasTimer)
		}
		if h != "etcd02" {
			continue
		}
		service, _ := exec.Command("tar", "-xzOf", archivePath, "etc/systemd/system/etcd-backup.service").Output()
		if !strings.Contains(string(service), "\nExecStart=/usr/local/bin/etcd-staticpod snapshot save --dir /srv/etcd-snapshots --keep 3\n") {
			t.Errorf("service:\n%s", service)
		}
		timer, _ := exec.Command("tar", "-xzOf", archivePath, "etc/systemd/system/etcd-backup.timer").Output()
		if !strings.Contains(string(timer), "\nOnCalendar=Mon..Fri 02:30\n") {
			t.Errorf("timer:\n%s", timer)
		}
		if modes["srv/etcd-snapshots"] != "drwx------" {
			t.Errorf("the snapshot folder is not in the archive with mode 0700: %q", modes["srv/etcd-snapshots"])
		}
	}
	data, _ := os.ReadFile(filepath.Join(out, layout.SpecFile))
	if !strings.Contains(string(data), "\nbackup:\n  host: etcd02\n  schedule: Mon..Fri 02:30\n  keep: 3\n  dir: /srv/etcd-snapshots\n") {
		t.Errorf("%s does not record the backup:\n%s", layout.SpecFile, data)
	}
	if !strings.Contains(stdout, "systemctl enable --now etcd-backup.timer") {
		t.Errorf("init does not say how to enable the timer:\n%s", stdout)
	}
}

// fileSum is a file's SHA-256, in hex.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
