package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is how hosts are isolated from each other.
type Mode string

const (
	// ModeNamespace gives every host its own network namespace.
	ModeNamespace Mode = "namespace"
	// ModeLoopback runs every host on a 127.x.y.z address of this machine;
	// used only where namespaces cannot be made (not root, no ip(8)).
	ModeLoopback Mode = "loopback"
)

// Family picks the address family of a cluster.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// Host is one etcd host: the NAME=ADDRESS pair given to the CLI.
type Host struct {
	Name    string
	Address string
}

// HostsFlag is the value of `--hosts`.
func HostsFlag(hosts []Host) string {
	parts := make([]string, len(hosts))
	for i, h := range hosts {
		parts[i] = h.Name + "=" + h.Address
	}
	return strings.Join(parts, ",")
}

// hostNet is one host's network: its namespace and the hub's end of its link.
type hostNet struct {
	Host
	addr netip.Addr
	// ns and hubLink are empty in loopback mode.
	ns      NetNS
	hubLink string
}

// DialContext connects from the host's own network.
func (h *hostNet) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if h.ns.Name == "" {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return h.ns.DialContext(ctx, network, addr)
}

// Lab is the network of one test: the hub and the hosts wired to it.
type Lab struct {
	t    testing.TB
	mode Mode
	// id prefixes every namespace name; it carries our pid for SweepStale.
	id  string
	hub NetNS
	// loopbackNet is the random 127.a.b.0/24 of a loopback-mode lab, so that
	// parallel labs do not share addresses.
	loopbackNet [3]byte

	mu    sync.Mutex
	hosts map[string]*hostNet
	// hubAddrs are the hub's addresses on the bridge, one per subnet.
	hubAddrs map[netip.Prefix]netip.Addr
	// links counts the hosts wired so far; it numbers namespaces and links.
	links int
	// issued are the addresses Hosts and NextHost handed out, wired or not.
	issued []netip.Addr
}

// Bridge and link names inside the hub namespace; names only need to be
// unique per namespace, so no interface is ever made in the root namespace.
const hubBridge = "br0"

// NewLab decides the mode and, in namespace mode, makes the hub namespace
// with its bridge. Everything is removed when the test ends.
func NewLab(t testing.TB) *Lab {
	t.Helper()
	l := &Lab{
		t:        t,
		id:       fmt.Sprintf("%s%d-%06x", NamePrefix, os.Getpid(), rand.Uint32()&0xffffff),
		hosts:    map[string]*hostNet{},
		hubAddrs: map[netip.Prefix]netip.Addr{},
	}
	reason := namespaceUnavailable()
	if reason == "" {
		l.mode = ModeNamespace
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		t.Cleanup(l.cleanup)
		if err := l.makeHub(ctx); err != nil {
			t.Fatalf("namespace mode: make hub namespace: %v", err)
		}
		t.Logf("namespace mode: one network namespace per host, bridged in hub namespace %s", l.hub.Name)
		return l
	}
	if InCI() {
		t.Fatalf("namespace mode is required in CI but unavailable: %s", reason)
	}
	l.mode = ModeLoopback
	l.loopbackNet = [3]byte{127, byte(1 + rand.IntN(254)), byte(1 + rand.IntN(254))}
	t.Logf("loopback fallback: %s; hosts run on 127.%d.%d.x of this machine, with paths and the metrics address rewritten per host; 127.0.0.1 is in every server and peer certificate's SANs anyway",
		reason, l.loopbackNet[1], l.loopbackNet[2])
	return l
}

// namespaceUnavailable says why namespace mode cannot run, or "" if it can.
// E2E_MODE=loopback forces the fallback, to check it on a machine that
// could run namespaces.
func namespaceUnavailable() string {
	if os.Getenv("E2E_MODE") == string(ModeLoopback) {
		return "E2E_MODE=loopback"
	}
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	for _, tool := range []string{"ip", "unshare", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found"
		}
	}
	return ""
}

// Mode reports how the lab isolates hosts.
func (l *Lab) Mode() Mode { return l.mode }

// RequireNamespaces skips a test that only makes sense with real links.
func (l *Lab) RequireNamespaces(t testing.TB, why string) {
	t.Helper()
	if l.mode != ModeNamespace {
		t.Skipf("loopback fallback: %s needs namespace mode", why)
	}
}

