package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Cluster is the members of one bundle, running in a lab.
type Cluster struct {
	Lab    *Lab
	Bundle Bundle
	// Members may be read freely by the test; AddMember and RemoveMember
	// change it under mu, which the kubelet emulation reads it under.
	Members []*Member
	started time.Time
	t       testing.TB
	tools   Tools

	mu sync.Mutex
	// removed members still show their logs when the test fails.
	removed []*Member
}

// StartCluster wires every host of the bundle into the lab and starts its
// etcd from its manifest. Members are stopped when the test ends, before
// the lab's namespaces go; the logs of a failed test are printed.
func StartCluster(t testing.TB, lab *Lab, tools Tools, b Bundle) *Cluster {
	t.Helper()
	if err := lab.Wire(b.Hosts); err != nil {
		t.Fatalf("wire hosts: %v", err)
	}
	c := &Cluster{Lab: lab, Bundle: b, t: t, tools: tools}
	scratch := t.TempDir()
	for _, h := range b.Hosts {
		hn, err := lab.host(h.Name)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(scratch, h.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		m, err := newMember(lab, hn, b.HostRoot(h.Name), tools, dir)
		if err != nil {
			t.Fatal(err)
		}
		if rw := m.Rewrites(); len(rw) > 0 {
			t.Logf("loopback fallback: %s: rewrote %d arguments, paths to the host's folders and %s", h.Name, len(rw), rw[metricsRewrite(rw)])
		}
		c.Members = append(c.Members, m)
	}
	t.Cleanup(func() { c.stopAll(t) })
	c.started = time.Now()
	for _, m := range c.Members {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// metricsRewrite finds the --listen-metrics-urls change, the one worth a log line.
func metricsRewrite(rw []string) int {
	for i, r := range rw {
		if strings.HasPrefix(r, "--listen-metrics-urls") {
			return i
		}
	}
	return 0
}

// stopAll kills the members: their data is thrown away, and a graceful
// stop of every member at once spends seconds on leadership transfers
// that cannot succeed.
func (c *Cluster) stopAll(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range c.members() {
		wg.Go(func() {
			if err := m.Kill(ctx); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		for _, m := range append(c.members(), c.removed...) {
			t.Logf("log of %s (last 40 lines):\n%s", m.Name, m.LogTail(40))
		}
	}
}

// members is a copy of Members, safe beside AddMember and RemoveMember.
func (c *Cluster) members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.Members)
}

// AddMember wires one more host into the running lab (its namespace and
// its link into the hub) and starts a member from the host's folder in the
// bundle, which the CLI must have written already. It does not wait for
// the member to be ready; WaitReady on the member does.
func (c *Cluster) AddMember(t testing.TB, h Host) *Member {
	t.Helper()
	if c.Member(h.Name) != nil {
		t.Fatalf("add member: %s is a member already", h.Name)
	}
	if err := c.Lab.Wire([]Host{h}); err != nil {
		t.Fatalf("add member: wire %s: %v", h.Name, err)
	}
	hn, err := c.Lab.host(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), h.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := newMember(c.Lab, hn, c.Bundle.HostRoot(h.Name), c.tools, dir)
	if err != nil {
		t.Fatalf("add member: %v", err)
	}
	c.mu.Lock()
	c.Members = append(c.Members, m)
	c.Bundle.Hosts = append(c.Bundle.Hosts, h)
	c.mu.Unlock()
	if err := m.Start(); err != nil {
		t.Fatalf("add member: %v", err)
	}
	return m
}

// RemoveMember stops the named member gracefully and forgets it: it is no
// longer in Members, in Endpoints or watched by the kubelet emulation.
// Its host stays wired, with no etcd running.
func (c *Cluster) RemoveMember(t testing.TB, name string) {
	t.Helper()
	m := c.Member(name)
	if m == nil {
		t.Fatalf("remove member: %s is not a member", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Stop(ctx, 10*time.Second); err != nil {
		t.Fatalf("remove member: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Members = slices.DeleteFunc(c.Members, func(o *Member) bool { return o == m })
	c.Bundle.Hosts = slices.DeleteFunc(c.Bundle.Hosts, func(h Host) bool { return h.Name == name })
	c.removed = append(c.removed, m)
}

// WaitReady waits for every member's probes and returns the time since the
// members were started.
func (c *Cluster) WaitReady(ctx context.Context) (time.Duration, error) {
	errs := make([]error, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.WaitReady(ctx) })
	}
	wg.Wait()
	return time.Since(c.started), errors.Join(errs...)
}

// Member returns the member of the named host.
func (c *Cluster) Member(name string) *Member {
	for _, m := range c.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Endpoints are the advertised client URLs of the named members, or of
// all members, as their manifests state them.
func (c *Cluster) Endpoints(names ...string) []string {
	var eps []string
	for _, m := range c.Members {
		if len(names) == 0 || slices.Contains(names, m.Name) {
			eps = append(eps, m.ClientURL())
		}
	}
	return eps
}

// Client connects to the endpoints from the hub with the credentials.
func (l *Lab) Client(creds Credentials, endpoints ...string) (*clientv3.Client, error) {
	tlsCfg, err := creds.TLSConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		// Sockets are made in the hub, the only place the hosts are reachable from.
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return l.DialContext(ctx, "tcp", addr)
		})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// TLSHandshake connects to an https endpoint from the hub, completes the
// TLS handshake and reads once, so that a server that refuses the client's
// certificate after the handshake (TLS 1.3) is seen too. It returns the
// first error; a server that accepts the client ends in a read timeout.
func (l *Lab) TLSHandshake(ctx context.Context, endpoint string, creds Credentials) error {
	conn, err := l.dialTLS(ctx, endpoint, creds)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return fmt.Errorf("read from %s after the handshake: %w", endpoint, err)
	}
	return nil
}

// ServerCertificate is the certificate an https endpoint presents.
func (l *Lab) ServerCertificate(ctx context.Context, endpoint string, creds Credentials) (*x509.Certificate, error) {
	conn, err := l.dialTLS(ctx, endpoint, creds)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func (l *Lab) dialTLS(ctx context.Context, endpoint string, creds Credentials) (*tls.Conn, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	cfg, err := creds.TLSConfig()
	if err != nil {
		return nil, err
	}
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = u.Hostname()
	raw, err := l.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	deadline := time.Now().Add(3 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := raw.SetDeadline(deadline); err != nil {
		raw.Close()
		return nil, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", u.Host, err)
	}
	return conn, nil
}
