package kube

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Forward is a local TCP port whose connections reach a port of a Pod
// through the API server, as with kubectl port-forward. The tunnel is
// dialled when the first connection comes and dialled again after it is
// lost, so a Pod that restarts, or a port not listening yet, costs the
// connections of that moment and not the Forward. (client-go's
// PortForwarder closes its whole tunnel on the first refused connection,
// which would end access to a member that was merely restarting.)
type Forward struct {
	// Pod and Port are the far end.
	Pod  string
	Port int
	// Addr is the local HOST:PORT (on 127.0.0.1) to connect to.
	Addr string

	dialer   httpstream.Dialer
	listener net.Listener

	mu        sync.Mutex
	conn      httpstream.Connection
	requestID int
	closed    bool
	wg        sync.WaitGroup
	// lastErr is why the last connection could not be forwarded.
	lastErr error
}

// Forward opens a local port on 127.0.0.1 forwarding to the Pod's port.
// The Pod must exist and run; the tunnel itself is made on the first
// connection. Close ends it.
func (c *Client) Forward(ctx context.Context, pod string, port int) (*Forward, error) {
	p, err := c.Pod(ctx, pod)
	if err != nil {
		return nil, err
	}
	if p.Status.Phase != corev1.PodRunning {
		return nil, fmt.Errorf("port-forward to Pod %s/%s: the Pod is %s, not Running", c.Namespace, pod, p.Status.Phase)
	}
	dialer, err := c.portForwardDialer(pod)
	if err != nil {
		return nil, fmt.Errorf("port-forward to Pod %s/%s: %w", c.Namespace, pod, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("port-forward to Pod %s/%s: local port: %w", c.Namespace, pod, err)
	}
	f := &Forward{Pod: pod, Port: port, Addr: l.Addr().String(), dialer: dialer, listener: l}
	f.wg.Go(f.accept)
	return f, nil
}

// portForwardDialer is kubectl's: WebSockets (SPDY tunnelled through them)
// first, then SPDY when the API server does not upgrade to WebSockets.
func (c *Client) portForwardDialer(pod string) (httpstream.Dialer, error) {
	u := c.Clientset.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(c.Namespace).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(c.config)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, c.config)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialer(ws, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}

// Close stops listening, ends the tunnel and waits for the connections in
// flight to end.
func (f *Forward) Close() {
	f.mu.Lock()
	f.closed = true
	conn := f.conn
	f.conn = nil
	f.mu.Unlock()
	_ = f.listener.Close()
	if conn != nil {
		_ = conn.Close()
	}
	f.wg.Wait()
}

// Err is why the last connection could not be forwarded, if it could not.
func (f *Forward) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

func (f *Forward) accept() {
	for {
		local, err := f.listener.Accept()
		if err != nil {
			return // closed
		}
		f.wg.Go(func() { f.handle(local) })
	}
}

// tunnel returns the live tunnel, dialling one when there is none or the
// last one was lost.
func (f *Forward) tunnel() (httpstream.Connection, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, 0, net.ErrClosed
	}
	if f.conn != nil {
		select {
		case <-f.conn.CloseChan():
			f.conn = nil
		default:
		}
	}
	if f.conn == nil {
		conn, proto, err := f.dialer.Dial(portforward.PortForwardProtocolV1Name)
		if err != nil {
			return nil, 0, fmt.Errorf("port-forward to Pod %s: %w", f.Pod, err)
		}
		if proto != portforward.PortForwardProtocolV1Name {
			_ = conn.Close()
			return nil, 0, fmt.Errorf("port-forward to Pod %s: the API server speaks %q, not %q", f.Pod, proto, portforward.PortForwardProtocolV1Name)
		}
		f.conn = conn
	}
	f.requestID++
	return f.conn, f.requestID, nil
}

func (f *Forward) fail(err error) {
	f.mu.Lock()
	f.lastErr = err
	f.mu.Unlock()
}

// handle copies one local connection to and from a pair of streams (error
// and data), as the port-forward protocol has it.
func (f *Forward) handle(local net.Conn) {
	defer local.Close()
	conn, id, err := f.tunnel()
	if err != nil {
		f.fail(err)
		return
	}
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(f.Port))
	headers.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
	errStream, err := conn.CreateStream(headers)
	if err != nil {
		_ = conn.Close() // the tunnel is broken: the next connection dials anew
		f.fail(fmt.Errorf("port-forward to Pod %s: error stream: %w", f.Pod, err))
		return
	}
	_ = errStream.Close() // nothing is written to it
	defer conn.RemoveStreams(errStream)
	remoteErr := make(chan error, 1)
	go func() {
		msg, err := io.ReadAll(errStream)
		switch {
		case err != nil:
			remoteErr <- err
		case len(msg) > 0:
			remoteErr <- fmt.Errorf("%s", msg)
		}
		close(remoteErr)
	}()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		_ = conn.Close()
		f.fail(fmt.Errorf("port-forward to Pod %s: data stream: %w", f.Pod, err))
		return
	}
	defer conn.RemoveStreams(data)
	remoteDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(local, data)
		close(remoteDone)
	}()
	localDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(data, local)
		_ = data.Close() // no more from this side
		close(localDone)
	}()
	select {
	case <-remoteDone:
	case <-localDone:
		// The local side closed its writing half; wait for the Pod's end.
		select {
		case <-remoteDone:
		case <-conn.CloseChan():
		}
	case <-conn.CloseChan():
	}
	_ = data.Reset()
	if err := <-remoteErr; err != nil {
		f.fail(fmt.Errorf("port-forward to Pod %s port %d: %w", f.Pod, f.Port, err))
	}
}
