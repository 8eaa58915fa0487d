package harness

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
)

// SystemdHost is one host run by a real systemd: systemd 252 (this
// machine's /lib/systemd/systemd) as PID 1 of its own PID, mount, cgroup
// and UTS namespaces, inside the host's network namespace, on a
// root of its own on a tmpfs (an overlay of this machine's /usr, a copy of
// its /etc). Bundles are unpacked
// into it and units started with systemctl, exactly as on a host.
type SystemdHost struct {
	Name string
	// pid is systemd's PID as this machine sees it.
	pid     int
	cmd     *exec.Cmd
	cgroups []string
	logPath string
}

// masked are the units of sysinit.target that would reach past the host's
// namespaces (kernel settings, modules, binfmt, device nodes) or need a
// machine (udev, getty, logind); nspawn's containers skip most of them by
// their conditions too.
var masked = []string{
	"systemd-sysctl.service", "systemd-modules-load.service", "systemd-binfmt.service",
	"proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
	"sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount",
	"sys-fs-fuse-connections.mount", "dev-hugepages.mount", "systemd-remount-fs.service",
	"systemd-tmpfiles-setup-dev.service", "systemd-udevd.service", "systemd-udev-trigger.service",
	"systemd-random-seed.service", "systemd-logind.service", "getty.target", "console-getty.service",
	"systemd-hwdb-update.service", "systemd-firstboot.service", "ldconfig.service",
}

// SystemdAvailable says why a systemd host cannot be booted here, or "".
func SystemdAvailable(l *Lab) string {
	if l.mode != ModeNamespace {
		return "loopback mode: no namespaces"
	}
	for _, p := range []string{"/lib/systemd/systemd", "/bin/systemctl", "/usr/bin/nsenter", "/usr/bin/unshare"} {
		if _, err := os.Stat(p); err != nil {
			return p + " is missing"
		}
	}
	return ""
}

