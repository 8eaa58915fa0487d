package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/testtool"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// unitCommands are a unit's ExecStartPre= and ExecStart= lines, split into
// words as systemd splits them (our values hold no quotes or spaces).
func unitCommands(t *testing.T, unit []byte) (pre, start [][]string) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "ExecStartPre="); ok {
			pre = append(pre, strings.Fields(v))
		}
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			start = append(start, strings.Fields(v))
		}
	}
	if len(start) != 1 {
		t.Fatalf("want one ExecStart= in\n%s", unit)
	}
	return pre, start
}

// TestBackupServiceSavesSnapshots unpacks, in a mount namespace of its
// own, the backup host's bundle over / (its /etc, /usr/local/bin and /var
// over this machine's), and there, in the host's network: checks both
// units with `systemd-analyze verify`, then runs the service's commands
// exactly as written, three times with --backup-keep 2. Each run leaves a
// verified snapshot with every key written before it; two are kept.
func TestBackupServiceSavesSnapshots(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	analyze := testtool.SystemdAnalyze(t)
	r := startCluster(t, 3, harness.IPv4, "--backup-host", "etcd01", "--backup-keep", "2", "--encryption-algorithm", "ECDSA-P256")
	host := r.bundle.Hosts[0].Name
	root := r.bundle.HostRoot(host)
	unit, err := os.ReadFile(filepath.Join(root, layout.SystemdUnitDir, layout.BackupServiceName))
	if err != nil {
		t.Fatal(err)
	}
	pre, start := unitCommands(t, unit)
	if want := []string{layout.CLI, "snapshot", "save", "--dir", "/var/backups/etcd", "--keep", "2"}; !slices.Equal(start[0], want) {
		t.Fatalf("ExecStart=%q, want %q", start[0], want)
	}

	ctx := stepContext(t, 5*time.Minute)
	cli := r.client(t, r.apiserver())
	scratch := t.TempDir()
	upper, work := filepath.Join(scratch, "var-upper"), filepath.Join(scratch, "var-work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The node's filesystem: the bundle's folders over this machine's,
	// read-only but for /var, whose writes land in upper.
	script := `set -e
mount -t overlay node-etc -o "lowerdir=$ROOT/etc:/etc" /etc
mount -t overlay node-bin -o "lowerdir=$ROOT/usr/local/bin:/usr/local/bin" /usr/local/bin
mount -t overlay node-var -o "lowerdir=$ROOT/var:/var,upperdir=$UPPER,workdir=$WORK" /var
"$ANALYZE" verify /etc/systemd/system/` + layout.BackupServiceName + ` /etc/systemd/system/` + layout.BackupTimerName + `
`
	for _, p := range pre {
		script += strings.Join(p, " ") + "\n"
	}
	script += `exec "$@"`
	var saved []string
	for run := range 3 {
		for i := range 10 {
			if _, err := cli.Put(ctx, fmt.Sprintf("/registry/backup/%d/%02d", run, i), strings.Repeat("v", 512)); err != nil {
				t.Fatalf("put: %v", err)
			}
		}
		args := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "node-" + host}, start[0]...)
		cmd := r.cluster.Member(host).Command(ctx, "unshare", args...)
		cmd.Env = append(os.Environ(), "ROOT="+root, "UPPER="+upper, "WORK="+work, "ANALYZE="+analyze)
		begin := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ExecStart %q on %s: %v\n%s", strings.Join(start[0], " "), host, err, out)
		}
		took := time.Since(begin)
		files, err := filepath.Glob(filepath.Join(upper, "backups", "etcd", "etcd-snapshot-*.db"))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(files)
		if len(files) == 0 {
			t.Fatalf("no snapshot in /var/backups/etcd after ExecStart:\n%s", out)
		}
		newest := files[len(files)-1]
		fi, err := os.Stat(newest)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", newest, fi.Mode().Perm())
		}
		// Checked again here, as a restore would check it.
		stat, err := exec.CommandContext(ctx, r.tools.CLI, "snapshot", "status", newest, "-o", "json").Output()
		if err != nil {
			t.Fatalf("snapshot status %s: %v", newest, err)
		}
		var st struct {
			Revision  int64 `json:"revision"`
			TotalKeys int   `json:"totalKeys"`
		}
		if err := json.Unmarshal(stat, &st); err != nil {
			t.Fatal(err)
		}
		if want := 10 * (run + 1); st.TotalKeys < want {
			t.Errorf("%s holds %d keys, want at least the %d written before it", newest, st.TotalKeys, want)
		}
		saved = append(saved, filepath.Base(newest))
		t.Logf("etcd-backup.service ExecStart %q on %s (units verified by systemd-analyze) took %s: %s, %d bytes, revision %d, %d keys, verified by snapshot status",
			strings.Join(start[0], " "), host, took.Round(time.Millisecond), filepath.Base(newest), fi.Size(), st.Revision, st.TotalKeys)
		// Names are to the second; the next run gets a later one.
		time.Sleep(time.Until(begin.Truncate(time.Second).Add(time.Second)))
	}
	files, _ := filepath.Glob(filepath.Join(upper, "backups", "etcd", "etcd-snapshot-*.db"))
	var kept []string
	for _, f := range files {
		kept = append(kept, filepath.Base(f))
	}
	slices.Sort(kept)
	if want := saved[1:]; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want the two newest %v", kept, want)
	}
	t.Logf("--backup-keep 2 after three runs: %s", strings.Join(kept, ", "))
}
