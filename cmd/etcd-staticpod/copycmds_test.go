package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// TestPrintedCopyCommands runs the exact copy lines init prints, for an
// IPv6, an IPv4-mapped and an IPv4 host, through sh, with scp and ssh
// parsing them for real: scp with a stand-in for ssh (-S) that records
// whom it would reach, ssh with -G, which prints the configuration it would
// use. Nothing connects anywhere. The line that starts the scheduled
// backups on the (IPv6) backup host goes through ssh the same way.
func TestPrintedCopyCommands(t *testing.T) {
	for _, tool := range []string{"sh", "scp", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	bin := binary(t)
	out := filepath.Join(t.TempDir(), "my bundles")
	hosts := map[string]string{"etcd01": "2001:db8::11", "etcd02": "::ffff:10.107.88.12", "etcd03": "10.107.88.13"}
	stdout, stderr, code := etcdtest.Exec(t, bin, "init", "--out", out, "--encryption-algorithm", "ECDSA-P256", "--backup-host", "etcd01",
		"--hosts", "etcd01="+hosts["etcd01"]+",etcd02="+hosts["etcd02"]+",etcd03="+hosts["etcd03"])
	if code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, stdout, stderr)
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	fake := filepath.Join(dir, "fake-ssh")
	// scp starts it as: ... -l USER ... -- HOST sftp
	if err := os.WriteFile(fake, []byte(`#!/bin/sh
user=; while [ $# -gt 0 ]; do case $1 in -l) user=$2; shift;; --) echo "scp $user@$2" >> "$RECORD"; exit 1;; esac; shift; done
exit 1
`), 0o755); err != nil {
		t.Fatal(err)
	}
	prelude := `scp() { command scp -S "$FAKE" "$@" 2>/dev/null; return 0; }
ssh() { command ssh -F /dev/null -G "$1" | awk '$1 == "user" {u = $2} $1 == "hostname" {h = $2} END {print "ssh " u "@" h}' >> "$RECORD"; }
`
	ran := 0
	for _, line := range strings.Split(stdout, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "scp ") || strings.Contains(line, "CONTROL-PLANE") {
			continue
		}
		_ = os.Remove(record)
		cmd := exec.Command("sh", "-c", prelude+line)
		cmd.Env = append(os.Environ(), "FAKE="+fake, "RECORD="+record)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, b)
		}
		got, _ := os.ReadFile(record)
		var name string
		for n := range hosts {
			if strings.Contains(line, "/tmp/"+n+".tar.gz") {
				name = n
			}
		}
		want := "scp root@" + hosts[name] + "\nssh root@" + hosts[name] + "\n"
		if name == "" || string(got) != want {
			t.Errorf("%s\nreached %q, want %q", line, got, want)
		}
		ran++
	}
	if ran != len(hosts) {
		t.Errorf("ran %d copy lines, want %d:\n%s", ran, len(hosts), stdout)
	}
	started := false
	for _, line := range strings.Split(stdout, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "ssh ") || !strings.Contains(line, "systemctl enable --now") {
			continue
		}
		_ = os.Remove(record)
		cmd := exec.Command("sh", "-c", prelude+line)
		cmd.Env = append(os.Environ(), "FAKE="+fake, "RECORD="+record)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, b)
		}
		if got, _ := os.ReadFile(record); string(got) != "ssh root@"+hosts["etcd01"]+"\n" {
			t.Errorf("%s\nreached %q, want root@%s", line, got, hosts["etcd01"])
		}
		started = true
	}
	if !started {
		t.Errorf("no line starts the scheduled backups:\n%s", stdout)
	}
}
