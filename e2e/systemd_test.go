package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/expiry"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
)

// systemdRun is a cluster of systemd hosts made with init --runtime systemd.
type systemdRun struct {
	tools  harness.Tools
	lab    *harness.Lab
	bundle harness.Bundle
	hosts  map[string]*harness.SystemdHost
	// members are the hosts in the cluster, in the order they joined.
	members []harness.Host
	// remote runs the printed ssh and scp lines on the hosts.
	remote *harness.Remote
	// spare is a booted host without etcd, for member add. It is booted
	// by the test itself, as a host booted in a step would go when the
	// step ends.
	spare harness.Host
}

// copyLine is the line of printed that copies host name's archive to it
// and starts it there: scp ARCHIVE root@ADDRESS:/tmp/ && ssh root@ADDRESS '...'.
func copyLine(t *testing.T, printed, name string) string {
	t.Helper()
	for _, line := range strings.Split(printed, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "scp ") && strings.Contains(line, "/"+name+".tar.gz ") && strings.Contains(line, " && ssh ") {
			return line
		}
	}
	t.Fatalf("no copy command for %s in:\n%s", name, printed)
	return ""
}

// run runs a printed command line (scp and ssh to the hosts), as the user
// would paste it, and logs it.
func (r *systemdRun) run(t *testing.T, line string) {
	t.Helper()
	if out, err := r.remote.Run(stepContext(t, 3*time.Minute), line); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("ran: %s", line)
}

// install does on a host what init prints for it: copy its archive,
// unpack it at / and start etcd.service without waiting for quorum.
func (r *systemdRun) install(t *testing.T, name string) {
	t.Helper()
	r.run(t, copyLine(t, r.bundle.Printed, name))
}

// cli runs etcd-staticpod from the hub and returns its stdout; what it
// says on stderr is logged; a non-zero exit fails the test.
func (r *systemdRun) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := r.lab.Command(stepContext(t, 5*time.Minute), r.tools.CLI, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("etcd-staticpod %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("etcd-staticpod %s said on stderr: %s", strings.Join(args, " "), strings.TrimSpace(stderr.String()))
	}
	return string(out)
}

// waitHealthy runs health against the bundle until n members answer,
// every one healthy, and returns the table of the last run.
func (r *systemdRun) waitHealthy(t *testing.T, bundleHost string, n int) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := r.lab.Command(stepContext(t, time.Minute), r.tools.CLI, "health", "--bundle", r.bundle.HostRoot(bundleHost), "--timeout", "3s", "-o", "json").CombinedOutput()
		var rows []endpointHealth
		if err == nil && json.Unmarshal(out, &rows) == nil && len(rows) == n {
			return r.cli(t, "health", "--bundle", r.bundle.HostRoot(bundleHost), "--timeout", "3s")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not become healthy with %d members: %v\n%s", n, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// unitSays is what etcd.service asks of the process it starts.
type unitSays struct {
	execStart  string
	env        []string
	umask      string
	workingDir string
	// credentials maps a LoadCredential= name to the file it loads.
	credentials map[string]string
}

// parseUnit reads the [Service] settings the test checks from a unit
// file; Environment= values are single quoted-or-bare words, as the unit
// writes them.
func parseUnit(t *testing.T, text string) unitSays {
	t.Helper()
	u := unitSays{credentials: map[string]string{}}
	for _, line := range strings.Split(text, "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch key {
		case "ExecStart":
			u.execStart = value
		case "Environment":
			if uq, err := strconv.Unquote(strings.ReplaceAll(value, "%%", "%")); err == nil {
				value = uq
			}
			u.env = append(u.env, value)
		case "UMask":
			u.umask = value
		case "WorkingDirectory":
			u.workingDir = value
		case "LoadCredential":
			name, file, _ := strings.Cut(value, ":")
			u.credentials[name] = file
		}
	}
	if u.execStart == "" || len(u.credentials) == 0 {
		t.Fatalf("no ExecStart= or LoadCredential= in the unit:\n%s", text)
	}
	return u
}

