package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/systemdunit"
)

// systemdRun is a cluster of systemd hosts made with init --runtime systemd.
type systemdRun struct {
	tools  harness.Tools
	lab    *harness.Lab
	bundle harness.Bundle
	hosts  map[string]*harness.SystemdHost
}

// install does on a host what init prints for it: unpack its archive at /
// and start etcd.service without waiting for quorum.
func (r *systemdRun) install(t *testing.T, name string) {
	t.Helper()
	ctx := stepContext(t, time.Minute)
	archive := "/root/" + name + ".tar.gz"
	if err := r.hosts[name].CopyIn(ctx, filepath.Join(r.bundle.Dir, name+".tar.gz"), archive, 0o600); err != nil {
		t.Fatal(err)
	}
	line := "tar --no-overwrite-dir -C / -xzf " + archive + " && rm " + archive + " && systemctl daemon-reload && systemctl enable --now --no-block etcd.service"
	if out, err := r.hosts[name].Shell(ctx, line); err != nil {
		t.Fatalf("%s: %s: %v\n%s", name, line, err, out)
	}
	t.Logf("%s: %s", name, line)
}

// cli runs etcd-staticpod from the hub and returns its output; a non-zero
// exit fails the test.
func (r *systemdRun) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := r.lab.Command(stepContext(t, 5*time.Minute), r.tools.CLI, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcd-staticpod %s: %v\n%s", strings.Join(args, " "), err, out)
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

// checkRunsAsUnitSays checks, from outside, the process systemd started:
// the unit's ExecStart verbatim, a dynamic user, the keys in the
// credentials folder, the state folder as working directory.
func (r *systemdRun) checkRunsAsUnitSays(t *testing.T, name string) {
	t.Helper()
	ctx := stepContext(t, time.Minute)
	h := r.hosts[name]
	pid, err := h.MainPID(ctx, layout.EtcdUnitName)
	if err != nil || pid == 0 {
		t.Fatalf("%s: no main process of etcd.service (%v)", name, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), " "), strings.Join(systemdunit.Command(), " "); got != want {
		t.Errorf("%s: etcd runs %q, the unit says %q", name, got, want)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if f, ok := strings.CutPrefix(line, "Uid:"); ok {
			if uid := strings.Fields(f)[0]; uid == "0" {
				t.Errorf("%s: etcd runs as root", name)
			} else {
				t.Logf("%s: etcd (pid %d here) runs %q as uid %s", name, pid, strings.Join(systemdunit.Command(), " "), uid)
			}
		}
		if f, ok := strings.CutPrefix(line, "CapEff:"); ok && strings.TrimSpace(f) != "0000000000000000" {
			t.Errorf("%s: etcd has capabilities %s", name, strings.TrimSpace(f))
		}
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || !strings.HasSuffix(cwd, "/var/lib/private/etcd") {
		t.Errorf("%s: etcd's working directory %q (%v), want the state folder", name, cwd, err)
	}
	for _, key := range []string{"server.key", "peer.key"} {
		p := fmt.Sprintf("/proc/%d/root%s/%s", pid, layout.EtcdCredentialsDir, key)
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %s: %v", name, key, err)
		}
	}
	out, _ := h.Exec(ctx, "systemctl", "show", "-p", "ActiveState,SubState,Type,NRestarts", etcdUnitName())
	t.Logf("%s: %s", name, strings.Join(strings.Fields(string(out)), " "))
}

func etcdUnitName() string { return layout.EtcdUnitName }

// TestSystemdRuntime: init --runtime systemd on three hosts, each booted
// with a real systemd as PID 1 in its own namespaces, the archive unpacked
// at / and etcd.service started as init prints; the units form a healthy
// cluster.
func TestSystemdRuntime(t *testing.T) {
	r := &systemdRun{tools: harness.RequireTools(t), lab: harness.NewLab(t), hosts: map[string]*harness.SystemdHost{}}
	if why := harness.SystemdAvailable(r.lab); why != "" {
		if harness.InCI() {
			t.Fatalf("systemd hosts are required in CI: %s", why)
		}
		t.Skip(why)
	}
	hosts := r.lab.Hosts(t, 3, harness.IPv4)
	r.bundle = harness.Init(t, r.tools, hosts, "--runtime", "systemd", "--etcd-binary", r.tools.Etcd, "--encryption-algorithm", "ECDSA-P256")
	if err := r.lab.Wire(hosts); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, h := range hosts {
		r.hosts[h.Name] = harness.BootSystemd(t, r.lab, h)
		if i == 0 {
			// The probe names the cause when the host's mount propagation
			// is wrong again (see BootSystemd).
			if err := r.hosts[h.Name].CredentialsWork(stepContext(t, time.Minute)); err != nil {
				t.Fatalf("LoadCredential= does not work under systemd here, so etcd.service cannot read its keys: %v", err)
			}
		}
		t.Logf("%s: systemd booted as PID 1 of its namespaces (pid %d here), in network namespace of %s", h.Name, r.hosts[h.Name].PID(), h.Address)
	}
	for _, h := range hosts {
		r.install(t, h.Name)
	}
	out := r.waitHealthy(t, hosts[0].Name, len(hosts))
	t.Logf("3-member systemd cluster healthy %s after the first start:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, h := range hosts {
		r.checkRunsAsUnitSays(t, h.Name)
	}
	t.Logf("members:\n%s", r.cli(t, "members", "--bundle", r.bundle.HostRoot(hosts[0].Name)))
}