func (l *Lab) makeHub(ctx context.Context) error {
	hub, err := addNetNS(ctx, l.id+"-hub")
	l.hub = hub
	if err != nil {
		return err
	}
	// No multicast snooping: IPv6 neighbour discovery must pass from the
	// first packet, before any MLD report.
	if err := ip(ctx, "-n", hub.Name, "link", "add", hubBridge, "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	return ip(ctx, "-n", hub.Name, "link", "set", hubBridge, "up")
}

// Hosts names n hosts etcd01..etcdNN with addresses that this lab can give
// them: the HA guide's 10.107.88.15 on, or fd00:e2e::1 on, in namespace
// mode; 127.a.b.11 on in loopback mode, where IPv6 skips the test.
func (l *Lab) Hosts(t testing.TB, n int, family Family) []Host {
	t.Helper()
	var first netip.Addr
	switch {
	case l.mode == ModeLoopback && family == IPv6:
		t.Skip("loopback fallback: only ::1 exists on the loopback device; an IPv6 cluster needs namespace mode")
	case l.mode == ModeLoopback:
		first = netip.AddrFrom4([4]byte{l.loopbackNet[0], l.loopbackNet[1], l.loopbackNet[2], 11})
	case family == IPv6:
		first = netip.MustParseAddr("fd00:e2e::1")
	default:
		first = netip.MustParseAddr("10.107.88.15")
	}
	hosts := make([]Host, n)
	a := first
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range hosts {
		hosts[i] = Host{Name: fmt.Sprintf("etcd%02d", i+1), Address: a.String()}
		l.issued = append(l.issued, a)
		a = a.Next()
	}
	return hosts
}

// NextHost names one more host with the next free address after every
// address the lab has handed out or wired, in the same subnet: the host a
// scale-out adds. Without earlier hosts it starts where Hosts would (IPv4).
func (l *Lab) NextHost(t testing.TB, name string) Host {
	t.Helper()
	l.mu.Lock()
	var last netip.Addr
	taken := map[string]bool{}
	for _, a := range l.issued {
		if !last.IsValid() || last.Less(a) {
			last = a
		}
	}
	for _, h := range l.hosts {
		taken[h.Name] = true
		if !last.IsValid() || last.Less(h.addr) {
			last = h.addr
		}
	}
	l.mu.Unlock()
	if taken[name] {
		t.Fatalf("host %s is wired already", name)
	}
	if !last.IsValid() {
		return l.Hosts(t, 1, IPv4)[0]
	}
	next := last.Next()
	p := subnetOf(last)
	if !p.Contains(next) || next == lastAddr(p) {
		t.Fatalf("no free host address left in %s after %s", p, last)
	}
	l.mu.Lock()
	l.issued = append(l.issued, next)
	l.mu.Unlock()
	return Host{Name: name, Address: next.String()}
}

// subnetOf is the on-link prefix a host address gets: /24 or /64.
func subnetOf(a netip.Addr) netip.Prefix {
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits) // bits is valid for the family
	return p
}

// Wire gives every host its namespace, a veth link into the hub's bridge
// and its address. Hosts in different subnets reach each other through
// on-link routes over the same bridge.
func (l *Lab) Wire(hosts []Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	var added []*hostNet
	used := map[netip.Addr]bool{}
	for _, h := range l.hosts {
		used[h.addr] = true
	}
	for _, h := range hosts {
		if _, dup := l.hosts[h.Name]; dup {
			return fmt.Errorf("host %s is wired already", h.Name)
		}
		addr, err := netip.ParseAddr(h.Address)
		if err != nil {
			return fmt.Errorf("host %s: address: %w", h.Name, err)
		}
		addr = addr.Unmap()
		if used[addr] {
			return fmt.Errorf("host %s: address %s is used twice", h.Name, addr)
		}
		used[addr] = true
		if l.mode == ModeLoopback && !addr.IsLoopback() {
			return fmt.Errorf("loopback fallback: host %s address %s is not on the loopback device", h.Name, addr)
		}
		hn := &hostNet{Host: h, addr: addr}
		l.hosts[h.Name] = hn
		added = append(added, hn)
	}
	if l.mode == ModeLoopback {
		return nil
	}
	subnets := map[netip.Prefix]bool{}
	for _, h := range l.hosts {
		subnets[subnetOf(h.addr)] = true
	}
	for p := range subnets {
		if err := l.hubAddress(ctx, p, used); err != nil {
			return err
		}
	}
	for _, h := range added {
		l.links++
		if err := l.wireHost(ctx, h, l.links); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	// Every host, old and new, needs a route to every subnet.
	for _, h := range l.hosts {
		for p := range subnets {
			if p == subnetOf(h.addr) {
				continue
			}
			if err := ip(ctx, "-n", h.ns.Name, "route", "replace", p.String(), "dev", "eth0"); err != nil {
				return fmt.Errorf("host %s: %w", h.Name, err)
			}
		}
	}
	return nil
}

// hubAddress gives the hub an address in the subnet, the highest one no host
// uses, so that the test's clients can reach the members from the hub.
func (l *Lab) hubAddress(ctx context.Context, p netip.Prefix, used map[netip.Addr]bool) error {
	if old, ok := l.hubAddrs[p]; ok && !used[old] {
		return nil
	} else if ok {
		return fmt.Errorf("a host takes the hub's address %s", old)
	}
	a := lastAddr(p)
	for used[a] {
		a = a.Prev()
		if !p.Contains(a) || a == p.Addr() {
			return fmt.Errorf("no free address for the hub in %s", p)
		}
	}
	args := []string{"-n", l.hub.Name, "addr", "add", netip.PrefixFrom(a, p.Bits()).String(), "dev", hubBridge}
	if a.Is6() {
		// Duplicate address detection would hold the address back for
		// seconds; the lab owns the whole subnet.
		args = append(args, "nodad")
	}
	if err := ip(ctx, args...); err != nil {
		return err
	}
	l.hubAddrs[p] = a
	return nil
}

// lastAddr is the last usable address: x.y.z.254 or prefix::ffff:ffff:ffff:fffe.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits() / 8; i < len(b); i++ {
		b[i] = 0xff
	}
	a, _ := netip.AddrFromSlice(b)
	return a.Prev()
}