// checkRunsAsUnitSays checks, from outside, the process systemd started
// against the unit file on the host: its ExecStart= verbatim, its
// Environment= and UMask=, a non-root dynamic user without capabilities,
// the state folder as working directory, and in the credentials folder a
// copy of each LoadCredential= file that only that user reads.
func (r *systemdRun) checkRunsAsUnitSays(t *testing.T, name string) {
	t.Helper()
	ctx := stepContext(t, time.Minute)
	h := r.hosts[name]
	text, err := h.Exec(ctx, "cat", layout.EtcdUnit)
	if err != nil {
		t.Fatalf("%s: %s: %v", name, layout.EtcdUnit, err)
	}
	unit := parseUnit(t, string(text))
	pid, err := h.MainPID(ctx, layout.EtcdUnitName)
	if err != nil || pid == 0 {
		t.Fatalf("%s: no main process of etcd.service (%v)", name, err)
	}
	proc := func(file string) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return string(b)
	}
	if got := strings.Join(strings.Split(strings.TrimRight(proc("cmdline"), "\x00"), "\x00"), " "); got != unit.execStart {
		t.Errorf("%s: etcd runs %q, the unit's ExecStart= says %q", name, got, unit.execStart)
	}
	environ := strings.Split(proc("environ"), "\x00")
	for _, kv := range unit.env {
		if !slices.Contains(environ, kv) {
			t.Errorf("%s: etcd's environment lacks %q of the unit", name, kv)
		}
	}
	var uid int
	for _, line := range strings.Split(proc("status"), "\n") {
		key, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch key {
		case "Uid":
			uid, _ = strconv.Atoi(strings.Fields(value)[0])
		case "CapEff":
			if value != "0000000000000000" {
				t.Errorf("%s: etcd has capabilities %s", name, value)
			}
		case "Umask":
			if value != unit.umask {
				t.Errorf("%s: etcd's umask %s, the unit's UMask= says %s", name, value, unit.umask)
			}
		}
	}
	if uid == 0 {
		t.Errorf("%s: etcd runs as root", name)
	}
	// DynamicUser= puts the state folder in /var/lib/private and links it.
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || !strings.HasSuffix(cwd, layout.DynamicStateDir(unit.workingDir)) {
		t.Errorf("%s: etcd's working directory %q (%v), want the state folder %s", name, cwd, err, layout.DynamicStateDir(unit.workingDir))
	}
	var creds []string
	for cred, file := range unit.credentials {
		p := fmt.Sprintf("/proc/%d/root%s/%s", pid, layout.EtcdCredentialsDir, cred)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: credential %s: %v", name, cred, err)
			continue
		}
		want, err := h.Exec(ctx, "cat", file)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: credential %s is not the host's %s (%v)", name, cred, file, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm()&0o077 != 0 || (int(st.Uid) != uid && st.Uid != 0) {
			t.Errorf("%s: credential %s has mode %v and owner %d; want it readable by etcd's uid %d alone", name, cred, fi.Mode().Perm(), st.Uid, uid)
		}
		creds = append(creds, fmt.Sprintf("%s (%v, owner %d)", cred, fi.Mode().Perm(), st.Uid))
	}
	slices.Sort(creds)
	out, _ := h.Exec(ctx, "systemctl", "show", "-p", "ActiveState,SubState,Type,NRestarts", layout.EtcdUnitName)
	if !strings.Contains(string(out), "NRestarts=0") {
		// Why systemd had to start it again.
		var why []string
		for _, l := range strings.Split(h.Journal(layout.EtcdUnitName, 400), "\n") {
			if strings.Contains(l, `"level":"fatal"`) || strings.Contains(l, `"level":"panic"`) || strings.Contains(l, "Main process exited") || strings.Contains(l, "Scheduled restart") || strings.Contains(l, "Failed with result") {
				why = append(why, l)
			}
		}
		t.Logf("%s: etcd.service was restarted by systemd:\n%s", name, strings.Join(why, "\n"))
	}
	t.Logf("%s: etcd (pid %d here) runs %q as uid %d, umask %s, in %s, credentials %s; %s", name, pid, unit.execStart, uid, unit.umask,
		layout.DynamicStateDir(unit.workingDir), strings.Join(creds, ", "), strings.Join(strings.Fields(string(out)), " "))
}