// BootSystemd boots a systemd host in h's network namespace (wired
// already) and waits until systemd has finished starting. It is killed,
// with everything it runs, when the test ends.
func BootSystemd(t testing.TB, l *Lab, h Host) *SystemdHost {
	t.Helper()
	if why := SystemdAvailable(l); why != "" {
		t.Fatalf("systemd host %s: %s", h.Name, why)
	}
	hn, err := l.host(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "systemd-"+h.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &SystemdHost{Name: h.Name, logPath: filepath.Join(dir, "boot.log")}
	// A cgroup of its own below ours in every hierarchy, so that systemd's
	// cgroup namespace is rooted there and nothing it makes lands beside us.
	s.cgroups, err = childCgroups(fmt.Sprintf("e2e-systemd-%s-%06x", h.Name, rand.Uint32()&0xffffff))
	if err != nil {
		t.Fatal(err)
	}
	var join []string
	for _, cg := range s.cgroups {
		join = append(join, "echo $$ > "+shellcmd.Quote(filepath.Join(cg, "cgroup.procs")))
	}
	root := filepath.Join(dir, "root")
	var masks []string
	for _, u := range masked {
		masks = append(masks, "ln -sf /dev/null \"$R/etc/systemd/system/"+u+"\"")
	}
	boot := strings.Join([]string{
		"set -e",
		"R=" + shellcmd.Quote(root),
		"U=" + shellcmd.Quote(filepath.Join(dir, "upper")),
		`mkdir -p "$R"`,
		// The root is a tmpfs: this machine's /usr read-only, a copy of its
		// /etc, empty /var, /root and /tmp. An overlay of this machine's
		// root does not do here: it is itself an overlay, and systemd's
		// per-unit namespaces cannot bind it.
		`mount -t tmpfs -o mode=0755 e2e-systemd-root "$R"`,
		`mkdir -p "$R/usr" "$R/proc" "$R/sys" "$R/dev" "$R/run" "$R/var/lib" "$R/var/log" "$R/var/tmp" "$R/root" "$R/home" "$R/srv" "$R/opt"`,
		`chmod 1777 "$R/var/tmp" && chmod 0700 "$R/root" && mkdir -p -m 1777 "$R/tmp"`,
		// /usr is an overlay whose writes (the bundle's /usr/local/bin/etcd)
		// go to the tmpfs: tar also changes the modes of the folders it
		// passes through.
		`mkdir -p "$U" && mount -t tmpfs -o mode=0755 e2e-systemd-upper "$U" && mkdir -p "$U/u" "$U/w"`,
		`mount -t overlay e2e-systemd-usr -o "lowerdir=/usr,upperdir=$U/u,workdir=$U/w" "$R/usr"`,
		`for l in bin sbin lib lib64; do [ -L /$l ] && ln -s "$(readlink /$l)" "$R/$l"; done`,
		`cp -a /etc "$R/etc"`,
		`rm -f "$R/etc/machine-id" && : > "$R/etc/machine-id"`,
		// /proc of the new PID namespace, its kernel knobs read-only; a
		// read-only /sys of this network namespace; a /dev of the usual
		// character devices only.
		`mount -t proc proc "$R/proc"`,
		`mount --bind "$R/proc/sys" "$R/proc/sys" && mount -o remount,bind,ro "$R/proc/sys"`,
		`mount -t sysfs -o ro sysfs "$R/sys"`,
		`mount -t tmpfs -o mode=0755 e2e-dev "$R/dev"`,
		// Device nodes made as nspawn makes them; PrivateDevices= copies them.
		`mknod -m 666 "$R/dev/null" c 1 3 && mknod -m 666 "$R/dev/zero" c 1 5 && mknod -m 666 "$R/dev/full" c 1 7`,
		`mknod -m 666 "$R/dev/random" c 1 8 && mknod -m 666 "$R/dev/urandom" c 1 9 && mknod -m 666 "$R/dev/tty" c 5 0`,
		`ln -s pts/ptmx "$R/dev/ptmx"`,
		`mkdir -p "$R/dev/shm" "$R/dev/pts" && mount -t tmpfs -o mode=1777 shm "$R/dev/shm"`,
		`mount -t tmpfs -o mode=0755 e2e-run "$R/run"`,
		`mkdir -p "$R/etc/systemd/system"`,
		strings.Join(masks, "\n"),
		`printf '[Unit]\nDescription=e2e host\nRequires=sysinit.target\nAfter=sysinit.target\n' > "$R/etc/systemd/system/e2e.target"`,
		`echo ` + shellcmd.Quote(h.Name) + ` > "$R/etc/hostname"`,
		`hostname ` + shellcmd.Quote(h.Name),
		// pivot_root, not chroot: systemd's own namespaces for a unit
		// bind "/" and need it to be the mount namespace's root.
		`mkdir -p "$R/.oldroot" && cd "$R" && pivot_root . .oldroot && umount -l /.oldroot && rmdir /.oldroot`,
		// Shared propagation, as a container manager sets it up: systemd
		// leaves it to the container manager when it sees container=, and
		// mounts a unit's LoadCredential= folder in a mount namespace of
		// its own that reaches PID 1's only through propagation. With
		// private mounts that folder stays empty.
		`mount --make-rshared /`,
		`exec /usr/bin/env -i container=etcd-e2e /lib/systemd/systemd --unit=e2e.target --log-target=journal`,
	}, "\n")
	wrapper := strings.Join(join, "\n") + "\nexec unshare --pid --fork --kill-child=SIGKILL --mount --propagation private --cgroup --uts sh -c " + shellcmd.Quote(boot)
	s.cmd = hn.ns.Command(context.Background(), "sh", "-c", wrapper)
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("boot systemd on %s: %v", h.Name, err)
	}
	t.Cleanup(func() { s.kill(t) })
	// systemd is the child of unshare, which is what sh execs into.
	deadline := time.Now().Add(30 * time.Second)
	for s.pid == 0 {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.logPath)
			t.Fatalf("systemd on %s did not start:\n%s", h.Name, out)
		}
		time.Sleep(50 * time.Millisecond)
		s.pid = childPID(s.cmd.Process.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		out, _ := s.Exec(ctx, "systemctl", "is-system-running")
		state := strings.TrimSpace(string(out))
		if state == "running" || state == "degraded" {
			if state == "degraded" {
				failed, _ := s.Exec(ctx, "systemctl", "--failed", "--no-legend", "--no-pager")
				t.Logf("systemd on %s is up, degraded by: %s", h.Name, strings.TrimSpace(string(failed)))
			}
			break
		}
		if ctx.Err() != nil {
			log, _ := os.ReadFile(s.logPath)
			t.Fatalf("systemd on %s: state %q after a minute\n%s", h.Name, state, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// childPID is the first child of pid, 0 while there is none.
func childPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// childCgroups makes a cgroup named name below this process's own in
// every hierarchy mounted under /sys/fs/cgroup.
func childCgroups(name string) ([]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		mount := ""
		switch ctrl := parts[1]; {
		case ctrl == "":
			mount = "/sys/fs/cgroup/unified"
			if _, err := os.Stat(mount); err != nil {
				mount = "/sys/fs/cgroup"
			}
		case strings.HasPrefix(ctrl, "name="):
			mount = "/sys/fs/cgroup/" + strings.TrimPrefix(ctrl, "name=")
		default:
			mount = "/sys/fs/cgroup/" + ctrl
		}
		dir := filepath.Join(mount, parts[2], name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return out, fmt.Errorf("cgroup for systemd: %w", err)
		}
		out = append(out, dir)
	}
	return out, sc.Err()
}

// Exec runs a command inside the host, as a shell on it would: in all of
// systemd's namespaces, its root and working directory.
func (s *SystemdHost) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(s.pid), "-a", "-r", "-w", "--", name}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER=cat"}
	return cmd.CombinedOutput()
}

