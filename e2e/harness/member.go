package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// ManifestPath is where kubelet's staticPodPath puts the etcd Pod, under a
// host's filesystem root.
const ManifestPath = "/etc/kubernetes/manifests/etcd.yaml"

// bundleRoot is the part of a host's filesystem that the bundle provides;
// any other hostPath lives in the member's scratch folder.
const bundleRoot = "/etc/kubernetes"

// probePoll is how often probes are tried. kubelet waits periodSeconds
// (10 s for etcd's startup probe) between tries; the probe's failure
// budget still bounds the wait, only the steps are shorter.
const probePoll = 200 * time.Millisecond

// Member is one host's etcd, run from its static Pod manifest. Like
// kubelet, it reads the manifest again at every start, so a rewritten
// manifest takes effect at the next start.
type Member struct {
	Name     string
	lab      *Lab
	net      *hostNet
	tools    Tools
	hostRoot string
	// dir holds the host's filesystem outside the bundle, the mount stage
	// and the log.
	dir     string
	logPath string

	mu sync.Mutex
	// run is what the manifest said at the last start (or at creation).
	run  *runSpec
	proc *etcdtest.Process
}

// runSpec is one reading of the manifest and the run planned from it.
type runSpec struct {
	manifest []byte
	pod      *corev1.Pod
	plan     *podPlan
	// probes holds the container's probes; a nil entry is an absent probe.
	probes map[ProbeKind]*probeTarget
	// script prepares the mount namespace (namespace mode only).
	script string
}

// newMember reads the host's manifest from its bundle and plans the run.
func newMember(lab *Lab, hn *hostNet, hostRoot string, tools Tools, dir string) (*Member, error) {
	m := &Member{Name: hn.Name, lab: lab, net: hn, tools: tools, hostRoot: hostRoot, dir: dir, logPath: filepath.Join(dir, "etcd.log")}
	if lab.mode == ModeNamespace {
		if err := os.MkdirAll(m.stage(), 0o700); err != nil {
			return nil, fmt.Errorf("host %s: %w", hn.Name, err)
		}
	}
	run, err := m.load()
	if err != nil {
		return nil, err
	}
	m.run = run
	return m, nil
}

func (m *Member) stage() string { return filepath.Join(m.dir, "stage") }

// ManifestFile is the host's etcd.yaml on this machine, in its bundle.
func (m *Member) ManifestFile() string { return filepath.Join(m.hostRoot, ManifestPath) }

// load reads the manifest and plans the process kubelet would start for it.
func (m *Member) load() (*runSpec, error) {
	data, err := os.ReadFile(m.ManifestFile())
	if err != nil {
		return nil, fmt.Errorf("host %s: read static Pod manifest: %w", m.Name, err)
	}
	pod, err := parsePod(m.ManifestFile(), data)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", m.Name, err)
	}
	r := &runSpec{manifest: data, pod: pod}
	c, err := etcdContainer(pod)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", m.Name, err)
	}
	bin, err := m.tools.EtcdFor(c.Image)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", m.Name, err)
	}
	hostFS := func(p string) string {
		p = path.Clean(p)
		if p == bundleRoot || strings.HasPrefix(p, bundleRoot+"/") {
			return filepath.Join(m.hostRoot, p)
		}
		return filepath.Join(m.dir, "rootfs", p)
	}
	if r.plan, err = planPod(pod, bin, hostFS); err != nil {
		return nil, fmt.Errorf("host %s: %w", m.Name, err)
	}
	loopbackHost := ""
	if m.lab.mode == ModeLoopback {
		if err := r.plan.rewriteForLoopback(m.net.Address); err != nil {
			return nil, fmt.Errorf("host %s: %w", m.Name, err)
		}
		loopbackHost = m.net.Address
	} else if r.script, err = r.plan.mountScript(m.stage()); err != nil {
		return nil, fmt.Errorf("host %s: %w", m.Name, err)
	}
	c = r.plan.container
	r.probes = map[ProbeKind]*probeTarget{}
	for kind, p := range map[ProbeKind]*corev1.Probe{Startup: c.StartupProbe, Readiness: c.ReadinessProbe, Liveness: c.LivenessProbe} {
		if r.probes[kind], err = resolveProbe(kind, p, c, m.net.Address, loopbackHost); err != nil {
			return nil, fmt.Errorf("host %s: %w", m.Name, err)
		}
	}
	return r, nil
}

func (m *Member) spec() *runSpec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.run
}

// Pod is the manifest the member runs (or last ran).
func (m *Member) Pod() *corev1.Pod { return m.spec().pod }