// shell runs a command line on a host, as ssh would, and logs it.
func (r *systemdRun) shell(t *testing.T, name, line string) string {
	t.Helper()
	out, err := r.hosts[name].Shell(stepContext(t, 3*time.Minute), line)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s%s", name, line, err, out, r.hosts[name].Journal(layout.EtcdUnitName, 20))
	}
	t.Logf("%s: %s", name, line)
	return string(out)
}

// endpoints are the members' client URLs.
func (r *systemdRun) endpoints() []string {
	var out []string
	for _, h := range r.members {
		out = append(out, clientURL(h))
	}
	return out
}

func clientURL(h harness.Host) string { return "https://" + net.JoinHostPort(h.Address, "2379") }
func peerURL(h harness.Host) string   { return "https://" + net.JoinHostPort(h.Address, "2380") }

// client connects with kube-apiserver's certificate to every member and
// closes the client when the test ends.
func (r *systemdRun) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := r.lab.Client(r.bundle.APIServerClient(r.members[0].Name), r.endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// served is the serial of the certificate an endpoint presents.
func (r *systemdRun) served(t *testing.T, url string) string {
	t.Helper()
	cert, err := r.lab.ServerCertificate(stepContext(t, 10*time.Second), url, r.bundle.HealthcheckClient(r.members[0].Name))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return expiry.Serial(cert.SerialNumber)
}

// renew renews every certificate of every member with `certs renew all
// --node NAME`, one host at a time as renew prints it: the host's new
// archive unpacked at / and its etcd restarted (systemctl restart
// etcd.service), the cluster healthy before the next, while a writer
// writes through kube-apiserver's certificate.
func (r *systemdRun) renew(t *testing.T) {
	ctx := stepContext(t, 5*time.Minute)
	cli := r.client(t)
	w := harness.StartWriter(ctx, cli, "/e2e/systemd-renew")
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	want := map[string][2]string{}
	for _, h := range r.members {
		oldServer, oldPeer := r.served(t, clientURL(h)), r.served(t, peerURL(h))
		oldPID, _ := r.hosts[h.Name].MainPID(ctx, layout.EtcdUnitName)
		rows := renewNode(ctx, t, r.tools.CLI, r.bundle.Dir, h.Name)
		var newServer, newPeer string
		for _, row := range rows {
			switch row.Name {
			case "etcd-server":
				newServer = row.NewSerial
			case "etcd-peer":
				newPeer = row.NewSerial
			}
		}
		want[h.Name] = [2]string{newServer, newPeer}
		// What renew prints, for this host: copy the archive, unpack it at
		// / and restart its etcd.
		begin := time.Now()
		r.run(t, shellcmd.Join("scp", filepath.Join(r.bundle.Dir, h.Name+".tar.gz"), shellcmd.SCPTarget("root", h.Address, "/tmp/"))+" && "+
			shellcmd.Join("ssh", shellcmd.SSHTarget("root", h.Address), "tar --no-overwrite-dir -C / -xzf /tmp/"+h.Name+".tar.gz && rm /tmp/"+h.Name+".tar.gz && systemctl restart "+layout.EtcdUnitName))
		r.waitHealthy(t, r.members[0].Name, len(r.members))
		newPID, _ := r.hosts[h.Name].MainPID(ctx, layout.EtcdUnitName)
		if newPID == oldPID {
			t.Fatalf("%s: etcd.service still runs pid %d after the restart", h.Name, oldPID)
		}
		t.Logf("%s: certs renew all --node %s: server %s -> %s, peer %s -> %s; etcd.service restarted (pid %d -> %d here), cluster healthy again in %s",
			h.Name, h.Name, oldServer, newServer, oldPeer, newPeer, oldPID, newPID, time.Since(begin).Round(time.Millisecond))
	}
	rep := w.Stop()
	stopped = true
	t.Logf("writer during the rolling renewal: %s", rep)
	if rep.Acked == 0 || len(rep.Stale) > 0 || rep.LongestOutage >= maxRenewOutage {
		t.Errorf("writer: %s; want no stale read and no outage of %s or more", rep, maxRenewOutage)
	}
	if err := w.Verify(ctx, cli); err != nil {
		t.Error(err)
	}
	// The key behind each served certificate is the credential systemd
	// handed over at the restart: a new certificate served proves it.
	for _, h := range r.members {
		if got := r.served(t, clientURL(h)); got != want[h.Name][0] {
			t.Errorf("%s serves server certificate %s, want the renewed %s", h.Name, got, want[h.Name][0])
		}
		if got := r.served(t, peerURL(h)); got != want[h.Name][1] {
			t.Errorf("%s serves peer certificate %s, want the renewed %s", h.Name, got, want[h.Name][1])
		}
	}
}

// snapshotDoc is what `snapshot save -o json` and `snapshot status -o
// json` print.
type snapshotDoc struct {
	Path      string `json:"path"`
	Member    string `json:"member"`
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"totalKeys"`
	SHA256    string `json:"sha256"`
}

// saveSnapshot writes keys, saves a snapshot from the bundle folder and
// checks that it holds them; it returns the file and the revision of the
// last key.
func (r *systemdRun) saveSnapshot(t *testing.T) (string, int64) {
	ctx := stepContext(t, 2*time.Minute)
	cli := r.client(t)
	var last int64
	for i := range 10 {
		resp, err := putEventually(ctx, cli, fmt.Sprintf("/e2e/systemd-snapshot/%02d", i), "before the snapshot")
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	file := filepath.Join(t.TempDir(), "etcd.db")
	var saved, status snapshotDoc
	if err := json.Unmarshal([]byte(r.cli(t, "snapshot", "save", file, "--bundle", r.bundle.HostRoot(r.members[0].Name), "-o", "json")), &saved); err != nil {
		t.Fatal(err)
	}
	if saved.Revision < last {
		t.Fatalf("snapshot at revision %d, want at least %d", saved.Revision, last)
	}
	if err := json.Unmarshal([]byte(r.cli(t, "snapshot", "status", file, "-o", "json")), &status); err != nil {
		t.Fatal(err)
	}
	if status.Revision != saved.Revision || status.SHA256 != saved.SHA256 {
		t.Fatalf("snapshot status %+v does not match what save printed %+v", status, saved)
	}
	t.Logf("snapshot save --bundle %s: from %s, revision %d (last write %d), %d keys, sha256 %s; snapshot status agrees",
		r.members[0].Name, saved.Member, saved.Revision, last, saved.TotalKeys, saved.SHA256)
	return file, last
}

// boot boots a systemd host for h, reachable by the printed ssh and scp.
func (r *systemdRun) boot(t *testing.T, h harness.Host) {
	t.Helper()
	r.hosts[h.Name] = harness.BootSystemd(t, r.lab, h)
	if err := r.remote.Add(h.Address, r.hosts[h.Name].PID()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: systemd booted as PID 1 of its namespaces (pid %d here), in network namespace of %s", h.Name, r.hosts[h.Name].PID(), h.Address)
}

// scale adds a fourth systemd host with member add, started with the
// printed line once the bundle is written, then removes the first host
// with member remove and runs the printed ssh lines on it; a writer runs
// throughout.
func (r *systemdRun) scale(t *testing.T) {
	ctx := stepContext(t, 6*time.Minute)
	cli := r.client(t)
	w := harness.StartWriter(ctx, cli, "/e2e/systemd-member")
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	host := r.spare

	begin := time.Now()
	var out lockedBuffer
	add := r.lab.Command(ctx, r.tools.CLI, "member", "add", host.Name+"="+host.Address, "--out", r.bundle.Dir, "--wait", "3m")
	add.Stdout, add.Stderr = &out, &out
	if err := add.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- add.Wait() }()
	// The copy line is printed once the learner is in the cluster; the
	// command then waits for it to start and catch up.
	var line string
	for line == "" {
		select {
		case err := <-exited:
			t.Fatalf("member add exited (%v) before printing the copy line:\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("member add printed no copy line:\n%s", out.String())
		case <-time.After(200 * time.Millisecond):
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "scp ") && strings.Contains(l, "/"+host.Name+".tar.gz ") {
				line = l
			}
		}
	}
	r.run(t, line)
	if err := <-exited; err != nil {
		t.Fatalf("member add: %v\n%s", err, out.String())
	}
	t.Logf("member add %s=%s (%s):\n%s", host.Name, host.Address, time.Since(begin).Round(time.Millisecond), out.String())
	r.members = append(r.members, host)
	r.waitHealthy(t, r.members[0].Name, len(r.members))
	r.checkRunsAsUnitSays(t, host.Name)
	conf := r.shell(t, host.Name, "grep initial-cluster-state: "+layout.EtcdConfig)
	if !strings.Contains(conf, "existing") {
		t.Errorf("%s's %s: %s, want initial-cluster-state: existing", host.Name, layout.EtcdConfig, conf)
	}

	gone := r.members[0]
	begin = time.Now()
	rm := r.lab.Command(ctx, r.tools.CLI, "member", "remove", gone.Name, "--out", r.bundle.Dir)
	printed, err := rm.CombinedOutput()
	if err != nil {
		t.Fatalf("member remove %s: %v\n%s", gone.Name, err, printed)
	}
	t.Logf("member remove %s (%s):\n%s", gone.Name, time.Since(begin).Round(time.Millisecond), printed)
	r.members = r.members[1:]
	var steps int
	for _, l := range strings.Split(string(printed), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "ssh ") {
			r.run(t, l)
			steps++
		}
	}
	if steps == 0 {
		t.Fatalf("member remove printed no ssh steps")
	}
	if st := r.shell(t, gone.Name, "systemctl is-enabled etcd.service; systemctl is-active etcd.service; ls -A /var/lib/private /var/lib | tr '\\n' ' '"); !strings.Contains(st, "disabled") || !strings.Contains(st, "inactive") || strings.Contains(st, "etcd ") {
		t.Errorf("%s after the printed steps: %s; want etcd.service disabled and stopped, its data gone", gone.Name, st)
	}
	r.waitHealthy(t, r.members[0].Name, len(r.members))
	t.Logf("members:\n%s", r.cli(t, "members", "--bundle", r.bundle.HostRoot(r.members[0].Name)))

	rep := w.Stop()
	stopped = true
	t.Logf("writer during member add and remove: %s", rep)
	if rep.Acked == 0 || len(rep.Stale) > 0 || rep.LongestOutage >= maxScaleOutage {
		t.Errorf("writer: %s; want no stale read and no outage of %s or more", rep, maxScaleOutage)
	}
	// The client's endpoints include the removed member; read back
	// through the others.
	rest, err := r.lab.Client(r.bundle.APIServerClient(r.members[0].Name), r.endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	defer rest.Close()
	if err := w.Verify(ctx, rest); err != nil {
		t.Error(err)
	}
}

// restore saves a snapshot, writes a key after it, and restores every
// member from it with snapshot restore, running the printed steps in their
// order (stop every member, copy and swap each restored folder in, start
// every member), checking the cluster between the start and the clean-up.
// The restored members form a new cluster that holds what the snapshot
// holds and not the key written after it.
func (r *systemdRun) restore(t *testing.T) {
	ctx := stepContext(t, 5*time.Minute)
	file, _ := r.saveSnapshot(t)
	cli := r.client(t)
	before, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := putEventually(ctx, cli, "/e2e/systemd-after-snapshot", "gone after the restore"); err != nil {
		t.Fatal(err)
	}
	printed := r.cli(t, "snapshot", "restore", file, "--out", r.bundle.Dir)
	t.Logf("snapshot restore:\n%s", printed)
	var cleanup []string
	check := false
	for _, l := range strings.Split(printed, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "4.") {
			check = true
		}
		if !strings.HasPrefix(l, "ssh ") && !strings.HasPrefix(l, "scp ") {
			continue
		}
		if check {
			cleanup = append(cleanup, l)
			continue
		}
		r.run(t, l)
	}
	if len(cleanup) == 0 {
		t.Fatalf("snapshot restore printed no steps after its check")
	}
	t.Logf("restored cluster:\n%s", r.waitHealthy(t, r.members[0].Name, len(r.members)))
	for _, l := range cleanup {
		r.run(t, l)
	}
	after := r.client(t)
	list, err := after.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if list.Header.ClusterId == before.Header.ClusterId || len(list.Members) != len(r.members) {
		t.Errorf("after the restore: cluster %x with %d members, before %x; want a new cluster of %d", list.Header.ClusterId, len(list.Members), before.Header.ClusterId, len(r.members))
	}
	got, err := after.Get(ctx, "/e2e/systemd-snapshot/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	gone, err := after.Get(ctx, "/e2e/systemd-after-snapshot")
	if err != nil {
		t.Fatal(err)
	}
	if got.Count == 0 || gone.Count != 0 {
		t.Errorf("after the restore: %d keys of the snapshot, %d written after it; want them all and none", got.Count, gone.Count)
	}
	for _, h := range r.members {
		r.checkRunsAsUnitSays(t, h.Name)
	}
	t.Logf("restored: cluster %x (was %x), %d keys of the snapshot, none written after it", list.Header.ClusterId, before.Header.ClusterId, got.Count)
}

// upgradeExec is upgrade's --exec for runtime systemd, as its help gives
// it: copy the new etcd next to the unit's, keep the old one, swap the new
// one in with one rename and restart the service.
const upgradeExec = `scp -p "$ETCD_STATICPOD_ETCD_BINARY" {scp-target}:/usr/local/bin/etcd.new &&
ssh {ssh-target} "cp -p /usr/local/bin/etcd /usr/local/bin/etcd.previous &&
  mv /usr/local/bin/etcd.new /usr/local/bin/etcd && systemctl restart etcd.service"`

// upgrade upgrades every member to the next release with upgrade
// --etcd-binary --exec, followers first and the leader last, while a
// writer writes: each member then runs the new binary as its unit says,
// and no acknowledged write is lost.
func (r *systemdRun) upgrade(t *testing.T) {
	r.tools.RequireImage(t, nextTag)
	ctx := stepContext(t, 6*time.Minute)
	want, err := os.ReadFile(r.tools.EtcdNext)
	if err != nil {
		t.Fatal(err)
	}
	cli := r.client(t)
	w := harness.StartWriter(ctx, cli, "/e2e/systemd-upgrade")
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()
	cmd := r.lab.Command(ctx, r.tools.CLI, "upgrade", "--etcd-version", nextTag, "--etcd-binary", r.tools.EtcdNext,
		"--out", r.bundle.Dir, "--wait", "2m", "-o", "json", "--exec", upgradeExec)
	cmd.Env = r.remote.Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	begin := time.Now()
	out, err := cmd.Output()
	t.Logf("upgrade --etcd-version %s --etcd-binary %s --exec %q (%s):\n%s", nextTag, r.tools.EtcdNext, upgradeExec, time.Since(begin).Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	var sum upgradeSummary
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("upgrade -o json: %v\n%s", err, out)
	}
	if !sum.SpecRecorded || len(sum.Hosts) != len(r.members) || !sum.Hosts[len(sum.Hosts)-1].Leader {
		t.Errorf("upgrade reports %s; want every member upgraded, the leader last, the spec recorded", out)
	}
	for _, h := range sum.Hosts {
		if h.State != "upgraded" || !strings.HasPrefix(nextTag, h.To) {
			t.Errorf("upgrade: %s %s -> %s: %s %s", h.Name, h.From, h.To, h.State, h.Error)
		}
		t.Logf("upgraded %s from %s to %s in %s (leader: %v)", h.Name, h.From, h.To, h.Took, h.Leader)
	}
	rep := w.Stop()
	stopped = true
	t.Logf("writer during the upgrade: %s", rep)
	if rep.Acked == 0 || len(rep.Stale) > 0 || rep.LongestOutage >= upgradeMaxOutage {
		t.Errorf("writer: %s; want no stale read and no outage of %s or more", rep, upgradeMaxOutage)
	}
	if err := w.Verify(ctx, cli); err != nil {
		t.Error(err)
	}
	for _, h := range r.members {
		st, err := cli.Status(ctx, clientURL(h))
		if err != nil || !strings.HasPrefix(nextTag, st.Version) {
			t.Errorf("%s: status %v, %v; want version %s", h.Name, st, err, nextTag)
		}
		r.checkRunsAsUnitSays(t, h.Name)
		pid, err := r.hosts[h.Name].MainPID(ctx, layout.EtcdUnitName)
		if err != nil {
			t.Fatal(err)
		}
		// The running binary is the one --etcd-binary named.
		if got, err := os.ReadFile(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: etcd.service does not run %s (%v)", h.Name, r.tools.EtcdNext, err)
		}
	}
	t.Logf("cluster after the upgrade:\n%s", r.waitHealthy(t, r.members[0].Name, len(r.members)))
}

// TestSystemdRuntime: init --runtime systemd on three hosts, each booted
// with a real systemd as PID 1 in its own namespaces, the archive unpacked
// at / and etcd.service started as init prints; the units form a healthy
// cluster. Then day 2 on it: health from the bundle and on a node, a
// rolling certs renew with systemctl restart under a writer, and a
// snapshot save.
func TestSystemdRuntime(t *testing.T) {
	r := &systemdRun{tools: harness.RequireTools(t), lab: harness.NewLab(t), hosts: map[string]*harness.SystemdHost{}, remote: harness.NewRemote(t)}
	if why := harness.SystemdAvailable(r.lab); why != "" {
		if harness.InCI() {
			t.Fatalf("systemd hosts are required in CI: %s", why)
		}
		t.Skip(why)
	}
	hosts := r.lab.Hosts(t, 3, harness.IPv4)
	r.bundle = harness.Init(t, r.tools, hosts, "--runtime", "systemd", "--etcd-binary", r.tools.Etcd, "--encryption-algorithm", "ECDSA-P256", "--extra-env", "GOMAXPROCS=2")
	if err := r.lab.Wire(hosts); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, h := range hosts {
		r.boot(t, h)
		if i == 0 {
			// The probe names the cause when the host's mount propagation
			// is wrong again (see BootSystemd).
			if err := r.hosts[h.Name].CredentialsWork(stepContext(t, time.Minute)); err != nil {
				t.Fatalf("LoadCredential= does not work under systemd here, so etcd.service cannot read its keys: %v", err)
			}
		}
	}
	for _, h := range hosts {
		r.install(t, h.Name)
	}
	r.members = hosts
	out := r.waitHealthy(t, hosts[0].Name, len(hosts))
	t.Logf("3-member systemd cluster healthy %s after the first start:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, h := range hosts {
		r.checkRunsAsUnitSays(t, h.Name)
	}
	t.Logf("members:\n%s", r.cli(t, "members", "--bundle", r.bundle.HostRoot(hosts[0].Name)))

	r.spare = r.lab.NextHost(t, "etcd04")
	if err := r.lab.Wire([]harness.Host{r.spare}); err != nil {
		t.Fatal(err)
	}
	r.boot(t, r.spare)

	// Day 2 on the running units, each step on what the one before left.
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"health", func(t *testing.T) {
			t.Logf("health --bundle %s:\n%s", hosts[1].Name, r.cli(t, "health", "--bundle", r.bundle.HostRoot(hosts[1].Name)))
			// On a node, with no flags: the client certificate and URL come
			// from etcd.conf.yml, as there is no static Pod manifest.
			r.run(t, shellcmd.Join("scp", "-p", r.tools.CLI, shellcmd.SCPTarget("root", hosts[2].Address, "/usr/local/bin/etcd-staticpod")))
			t.Logf("on %s:\n%s", hosts[2].Name, r.shell(t, hosts[2].Name, "etcd-staticpod health"))
		}},
		{"certs renew", r.renew},
		{"snapshot save", func(t *testing.T) { r.saveSnapshot(t) }},
		{"snapshot restore", r.restore},
		{"member add and remove", r.scale},
		{"upgrade", r.upgrade},
	}
	for _, step := range steps {
		if !t.Run(step.name, step.run) {
			t.FailNow()
		}
	}
}