func (l *Lab) wireHost(ctx context.Context, h *hostNet, index int) error {
	ns, err := addNetNS(ctx, fmt.Sprintf("%s-m%d", l.id, index))
	h.ns = ns
	if err != nil {
		return err
	}
	h.hubLink = "v" + strconv.Itoa(index)
	steps := [][]string{
		{"-n", l.hub.Name, "link", "add", h.hubLink, "type", "veth", "peer", "name", "eth0", "netns", ns.Name},
		{"-n", l.hub.Name, "link", "set", h.hubLink, "master", hubBridge},
		{"-n", l.hub.Name, "link", "set", h.hubLink, "up"},
	}
	addr := []string{"-n", ns.Name, "addr", "add", netip.PrefixFrom(h.addr, subnetOf(h.addr).Bits()).String(), "dev", "eth0"}
	if h.addr.Is6() {
		addr = append(addr, "nodad")
	}
	steps = append(steps, addr, []string{"-n", ns.Name, "link", "set", "eth0", "up"})
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) host(name string) (*hostNet, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.hosts[name]
	if !ok {
		return nil, fmt.Errorf("host %s is not wired", name)
	}
	return h, nil
}

// CutLink takes the hub's end of the host's link down: the host keeps its
// address and its processes, but no packet reaches it or leaves it.
func (l *Lab) CutLink(name string) error { return l.setLink(name, "down") }

// RestoreLink brings the host's link back.
func (l *Lab) RestoreLink(name string) error { return l.setLink(name, "up") }

func (l *Lab) setLink(name, state string) error {
	if l.mode != ModeNamespace {
		return errors.New("links exist only in namespace mode")
	}
	h, err := l.host(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ip(ctx, "-n", l.hub.Name, "link", "set", h.hubLink, state); err != nil {
		return fmt.Errorf("set the link of %s %s: %w", name, state, err)
	}
	return nil
}

// Blackhole makes the host drop, without a word, every packet it would send
// to the hub, where the test's clients live: a route of type blackhole in
// the host's own namespace swallows its SYN-ACKs, resets and ICMP errors
// alike, so a client's connection attempt hangs as it does towards a
// firewall that drops. The host still reaches the other hosts, so its
// member stays in the cluster. Unblackhole removes the route.
func (l *Lab) Blackhole(name string) error { return l.blackholeRoute(name, "add") }

// Unblackhole lets the host answer the hub again.
func (l *Lab) Unblackhole(name string) error { return l.blackholeRoute(name, "del") }

func (l *Lab) blackholeRoute(name, op string) error {
	if l.mode != ModeNamespace {
		return errors.New("blackholing needs namespace mode")
	}
	h, err := l.host(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	hub, ok := l.hubAddrs[subnetOf(h.addr)]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("host %s: the hub has no address in its subnet", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := netip.PrefixFrom(hub, hub.BitLen()).String()
	if err := ip(ctx, "-n", h.ns.Name, "route", op, "blackhole", dst); err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	return nil
}

// DialContext connects from the hub, where the test's clients live.
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if l.mode != ModeNamespace {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return l.hub.DialContext(ctx, network, addr)
}

// Command runs a program from the hub.
func (l *Lab) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if l.mode != ModeNamespace {
		return exec.CommandContext(ctx, name, args...)
	}
	return l.hub.Command(ctx, name, args...)
}

// Start starts cmd in the hub's network, as Command would, but with no
// ip(8) in between: the process is forked from a thread inside the hub's
// namespace, and a child keeps the namespaces of the thread that made it.
// The time until the program runs is then the program's own start.
func (l *Lab) Start(cmd *exec.Cmd) error {
	if l.mode != ModeNamespace {
		return cmd.Start()
	}
	return l.hub.Do(cmd.Start)
}

// cleanup removes the hosts' namespaces, then the hub. Processes still in
// them are killed; deleting a namespace takes its links with it.
func (l *Lab) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.ns.Name != "" {
			if err := deleteNetNS(ctx, h.ns.Name); err != nil {
				l.t.Errorf("cleanup: %v", err)
			}
		}
	}
	if l.hub.Name != "" {
		if err := deleteNetNS(ctx, l.hub.Name); err != nil {
			l.t.Errorf("cleanup: %v", err)
		}
	}
}