// Manifest is the content of the manifest the member runs (or last ran).
func (m *Member) Manifest() []byte { return m.spec().manifest }

// Image is the etcd container's image in the manifest the member runs.
func (m *Member) Image() string { return m.spec().plan.container.Image }

// Binary is the etcd binary the member runs, chosen by its image tag.
func (m *Member) Binary() string { return m.spec().plan.argv[0] }

// Rewrites lists the argument changes made in loopback mode.
func (m *Member) Rewrites() []string { return m.spec().plan.rewrites }

// Flag returns the value of --name=value in the manifest's command.
func (m *Member) Flag(name string) string {
	for _, a := range m.spec().plan.container.Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// ClientURL is the member's first advertised client URL, from its manifest.
func (m *Member) ClientURL() string {
	u, _, _ := strings.Cut(m.Flag("advertise-client-urls"), ",")
	return u
}

// DataDir is where the member's --data-dir (the manifest's data hostPath,
// /var/lib/etcd) lives on this machine. Swap its content only while the
// member is stopped.
func (m *Member) DataDir() string {
	r := m.spec()
	dataDir := path.Clean(m.Flag("data-dir"))
	var best *bind
	for i, b := range r.plan.binds {
		if (dataDir == b.target || strings.HasPrefix(dataDir, b.target+"/")) && (best == nil || len(b.target) > len(best.target)) {
			best = &r.plan.binds[i]
		}
	}
	if best == nil {
		// Not on a volume: the container's own filesystem, which the
		// harness does not isolate; say where etcd would write.
		return dataDir
	}
	return filepath.Join(best.source, strings.TrimPrefix(dataDir, best.target))
}

// Start runs etcd as kubelet would run the container: in the host's network
// namespace, in a private mount namespace showing the hostPath volumes at
// their mount paths.
// The manifest is read again first; an unreadable one is an error and
// nothing starts.
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil && !m.proc.Exited() {
		return fmt.Errorf("member %s is running already", m.Name)
	}
	r, err := m.load()
	if err != nil {
		return err
	}
	m.run = r
	var cmd *exec.Cmd
	if m.lab.mode == ModeNamespace {
		args := []string{"netns", "exec", m.net.ns.Name, "unshare", "--mount", "--propagation", "private", "sh", "-c", r.script, "etcd-" + m.Name}
		cmd = exec.Command("ip", append(args, r.plan.argv...)...)
	} else {
		cmd = exec.Command(r.plan.argv[0], r.plan.argv[1:]...)
	}
	cmd.Env = r.plan.env
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("member %s: open log: %w", m.Name, err)
	}
	fmt.Fprintf(logf, "==== %s start %s\n", time.Now().Format(time.RFC3339Nano), r.plan.container.Image)
	// Its own process group, so that a stop reaches every process of the
	// member (ip, unshare, sh and etcd).
	p, err := etcdtest.StartProcess(cmd, logf)
	if err != nil {
		return fmt.Errorf("member %s: start etcd: %w", m.Name, err)
	}
	m.proc = p
	return nil
}

func (m *Member) current() *etcdtest.Process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Running reports whether the member's etcd process is alive.
func (m *Member) Running() bool {
	p := m.current()
	return p != nil && !p.Exited()
}

// Stop ends the member as kubelet ends a container: SIGTERM, then SIGKILL
// once grace has passed. It returns when the process is gone.
func (m *Member) Stop(ctx context.Context, grace time.Duration) error {
	p := m.current()
	if p == nil {
		return nil
	}
	if err := p.Stop(ctx, grace); err != nil {
		return fmt.Errorf("member %s: etcd: %w", m.Name, err)
	}
	return nil
}

// Restart stops the member (SIGTERM, SIGKILL after grace) and starts it
// again from its manifest as it is now.
func (m *Member) Restart(ctx context.Context, grace time.Duration) error {
	if err := m.Stop(ctx, grace); err != nil {
		return err
	}
	return m.Start()
}

// Kill ends the member at once with SIGKILL, as a crash or power loss
// would, and returns when the process is gone.
func (m *Member) Kill(ctx context.Context) error {
	p := m.current()
	if p == nil {
		return nil
	}
	if err := p.Kill(ctx); err != nil {
		return fmt.Errorf("member %s: etcd: %w", m.Name, err)
	}
	return nil
}

