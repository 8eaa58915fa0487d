package etcdops

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Explaining a request that gets no answer. The client only reports that
// the deadline passed, while what the user needs is the reason: a refused
// connection, a certificate one side rejects, a connection that is never
// accepted (packets dropped) or a handshake that is never answered (a hung
// process). A probe of the endpoint finds it out beside the request, under
// the same deadline, so that the explanation is ready when the request
// gives up instead of costing time after it.

// probeDelay is how long a request may go unanswered before the probe
// starts: a member that answers at once is spared the extra connection,
// and the probe still has most of the request's time to find the reason.
func probeDelay(timeout time.Duration) time.Duration {
	return min(timeout/4, 250*time.Millisecond)
}

// alertWait is how long the probe waits after its handshake for the
// server's verdict on the client certificate: with TLS 1.3 the server
// checks it only after the client's side of the handshake is done.
const alertWait = 300 * time.Millisecond

// explainer probes one endpoint beside a request to it.
type explainer struct {
	timeout time.Duration
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // the probe's finding; set before done is closed
	// earlier is what finding the members learned of the endpoint, for a
	// request that had no time left to probe it.
	earlier error
}

// explainer starts probing endpoint once the request, bounded by ctx, has
// gone unanswered for probeDelay. The probe never outlives ctx. Call
// explain with the request's error, or stop when the request succeeded.
func (t *Target) explainer(ctx context.Context, endpoint string) *explainer {
	ctx, cancel := context.WithCancel(ctx)
	e := &explainer{timeout: t.Timeout, cancel: cancel, done: make(chan struct{}), earlier: t.unreachable[endpoint]}
	go func() {
		defer close(e.done)
		timer := time.NewTimer(probeDelay(t.Timeout))
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		e.err = t.probe(ctx, endpoint)
	}()
	return e
}

// endpointRequest is one request to one endpoint: its client, the context
// that bounds it by the target's timeout, and the probe that explains a
// silence.
type endpointRequest struct {
	cli    *clientv3.Client
	ctx    context.Context
	ex     *explainer
	cancel context.CancelFunc
}

// request opens a client on endpoint for one request within t.Timeout.
func (t *Target) request(ctx context.Context, endpoint string) (*endpointRequest, error) {
	cli, err := t.Client(endpoint)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	return &endpointRequest{cli: cli, ctx: ctx, ex: t.explainer(ctx, endpoint), cancel: cancel}, nil
}

// close ends the probe, the deadline and the client, in that order.
func (r *endpointRequest) close() {
	r.ex.stop()
	r.cancel()
	r.cli.Close()
}

// stop ends the probe; the request no longer needs it.
func (e *explainer) stop() { e.cancel() }

// explain turns the request's error into one line and, when it only says
// that no answer came in time, adds what the probe found by then. It
// returns as soon as the probe has noticed the end of its context, which
// is at once when the request's deadline has passed.
func (e *explainer) explain(err error) error {
	err = cleanError(err, e.timeout)
	e.cancel()
	if !bareTimeout(err) {
		return err
	}
	<-e.done
	if e.err != nil {
		return fmt.Errorf("%w: %v", err, e.err)
	}
	if e.earlier != nil {
		return fmt.Errorf("%w: %v", err, e.earlier)
	}
	return err
}

// bareTimeout reports whether cleanError said only that the time ran out.
func bareTimeout(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "no answer within") && !strings.Contains(msg, ": ")
}

// probe connects to the endpoint's host and port and, when the endpoint
// uses TLS, completes a handshake and waits briefly for an alert. The
// error is the bare reason, such as "connect: connection refused", or, when
// ctx ends first, the step that got no answer. Endpoints that are not TCP
// are not probed.
func (t *Target) probe(ctx context.Context, endpoint string) error {
	hostport := endpoint
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		hostport = u.Host
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no TCP connection to %s: nothing answered (packets dropped, or the host is down)", hostport)
		}
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			return oe.Err
		}
		return err
	}
	defer conn.Close()
	// The connection's reads and writes end with ctx, whatever its deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if t.tls == nil || strings.HasPrefix(endpoint, "http://") {
		return nil
	}
	cfg := t.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("the connection to %s was accepted but the TLS handshake got no answer (the process does not respond)", hostport)
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	deadline := time.Now().Add(alertWait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = tc.SetReadDeadline(deadline)
	if ctx.Err() != nil {
		// ctx may have ended before the deadline above replaced the one
		// that stops the read.
		return nil
	}
	if _, err := tc.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "tls:") {
		return fmt.Errorf("TLS: %w", err)
	}
	return nil
}
