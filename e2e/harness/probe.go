package harness

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ProbeKind names the three probes of a container.
type ProbeKind string

const (
	Startup   ProbeKind = "startup"
	Readiness ProbeKind = "readiness"
	Liveness  ProbeKind = "liveness"
)

// probeTarget is an httpGet probe resolved against its container.
type probeTarget struct {
	kind    ProbeKind
	url     string
	headers http.Header
	timeout time.Duration
	// budget is how long kubelet would keep failing the probe before it
	// acts: initialDelaySeconds + failureThreshold × periodSeconds.
	budget time.Duration
}

// resolveProbe turns a container probe into a URL as kubelet does: the
// port by name from the container's ports, an empty host meaning the Pod's
// address (the host's, with hostNetwork), and kubelet's defaults for unset
// timings. host replaces a loopback host in loopback mode.
func resolveProbe(kind ProbeKind, p *corev1.Probe, c corev1.Container, podAddr string, loopbackHost string) (*probeTarget, error) {
	if p == nil {
		return nil, nil
	}
	g := p.HTTPGet
	if g == nil {
		return nil, fmt.Errorf("%s probe: only httpGet probes are supported", kind)
	}
	port, err := probePort(g.Port, c)
	if err != nil {
		return nil, fmt.Errorf("%s probe: %w", kind, err)
	}
	host := g.Host
	if host == "" {
		host = podAddr
	}
	if loopbackHost != "" && isLoopbackHost(host) {
		host = loopbackHost
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
	headers := http.Header{}
	for _, h := range g.HTTPHeaders {
		headers.Add(h.Name, h.Value)
	}
	if headers.Get("User-Agent") == "" {
		headers.Set("User-Agent", "kube-probe/1.36")
	}
	if headers.Get("Accept") == "" {
		headers.Set("Accept", "*/*")
	}
	timeout := time.Duration(orDefault(p.TimeoutSeconds, 1)) * time.Second
	period := time.Duration(orDefault(p.PeriodSeconds, 10)) * time.Second
	failures := orDefault(p.FailureThreshold, 3)
	return &probeTarget{
		kind:    kind,
		url:     u.String(),
		headers: headers,
		timeout: timeout,
		budget:  time.Duration(p.InitialDelaySeconds)*time.Second + time.Duration(failures)*period,
	}, nil
}

func orDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

// probePort resolves a numeric port or a port name of the container.
func probePort(port intstr.IntOrString, c corev1.Container) (int, error) {
	if port.Type == intstr.Int {
		if port.IntVal <= 0 || port.IntVal > 65535 {
			return 0, fmt.Errorf("port %d is out of range", port.IntVal)
		}
		return int(port.IntVal), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("port %q is not the name of a container port", port.StrVal)
}

// check runs one probe attempt through dial, with kubelet's rules: a status
// from 200 to 399 succeeds, redirects are followed, and an HTTPS server's
// certificate is not verified.
func (p *probeTarget) check(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	client := &http.Client{
		Timeout: p.timeout,
		Transport: &http.Transport{
			DialContext:       dial,
			DisableKeepAlives: true,
			// kubelet does not verify probe targets' certificates.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("%s probe %s: %w", p.kind, p.url, err)
	}
	req.Header = p.headers.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s probe %s: %w", p.kind, p.url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%s probe %s: HTTP %d: %s", p.kind, p.url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