// Freeze stops every process of the member with SIGSTOP, as a hung
// process or a paused machine would: the kernel still accepts TCP
// connections on its listening sockets, but nothing ever answers on them.
// Thaw resumes it; a frozen member is killed as usual when the test ends.
func (m *Member) Freeze() error { return m.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen member with SIGCONT.
func (m *Member) Thaw() error { return m.signal(syscall.SIGCONT) }

func (m *Member) signal(sig syscall.Signal) error {
	p := m.current()
	if p == nil {
		return fmt.Errorf("member %s was never started", m.Name)
	}
	if err := p.Signal(sig); err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	return nil
}

// WaitReady waits as kubelet would before it calls the Pod ready and live:
// the startup probe until it passes, then the readiness probe, then the
// liveness probe. Each is bounded by its own failure budget and by ctx; a
// process that exits ends the wait with its log.
func (m *Member) WaitReady(ctx context.Context) error {
	for _, kind := range []ProbeKind{Startup, Readiness, Liveness} {
		if err := m.waitProbe(ctx, kind); err != nil {
			return err
		}
	}
	return nil
}

// Probe runs one attempt of a probe from inside the host's network.
func (m *Member) Probe(ctx context.Context, kind ProbeKind) error {
	p := m.spec().probes[kind]
	if p == nil {
		return fmt.Errorf("member %s: the Pod has no %s probe", m.Name, kind)
	}
	return p.check(ctx, m.net.DialContext)
}

func (m *Member) waitProbe(ctx context.Context, kind ProbeKind) error {
	p := m.spec().probes[kind]
	if p == nil {
		return nil // kubelet treats an absent probe as passing
	}
	proc := m.current()
	if proc == nil {
		return fmt.Errorf("member %s was never started", m.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, p.budget)
	defer cancel()
	tick := time.NewTicker(probePoll)
	defer tick.Stop()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, p.timeout)
		last = p.check(attempt, m.net.DialContext)
		cancelAttempt()
		if last == nil {
			return nil
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("member %s: etcd exited (%v) before its %s probe passed; log:\n%s", m.Name, proc.Err(), kind, m.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("member %s: %s probe did not pass within %s: %w; log:\n%s", m.Name, kind, p.budget, last, m.LogTail(30))
		case <-tick.C:
		}
	}
}

// CheckIsolation verifies, from outside, that the running etcd is where
// the harness means it to be: in its host's network namespace and a mount
// namespace of its own, with every volume mounted at its mount path, while
// mount paths missing on this machine are still missing here.
func (m *Member) CheckIsolation() error {
	if m.lab.mode != ModeNamespace {
		return errors.New("loopback fallback: members share this machine's namespaces")
	}
	p := m.current()
	if p == nil || p.Exited() {
		return fmt.Errorf("member %s is not running", m.Name)
	}
	plan := m.spec().plan
	proc := fmt.Sprintf("/proc/%d", p.Pid())
	if exe, err := os.Readlink(proc + "/exe"); err != nil || exe != plan.argv[0] {
		return fmt.Errorf("member %s: process runs %q (%v), want %s", m.Name, exe, err, plan.argv[0])
	}
	same, err := sameFile(proc+"/ns/net", m.net.ns.path())
	if err != nil || !same {
		return fmt.Errorf("member %s: etcd is not in network namespace %s (%v)", m.Name, m.net.ns.Name, err)
	}
	if same, err := sameFile(proc+"/ns/mnt", "/proc/self/ns/mnt"); err != nil || same {
		return fmt.Errorf("member %s: etcd shares the test's mount namespace (%v)", m.Name, err)
	}
	info, err := os.ReadFile(proc + "/mountinfo")
	if err != nil {
		return fmt.Errorf("member %s: %w", m.Name, err)
	}
	mountPoints := map[string]bool{}
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 {
			mountPoints[f[4]] = true
		}
	}
	for _, b := range plan.binds {
		if !mountPoints[b.target] {
			return fmt.Errorf("member %s: %s is not a mount point in etcd's mount namespace", m.Name, b.target)
		}
	}
	for _, missing := range plan.missing {
		if _, err := os.Lstat(missing); err == nil {
			return fmt.Errorf("member %s: %s appeared on this machine", m.Name, missing)
		}
	}
	return nil
}

func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// Log returns everything etcd wrote, across restarts.
func (m *Member) Log() (string, error) {
	data, err := os.ReadFile(m.logPath)
	if err != nil {
		return "", fmt.Errorf("member %s: read log: %w", m.Name, err)
	}
	return string(data), nil
}

// LogTail returns the last n lines etcd wrote.
func (m *Member) LogTail(n int) string {
	data, err := os.ReadFile(m.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// ExitError reports how the last run ended, or nil while it runs.
func (m *Member) ExitError() error {
	p := m.current()
	if p == nil {
		return errors.New("never started")
	}
	if !p.Exited() {
		return nil
	}
	return p.Err()
}
