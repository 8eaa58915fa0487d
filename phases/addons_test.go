package phases

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// withAddons asks for monitoring and a backup on etcd02, with a small file
// standing for this command's binary.
func withAddons(t *testing.T) (*spec.Cluster, string) {
	t.Helper()
	c := guideCluster(t, func(c *spec.Cluster) {
		c.EncryptionAlgorithm = "ECDSA-P256"
		c.Monitoring = true
		c.Backup = &spec.Backup{Host: "etcd02"}
	})
	bin := filepath.Join(t.TempDir(), "etcd-staticpod")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return c, bin
}

// TestAddonsDryRun: the extras say what they would write and write nothing.
func TestAddonsDryRun(t *testing.T) {
	c, bin := withAddons(t)
	out := filepath.Join(t.TempDir(), "b")
	log := runAll(t, Options{Cluster: c, Out: out, DryRun: true, CLIBinary: bin})
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("dry run created the output folder")
	}
	for _, want := range []string{
		"monitoring/etcd-monitoring-client.key (0600", "monitoring/prometheus.yml (0644", "monitoring/etcd-alerts.yml (0644",
		"etcd02/etc/systemd/system/etcd-backup.service (0644", "etcd02/etc/systemd/system/etcd-backup.timer (0644",
		"etcd02/var/backups/etcd (0700", "etcd01/usr/local/bin/etcd-staticpod (0755", "etcd03/usr/local/bin/etcd-staticpod (0755",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("dry run log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "etcd01/etc/systemd/system/etcd-backup") {
		t.Error("dry run would give etcd01 the backup units")
	}
}

// TestAddonsNodeMode: on a node, the backup host gets its units and the
// command; OUT/monitoring is not written there.
func TestAddonsNodeMode(t *testing.T) {
	c, bin := withAddons(t)
	out := filepath.Join(t.TempDir(), "b")
	if log := runAll(t, Options{Cluster: c, Out: out, CLIBinary: bin}, "bundle"); !strings.Contains(log, "in the bundle of etcd01, etcd02, etcd03") {
		t.Errorf("the log does not say the command went into every bundle:\n%s", log)
	}
	root := t.TempDir()
	log := runAll(t, Options{Cluster: c, Out: out, Node: "etcd02", Root: root, CLIBinary: bin}, "bundle")
	if want := "at /usr/local/bin/etcd-staticpod on etcd02 under " + root; !strings.Contains(log, want) || strings.Contains(log, "in the bundle of") {
		t.Errorf("the node's log does not say %q:\n%s", want, log)
	}
	for _, p := range []string{"etc/systemd/system/etcd-backup.service", "etc/systemd/system/etcd-backup.timer", "usr/local/bin/etcd-staticpod"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("node etcd02: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "monitoring")); !os.IsNotExist(err) {
		t.Errorf("node mode wrote a monitoring folder (%v)", err)
	}
	fi, err := os.Stat(filepath.Join(root, "var/backups/etcd"))
	if err != nil || fi.Mode() != os.ModeDir|0o700 {
		t.Errorf("node etcd02: the snapshot folder: %v", err)
	}
}
