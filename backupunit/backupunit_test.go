package backupunit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/testtool"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// verify runs `systemd-analyze verify` on the two units as they land on a
// host, in a mount namespace of its own whose /usr/local/bin holds
// etcd-staticpod, since verify checks that ExecStart's program exists.
func verify(t *testing.T, service, timer []byte) (string, error) {
	t.Helper()
	analyze := testtool.SystemdAnalyze(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for a mount namespace")
		}
		t.Skip("needs root for a mount namespace")
	}
	dir := filepath.Join(t.TempDir(), "etc", "systemd", "system")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{layout.BackupServiceName: service, layout.BackupTimerName: timer} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Any executable stands for the command: verify only checks that
	// ExecStart's program is there and executable.
	script := `set -e
mount -t tmpfs -o mode=0755 backupunit-test /usr/local/bin
ln -s "$1" /usr/local/bin/etcd-staticpod
exec "$2" verify "$3" "$4"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		self, analyze, filepath.Join(dir, layout.BackupServiceName), filepath.Join(dir, layout.BackupTimerName))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestUnitsVerify(t *testing.T) {
	for _, b := range []spec.Backup{
		{Host: "etcd01", Schedule: "daily", Keep: 7, Dir: "/var/backups/etcd"},
		{Host: "etcd02", Schedule: "Mon..Fri *-*-* 02:30:00 UTC", Keep: 1, Dir: "/srv/etcd-snapshots"},
	} {
		out, err := verify(t, Service(b), Timer(b))
		if err != nil {
			t.Errorf("systemd-analyze verify %+v: %v\n%s", b, err, out)
		}
		if strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %+v warns:\n%s", b, out)
		}
	}
}

// TestVerifyRefusesBadUnits shows that the check above can fail: systemd
// refuses a schedule our validation would have stopped.
func TestVerifyRefusesBadUnits(t *testing.T) {
	b := spec.Backup{Host: "etcd01", Schedule: "dayly", Keep: 7, Dir: "/var/backups/etcd"}
	out, err := verify(t, Service(b), Timer(b))
	if err == nil {
		t.Fatalf("systemd-analyze verify took OnCalendar=dayly:\n%s", out)
	}
	if !strings.Contains(out, "dayly") {
		t.Errorf("systemd-analyze verify did not name the schedule:\n%s", out)
	}
}

func TestServiceRunsSnapshotSave(t *testing.T) {
	b := spec.Backup{Host: "etcd01", Schedule: "hourly", Keep: 3, Dir: "/var/backups/etcd"}
	want := "ExecStart=/usr/local/bin/etcd-staticpod snapshot save --dir /var/backups/etcd --keep 3\n"
	if s := string(Service(b)); !strings.Contains(s, want) {
		t.Errorf("service has no %q:\n%s", want, s)
	}
	if s := string(Timer(b)); !strings.Contains(s, "\nOnCalendar=hourly\n") {
		t.Errorf("timer has no OnCalendar=hourly:\n%s", s)
	}
}
