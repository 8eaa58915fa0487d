// Package etcdtest runs real etcd clusters from the bundles that
// `etcd-staticpod init` writes, for tests of the day-2 commands. Each
// member runs the command line of its own static Pod manifest, or, for
// runtime systemd, the etcd its unit names with its etcd.conf.yml, with the
// bundle's certificates, on its own loopback address (Addr(11), Addr(12),
// ... in the test package's own range) and free ports; the manifests and
// config files in the bundle folder are rewritten to those ports so that
// resolving from a bundle finds the running cluster.
package etcdtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// StartTimeout bounds the wait for members to become ready.
const StartTimeout = 45 * time.Second

// ModuleRoot is the folder holding our go.mod, found upwards from the
// working folder (a package folder under go test).
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working folder")
		}
		dir = parent
	}
}

// EtcdBinary is $ETCD_BIN, else .bin/etcd in the module (made by `make
// etcd`); the test is skipped when neither exists.
func EtcdBinary(tb testing.TB) string {
	tb.Helper()
	return moduleBinary(tb, "ETCD_BIN", "etcd", "no etcd binary: set ETCD_BIN or run `make etcd` to build")
}

// NextEtcdBinary is $ETCD_NEXT_BIN, else .bin/etcd-3.6.16 in the module
// (made by `make etcd-next`): the release upgrades go to. The test is
// skipped when neither exists.
func NextEtcdBinary(tb testing.TB) string {
	tb.Helper()
	return moduleBinary(tb, "ETCD_NEXT_BIN", "etcd-3.6.16", "no etcd binary to upgrade to: set ETCD_NEXT_BIN or run `make etcd-next` to build")
}

// moduleBinary is $env, which must exist, else .bin/name in the module;
// the test is skipped with skip when neither exists.
func moduleBinary(tb testing.TB, env, name, skip string) string {
	tb.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("%s: %v", env, err)
		}
		return p
	}
	p := filepath.Join(ModuleRoot(tb), ".bin", name)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("%s %s", skip, p)
	}
	return p
}

// CLIBinary is $ETCD_STATICPOD_BIN, else a fresh build of the command.
func CLIBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("ETCD_STATICPOD_BIN"); p != "" {
		return p
	}
	out := filepath.Join(tb.TempDir(), "etcd-staticpod")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/etcd-staticpod")
	cmd.Dir = ModuleRoot(tb)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build etcd-staticpod: %v\n%s", err, b)
	}
	return out
}

// Exec runs the built command bin and returns its stdout, stderr and exit
// status. Output that holds private key material fails the test: no
// command may print a key.
func Exec(tb testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	return ExecAnswering(tb, bin, nil, args...)
}

