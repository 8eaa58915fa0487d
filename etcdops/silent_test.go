package etcdops_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// TestSilentEndpoint checks an endpoint whose process never answers: a
// listening socket nobody accepts from, which is what the kernel shows of a
// frozen etcd (connections complete, the TLS handshake never does), and a
// closed port. Every operation ends by the caller's deadline plus 100 ms,
// with the reason found beside the request rather than after it.
func TestSilentEndpoint(t *testing.T) {
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(etcdtest.CLIBinary(t)), 1)
	pki := filepath.Join(dir, "etcd01", "etc", "kubernetes", "pki", "etcd")
	frozen, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "https://" + closed.Addr().String()
	closed.Close()

	const timeout = time.Second
	const slack = 100 * time.Millisecond
	for _, tc := range []struct {
		name, endpoint, why string
	}{
		{"frozen", "https://" + frozen.Addr().String(), "the TLS handshake got no answer"},
		{"closed", closedURL, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt := resolve(t, etcdops.Options{
				Endpoints: []string{tc.endpoint},
				CACert:    filepath.Join(pki, "ca.crt"),
				Cert:      filepath.Join(pki, "healthcheck-client.crt"),
				Key:       filepath.Join(pki, "healthcheck-client.key"),
				Timeout:   timeout,
			})
			// Each within a deadline of its own, as each command has one.
			within := func(what string, op func(ctx context.Context) string) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				start := time.Now()
				msg := op(ctx)
				if took := time.Since(start); took > timeout+slack {
					t.Errorf("%s took %s, more than the deadline %s plus %s", what, took, timeout, slack)
				}
				if !strings.Contains(msg, "no answer within 1s") || !strings.Contains(msg, tc.why) {
					t.Errorf("%s: %q, want the timeout and %q", what, msg, tc.why)
				}
			}
			within("health", func(ctx context.Context) string { return etcdops.Health(ctx, tgt)[0].Error })
			within("status", func(ctx context.Context) string { return etcdops.Status(ctx, tgt)[0].Error })
			within("member list", func(ctx context.Context) string {
				_, err := etcdops.Members(ctx, tgt)
				if err == nil {
					return ""
				}
				return err.Error()
			})
		})
	}
}
