// Package backupunit writes the systemd service and timer that save a
// snapshot of the cluster on one of its hosts on a schedule, with this
// command as installed by the bundles.
package backupunit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Command is the service's ExecStart as a list of words. Run on an etcd
// host with no cluster flags, `snapshot save` finds the cluster as every
// day-2 command does there: the healthcheck-client certificate and the
// members from /etc/kubernetes and the etcd static Pod manifest.
func Command(b spec.Backup) []string {
	return []string{layout.CLI, "snapshot", "save", "--dir", b.Dir, "--keep", strconv.Itoa(b.Keep)}
}

// Service is etcd-backup.service. Its folder is made by the bundle and
// again before each run, in case it was removed since; UMask keeps the
// snapshot, which holds every Secret, to root.
func Service(b spec.Backup) []byte {
	return []byte(fmt.Sprintf(`# Written by etcd-staticpod init --backup-host: saves a verified snapshot of
# the etcd cluster into %[1]s, keeping the newest %[2]d. Started by
# %[3]s; run it now with: systemctl start %[4]s
[Unit]
Description=Save a snapshot of the etcd cluster into %[1]s
Wants=network-online.target
After=network-online.target kubelet.service

[Service]
Type=oneshot
UMask=0077
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
ExecStartPre=/bin/mkdir -p -m 0700 %[1]s
ExecStart=%[5]s
`, b.Dir, b.Keep, layout.BackupTimerName, layout.BackupServiceName, strings.Join(Command(b), " ")))
}

// Timer is etcd-backup.timer. Persistent catches up on a run missed while
// the host was off.
func Timer(b spec.Backup) []byte {
	return []byte(fmt.Sprintf(`# Written by etcd-staticpod init --backup-host: starts %[1]s on
# the schedule %[2]q. Enable it once with: systemctl enable --now %[3]s
[Unit]
Description=Save a snapshot of the etcd cluster on schedule (%[2]s)

[Timer]
OnCalendar=%[2]s
Persistent=true

[Install]
WantedBy=timers.target
`, layout.BackupServiceName, b.Schedule, layout.BackupTimerName))
}