// ExecAnswering is Exec that hands each line the command writes to stderr
// to answer (when not nil) while it runs, as an operator reads the steps a
// run prints and carries them out before it goes on.
func ExecAnswering(tb testing.TB, bin string, answer func(line string), args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	pipe, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("%s %q: %v", bin, args, err)
	}
	lines := bufio.NewScanner(io.TeeReader(pipe, &errOut))
	lines.Buffer(make([]byte, 64*1024), 1024*1024)
	for lines.Scan() {
		if answer != nil {
			answer(lines.Text())
		}
	}
	// What a line too long to scan leaves is still read, so that the
	// command never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, io.TeeReader(pipe, &errOut))
	err = cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		tb.Fatalf("%s %q: %v", bin, args, err)
	}
	if strings.Contains(out.String()+errOut.String(), "PRIVATE KEY") {
		tb.Errorf("%q printed key material", args)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// Tree fingerprints every entry under dir (mode, and content for files),
// by path relative to dir, for "nothing changed" checks.
func Tree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// DiffTree lists, sorted, the paths under prefixes (all when none) that
// two Trees disagree on: changed, added or removed.
func DiffTree(a, b map[string]string, prefixes ...string) []string {
	var out []string
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	for k, v := range b {
		if w, ok := a[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	out = slices.DeleteFunc(out, func(k string) bool {
		if len(prefixes) == 0 {
			return false
		}
		for _, p := range prefixes {
			if k == p || strings.HasPrefix(k, p+"/") {
				return false
			}
		}
		return true
	})
	slices.Sort(out)
	return out
}

// ReadCert reads a PEM certificate file; the test fails on any error.
func ReadCert(tb testing.TB, path string) *x509.Certificate {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := certs.ParseCert(b)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return c
}

// Initializer runs `etcd-staticpod init` with these arguments.
type Initializer func(args ...string) error

// ExecInit runs init from a built binary.
func ExecInit(bin string) Initializer {
	return func(args ...string) error {
		cmd := exec.Command(bin, append([]string{"init"}, args...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s init: %w\n%s", bin, err, b)
		}
		return nil
	}
}

// Addr is loopback address i (1 to 254) of this test package's own range,
// 127.A.B.i, with A and B drawn from the package's folder: packages that
// `make test` runs at once, and one package run from two checkouts, serve
// on addresses apart, so that neither takes a port the other has just
// picked, nor a fixed port (2379, 2380) the other listens on.
func Addr(i int) string {
	dir, err := os.Getwd() // go test runs a package's tests in its folder
	if err != nil {
		dir = os.Args[0]
	}
	return addrIn(dir, i)
}

// addrIn is address i of the range of the package in dir.
func addrIn(dir string, i int) string {
	h := fnv.New32a()
	h.Write([]byte(dir))
	sum := h.Sum32()
	return fmt.Sprintf("127.%d.%d.%d", 1+sum%254, 1+(sum>>8)%254, i)
}

// Hosts names n hosts etcd01... on Addr(11)...; loopback only.
func Hosts(n int) string {
	var hosts []string
	for i := 1; i <= n; i++ {
		hosts = append(hosts, fmt.Sprintf("etcd%02d=%s", i, Addr(10+i)))
	}
	return strings.Join(hosts, ",")
}

// Bundles writes the bundles of n hosts with init and returns the folder.
// ECDSA keys keep it quick; extra arguments are passed on.
func Bundles(tb testing.TB, init Initializer, n int, extra ...string) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "bundles")
	args := append([]string{"--hosts", Hosts(n), "--out", dir, "--encryption-algorithm", "ECDSA-P256"}, extra...)
	if err := init(args...); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Member is one running (or stopped) etcd.
type Member struct {
	Name string
	// Bundle is the host folder DIR/NAME.
	Bundle string
	// ClientURL and PeerURL are the advertised URLs with their real ports.
	ClientURL, PeerURL string
	// MetricsURL serves /readyz over plain HTTP.
	MetricsURL string
	DataDir    string
	LogFile    string
	// Systemd is set for a member of runtime systemd: it runs the etcd
	// its unit names (the host folder's when the bundle carries one) with
	// --config-file, from its etcd.conf.yml rewritten to the test's ports,
	// folders and the keys the unit loads as credentials.
	Systemd bool

	bin  string
	args []string

	// mu guards proc and what Supervise's restarts read.
	mu   sync.Mutex
	proc *Process
	// pidFile, once supervised, gets the running etcd's PID; stopped
	// ends the supervision.
	pidFile string
	stopped bool
}

// process is the member's current process, nil before its first start.
func (m *Member) process() *Process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Signal sends sig to the member's processes: SIGSTOP holds the member
// as a hung one would be, SIGCONT lets it go on.
func (m *Member) Signal(sig syscall.Signal) error {
	p := m.process()
	if p == nil {
		return fmt.Errorf("member %s never started", m.Name)
	}
	return p.Signal(sig)
}

// Running reports whether the member's process is alive.
func (m *Member) Running() bool {
	p := m.process()
	return p != nil && !p.Exited()
}

// Cluster is the members started from one bundle folder.
type Cluster struct {
	// Dir is the bundle folder (DIR with pki/ and one folder per host).
	Dir     string
	Members []*Member
}

// Member returns the member with that name.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Endpoints are every member's client URL.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// urlHost matches the host:port of each http(s) URL in a flag value, also
// inside lists such as --initial-cluster=a=https://...,b=https://...
var urlHost = regexp.MustCompile(`(https?://)([^/,\s"']+)`)

// urlMapper returns a function that rewrites the host:port of every URL in
// a value: one in shared to where that member really serves, any other
// whose host remap accepts (every host when remap is nil) to a free port of
// ports on the same host, the same port each time for one host:port. The
// rest is left as written.
func urlMapper(shared map[string]string, ports *ports, remap func(host string) bool) func(string) string {
	own := map[string]string{}
	return func(v string) string {
		return urlHost.ReplaceAllStringFunc(v, func(s string) string {
			sub := urlHost.FindStringSubmatch(s)
			hp := sub[2]
			if to, ok := shared[hp]; ok {
				return sub[1] + to
			}
			if _, ok := own[hp]; !ok {
				h, _, err := net.SplitHostPort(hp)
				if err != nil || (remap != nil && !remap(h)) {
					return s
				}
				own[hp] = ports.take(h)
			}
			return sub[1] + own[hp]
		})
	}
}

// commandArgs are the arguments of a manifest's etcd command as the member
// runs them: its data folder the test's, a path that exists in the host
// folder taken from there, and every URL through mapURLs.
func (mem *Member) commandArgs(command []string, mapURLs func(string) string) []string {
	var args []string
	for _, a := range command[1:] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		switch {
		case !ok:
		case name == "data-dir":
			value = mem.DataDir
		case strings.HasPrefix(value, "/"):
			if _, err := os.Stat(filepath.Join(mem.Bundle, value)); err == nil {
				value = filepath.Join(mem.Bundle, value)
			}
		default:
			value = mapURLs(value)
		}
		if ok {
			a = "--" + name + "=" + value
		}
		args = append(args, a)
	}
	return args
}

// Run starts every host folder in dir that holds a manifest, waits until
// all are ready, and stops them when the test ends.
func Run(tb testing.TB, dir string) *Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts real etcd processes; skipped with -short")
	}
	bin := EtcdBinary(tb)
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{Dir: dir}
	var manifests []*etcdops.Manifest
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		// A static Pod's manifest, or a systemd member's etcd.conf.yml.
		m, err := etcdops.ReadHost(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		manifests = append(manifests, m)
		systemd := filepath.Base(m.Path) == filepath.Base(layout.EtcdConfig)
		c.Members = append(c.Members, &Member{Name: m.Name, Bundle: filepath.Join(dir, e.Name()), Systemd: systemd, bin: bin})
	}
	if len(c.Members) == 0 {
		tb.Fatalf("no host folder with %s or %s in %s", layout.Rel(layout.EtcdManifest), layout.Rel(layout.EtcdConfig), dir)
	}

	originals := make([][]byte, len(manifests))
	for i, m := range manifests {
		if originals[i], err = os.ReadFile(m.Path); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		for _, m := range c.Members {
			m.stop()
		}
		if tb.Failed() {
			for _, m := range c.Members {
				tb.Logf("last lines of %s's log:\n%s", m.Name, tail(m.LogFile, 25))
			}
		}
	})
	// The ports are free when picked, but released before etcd binds
	// them: another process may take one in between. Such a start is
	// tried again on other ports, from fresh data folders.
	for attempt := 1; ; attempt++ {
		err := c.launch(tb, manifests, originals)
		if err == nil {
			return c
		}
		for _, m := range c.Members {
			m.stop()
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			tb.Fatal(err)
		}
		tb.Logf("a port was taken before etcd bound it (%v); starting again on other ports", firstLine(err))
	}
}