// Shell runs a shell command line inside the host, as ssh would.
func (s *SystemdHost) Shell(ctx context.Context, line string) ([]byte, error) {
	return s.Exec(ctx, "sh", "-c", line)
}

// Journal is the host's journal for a unit.
func (s *SystemdHost) Journal(unit string, lines int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.Exec(ctx, "journalctl", "-u", unit, "-n", strconv.Itoa(lines), "--no-pager", "-o", "short-precise")
	if err != nil {
		return fmt.Sprintf("(journalctl: %v) %s", err, out)
	}
	return string(out)
}

// CredentialsWork starts a unit that reads a key through LoadCredential=
// and DynamicUser=, as etcd.service does, and says why it failed.
func (s *SystemdHost) CredentialsWork(ctx context.Context) error {
	line := `umask 077 && echo probe > /root/credential-probe &&
printf '[Service]\nType=oneshot\nDynamicUser=yes\nLoadCredential=k:/root/credential-probe\nExecStart=/bin/sh -c "test -s \\"$CREDENTIALS_DIRECTORY/k\\""\n' > /run/systemd/system/credential-probe.service &&
systemctl daemon-reload && systemctl start credential-probe.service`
	if out, err := s.Shell(ctx, line); err != nil {
		return fmt.Errorf("%s: a unit with LoadCredential= cannot read its credential: %v: %s%s", s.Name, err, out, s.Journal("credential-probe.service", 5))
	}
	return nil
}

// PID is systemd's PID as this machine sees it.
func (s *SystemdHost) PID() int { return s.pid }

// MainPID is the main process of a unit as this machine sees it, 0 when
// it runs none.
func (s *SystemdHost) MainPID(ctx context.Context, unit string) (int, error) {
	out, err := s.Exec(ctx, "systemctl", "show", "-p", "MainPID", "--value", unit)
	if err != nil {
		return 0, fmt.Errorf("%s: systemctl show %s: %v: %s", s.Name, unit, err, out)
	}
	inner, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || inner == 0 {
		return 0, err
	}
	// The PID inside systemd's namespace; NSpid in a process's status
	// lists it beside ours.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
				ids := strings.Fields(f)
				if len(ids) >= 2 && ids[len(ids)-1] == strconv.Itoa(inner) && isDescendant(pid, s.pid) {
					return pid, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("%s: no process for PID %d of %s", s.Name, inner, unit)
}

// isDescendant reports whether pid runs below ancestor.
func isDescendant(pid, ancestor int) bool {
	for pid > 1 {
		if pid == ancestor {
			return true
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		// The parent follows the command name, which ends with ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 2 {
			return false
		}
		pid, _ = strconv.Atoi(f[1])
	}
	return false
}

// kill ends systemd and so its whole PID namespace, then removes its
// cgroups.
func (s *SystemdHost) kill(t testing.TB) {
	if t.Failed() {
		t.Logf("journal of etcd.service on %s:\n%s", s.Name, s.Journal("etcd.service", 40))
	}
	if s.pid != 0 {
		_ = exec.Command("kill", "-9", strconv.Itoa(s.pid)).Run()
	}
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
	for _, cg := range s.cgroups {
		removeCgroup(cg)
	}
}

// removeCgroup removes a cgroup and what systemd made below it, deepest
// first; the processes are gone by now.
func removeCgroup(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		for range 50 {
			if err := os.Remove(dirs[i]); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