// launch gives every member free ports, rewrites the manifests (from
// their original text) to them, starts every member and waits until all
// are ready.
func (c *Cluster) launch(tb testing.TB, manifests []*etcdops.Manifest, originals [][]byte) error {
	tb.Helper()
	// Every member address keeps its address and gets free ports.
	ports := newPorts(tb)
	shared := map[string]string{}
	for _, m := range manifests {
		if len(m.PeerURLs) == 0 {
			tb.Fatalf("%s: no --initial-advertise-peer-urls", m.Path)
		}
		u, err := url.Parse(m.PeerURLs[0])
		if err != nil {
			tb.Fatal(err)
		}
		host := u.Hostname()
		for _, p := range []int{2379, 2380} {
			shared[net.JoinHostPort(host, strconv.Itoa(p))] = ports.take(host)
		}
	}
	for i, m := range manifests {
		mem := c.Members[i]
		// Loopback listeners such as the metrics port would clash between
		// members, and a member's own addresses serve on the test's ports:
		// each member gets its own port for every address not shared.
		mapURLs := urlMapper(shared, ports, nil)
		mem.DataDir = filepath.Join(tb.TempDir(), "data")
		mem.LogFile = filepath.Join(tb.TempDir(), m.Name+".log")
		mem.args = mem.commandArgs(m.Command, mapURLs)
		mem.ClientURL = mapURLs(m.ClientURLs[0])
		mem.PeerURL = mapURLs(m.PeerURLs[0])
		if v, ok := m.Flag("listen-metrics-urls"); ok {
			mem.MetricsURL = strings.Split(mapURLs(v), ",")[0]
		} else {
			mem.MetricsURL = "http://" + ports.take("127.0.0.1")
			mem.args = append(mem.args, "--listen-metrics-urls="+mem.MetricsURL)
		}
		if mem.Systemd {
			file, err := mem.configFile(originals[i], tb.TempDir(), mapURLs)
			if err != nil {
				tb.Fatal(err)
			}
			mem.args = []string{"--config-file=" + file}
		}
		// The manifest now names the ports the member really serves on.
		data := urlHost.ReplaceAllFunc(originals[i], func(s []byte) []byte {
			sub := urlHost.FindSubmatch(s)
			if to, ok := shared[string(sub[2])]; ok {
				return append(append([]byte{}, sub[1]...), to...)
			}
			return s
		})
		if err := os.WriteFile(m.Path, data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	ports.release()

	for _, m := range c.Members {
		if err := m.start(); err != nil {
			return err
		}
	}
	for _, m := range c.Members {
		if err := m.waitReady(StartTimeout, c.Members); err != nil {
			return err
		}
	}
	return nil
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// Stop stops a member (SIGTERM, then SIGKILL) and waits for it to exit.
func (c *Cluster) Stop(tb testing.TB, name string) {
	tb.Helper()
	m := c.Member(name)
	if m == nil {
		tb.Fatalf("no member %s", name)
	}
	m.stop()
}

// Start starts a stopped member again on its data and waits until ready.
func (c *Cluster) Start(tb testing.TB, name string) {
	tb.Helper()
	m := c.Member(name)
	if m == nil {
		tb.Fatalf("no member %s", name)
	}
	if err := m.start(); err != nil {
		tb.Fatal(err)
	}
	if err := m.waitReady(StartTimeout, []*Member{m}); err != nil {
		tb.Fatal(err)
	}
}

func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = false
	return m.startLocked()
}

func (m *Member) startLocked() error {
	if m.proc != nil && !m.proc.Exited() {
		return nil
	}
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("etcd log: %w", err)
	}
	p, err := StartProcess(exec.Command(m.binary(), m.args...), logf)
	if err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	m.proc = p
	if m.pidFile != "" {
		if err := os.WriteFile(m.pidFile, []byte(strconv.Itoa(p.Pid())+"\n"), 0o600); err != nil {
			return fmt.Errorf("etcd %s: pid file: %w", m.Name, err)
		}
	}
	return nil
}

func (m *Member) stop() {
	m.mu.Lock()
	m.stopped = true
	p := m.proc
	m.mu.Unlock()
	if p != nil {
		_ = p.Stop(context.Background(), 10*time.Second)
	}
}

// waitReady polls /readyz, which needs a leader and a linearizable read.
// It gives up at once when one of the members started with it exits.
func (m *Member) waitReady(timeout time.Duration, started []*Member) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, o := range started {
			if p := o.process(); p.Exited() {
				return fmt.Errorf("etcd %s exited: %v\n%s", o.Name, p.Err(), tail(o.LogFile, 25))
			}
		}
		resp, err := client.Get(m.MetricsURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("etcd %s not ready within %v\n%s", m.Name, timeout, tail(m.LogFile, 25))
}

// ports hands out free ports, holding each listener until release so that
// no port is given twice.
type ports struct {
	tb        testing.TB
	listeners []net.Listener
}

func newPorts(tb testing.TB) *ports { return &ports{tb: tb} }

func (p *ports) take(host string) string {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		p.tb.Fatalf("free port on %s: %v", host, err)
	}
	p.listeners = append(p.listeners, l)
	return l.Addr().String()
}

func (p *ports) release() {
	for _, l := range p.listeners {
		l.Close()
	}
}

func tail(file string, n int) string {
	f, err := os.Open(file)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
