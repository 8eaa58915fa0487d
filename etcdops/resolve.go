package etcdops

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
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// DefaultTimeout bounds each request and each endpoint's check.
const DefaultTimeout = 5 * time.Second

// Client identities: which certificate pair from the host's folder is shown
// to etcd.
const (
	// IdentityHealthcheck is CERTDIR/etcd/healthcheck-client.{crt,key}, the
	// identity kubeadm gives etcd's own health checks. The default.
	IdentityHealthcheck = "healthcheck-client"
	// IdentityAPIServer is CERTDIR/apiserver-etcd-client.{crt,key}, the
	// identity kube-apiserver uses.
	IdentityAPIServer = "apiserver-etcd-client"
)

// Identities lists the accepted Options.Identity values.
func Identities() []string { return []string{IdentityHealthcheck, IdentityAPIServer} }

// Options say where to find the cluster. The fields mirror the CLI flags of
// the same names, and errors about them name those flags.
type Options struct {
	// Endpoints are client URLs used exactly as given: no member-list lookup.
	Endpoints []string
	// CACert, Cert and Key are TLS files. Each replaces the file of the same
	// role from Bundle; without Bundle they are the only TLS files used.
	CACert, Cert, Key string
	// Bundle is a host folder written by init (DIR/NAME). Its certificates
	// and manifest are used; the other host folders in DIR are the fallback
	// when this host's member does not answer.
	Bundle string
	// Root is a node's filesystem root ("" means "/"): its CERTDIR and
	// etc/kubernetes/manifests/etcd.yaml are read when Bundle is empty.
	Root string
	// Identity is IdentityHealthcheck ("" means that) or IdentityAPIServer.
	Identity string
	// Timeout bounds each request and each endpoint's check; 0 means
	// DefaultTimeout. The context given to Resolve and to each operation
	// bounds the whole: a command that must end by a deadline passes a
	// context that ends then, and every request, probe and check ends with
	// it.
	Timeout time.Duration
}

// RequestTimeout is Timeout, or DefaultTimeout when that is 0.
func (o Options) RequestTimeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// optionErr is bad input: a flag (named without dashes) and its value.
func optionErr(flag, value string, format string, args ...any) error {
	return badinput.New("--"+flag, value, format, args...)
}

// TLSFiles are the paths of the CA bundle and the client pair in use.
type TLSFiles struct {
	CA   string `json:"ca,omitempty"`
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}

// Target is a resolved cluster: where to connect and as whom. Every
// operation takes one, so later commands reuse the discovery.
type Target struct {
	// Endpoints are the client URLs to check, one per member when they came
	// from the member list.
	Endpoints []string
	// Files are the TLS files loaded (paths only).
	Files TLSFiles
	// Source says where the endpoints came from, for messages.
	Source string
	// Members is the member list read while resolving; nil when the
	// endpoints were given or no member answered.
	Members []Member
	// MemberListErr is why no member list could be read, if so; Endpoints
	// are then every manifest's client URLs.
	MemberListErr error
	// Notes are things worth telling the user, such as a fallback taken.
	Notes []string
	// Timeout bounds each request and each endpoint's check.
	Timeout time.Duration

	tls *tls.Config
	// unreachable are the reasons finding the members gave up on
	// endpoints, set before Resolve returns and only read after: a later
	// request that finds no time left to probe its endpoint explains its
	// silence with them.
	unreachable map[string]error
}

// TLSConfig returns a copy of the client TLS settings; nil means plain HTTP.
func (t *Target) TLSConfig() *tls.Config {
	if t.tls == nil {
		return nil
	}
	return t.tls.Clone()
}

// Config is a client configuration for the given endpoints (all of the
// target's when none are given).
func (t *Target) Config(endpoints ...string) clientv3.Config {
	if len(endpoints) == 0 {
		endpoints = t.Endpoints
	}
	return clientv3.Config{
		Endpoints: slices.Clone(endpoints),
		TLS:       t.TLSConfig(),
		// The client's own warnings would interleave with our output; errors
		// reach the caller through return values instead.
		Logger: zap.NewNop(),
		// Surface an unreachable member as an error, not a silent retry
		// loop; every call is bounded by the caller's context anyway.
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: t.Timeout,
	}
}

// Client connects to the given endpoints (all of the target's when none are
// given). The caller closes it. It returns at once: the connection is
// made in the background (no DialTimeout, no blocking dial), so that only
// the contexts of the requests bound the time spent.
func (t *Target) Client(endpoints ...string) (*clientv3.Client, error) {
	cfg := t.Config(endpoints...)
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return cli, nil
}

// NewTarget is a target for endpoints reached some other way than through
// a host's files, such as local ports forwarded to Pods: the client TLS
// settings are given as they are, and no member list is read.
func NewTarget(endpoints []string, cfg *tls.Config, timeout time.Duration, source string) *Target {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if cfg != nil {
		cfg = cfg.Clone()
	}
	return &Target{Endpoints: slices.Clone(endpoints), tls: cfg, Timeout: timeout, Source: source}
}

// Resolve finds the endpoints and TLS settings from the options, reading
// the member list when the endpoints come from a manifest.
func Resolve(ctx context.Context, o Options) (*Target, error) {
	if o.Timeout < 0 {
		return nil, optionErr("timeout", o.Timeout.String(), "must not be negative")
	}
	t := &Target{Timeout: o.RequestTimeout()}
	identity := o.Identity
	if identity == "" {
		identity = IdentityHealthcheck
	}
	if !slices.Contains(Identities(), identity) {
		return nil, optionErr("identity", o.Identity, "want one of %s", strings.Join(Identities(), ", "))
	}
	if (o.Cert == "") != (o.Key == "") {
		if o.Cert == "" {
			return nil, optionErr("key", o.Key, "give --cert with it")
		}
		return nil, optionErr("cert", o.Cert, "give --key with it")
	}
	endpoints, err := parseEndpoints(o.Endpoints)
	if err != nil {
		return nil, err
	}

	// The local files: a bundle's host folder, or a node's root.
	localFlag, local := "root", o.Root
	if o.Bundle != "" {
		localFlag, local = "bundle", o.Bundle
		if fi, err := os.Stat(local); err != nil {
			return nil, optionErr("bundle", local, "%w", err)
		} else if !fi.IsDir() {
			return nil, optionErr("bundle", local, "not a folder; want a host folder such as ./etcd-bundles/etcd01")
		}
	}
	if local == "" {
		local = "/"
	}
	explicitTLS := o.CACert != "" || o.Cert != ""
	needManifest := len(endpoints) == 0
	useLocalTLS := o.Bundle != "" || !explicitTLS
	var m *Manifest
	if needManifest || useLocalTLS {
		// A static Pod's manifest, or a systemd member's etcd.conf.yml.
		m, err = ReadHost(local)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist) && !needManifest && o.Bundle == "":
			// Explicit endpoints on a machine that is not an etcd node: the
			// certificates may still be in the default place.
			m = nil
		case errors.Is(err, os.ErrNotExist):
			return nil, optionErr(localFlag, local, "no %s nor %s; give --bundle DIR/NAME, --root, or --endpoints with --cacert, --cert and --key", layout.Rel(layout.EtcdManifest), layout.Rel(layout.EtcdConfig))
		default:
			return nil, optionErr(localFlag, local, "%w", err)
		}
	}

	if err := t.loadTLS(o, identity, localFlag, local, m, useLocalTLS, endpoints); err != nil {
		return nil, err
	}

	if len(endpoints) > 0 {
		t.Endpoints = endpoints
		t.Source = "--endpoints"
		return t, nil
	}
	if len(m.ClientURLs) == 0 {
		return nil, optionErr(localFlag, local, "%s advertises no client URL (no %s annotation or --advertise-client-urls)", m.Path, AdvertiseClientURLsAnnotation)
	}
	own := seed{name: m.Name, urls: m.ClientURLs}
	var others []seed
	if o.Bundle != "" {
		others = t.siblings(o.Bundle)
		t.Source = "bundle " + o.Bundle
	} else {
		t.Source = "node " + local
	}
	t.discover(ctx, own, others)
	return t, nil
}

// loadTLS picks and loads the CA and client pair; errors name the flag the
// file came from and never show file contents.
func (t *Target) loadTLS(o Options, identity, localFlag, local string, m *Manifest, useLocal bool, endpoints []string) error {
	type file struct{ flag, path string }
	var ca, cert, key file
	if useLocal {
		certDir := layout.DefaultCertDir
		if m != nil {
			certDir = m.CertDir
		}
		base := filepath.Join(local, filepath.FromSlash(certDir))
		ca = file{localFlag, layout.CA.Cert(base)}
		pair := layout.HealthcheckClient
		if identity == IdentityAPIServer {
			pair = layout.APIServerEtcdClient
		}
		cert, key = file{localFlag, pair.Cert(base)}, file{localFlag, pair.Key(base)}
		if o.Bundle == "" && len(endpoints) > 0 && plainOnly(endpoints) {
			if _, err := os.Stat(ca.path); errors.Is(err, os.ErrNotExist) {
				// http:// endpoints from a machine without certificates.
				ca, cert, key = file{}, file{}, file{}
			}
		}
	}
	if o.CACert != "" {
		ca = file{"cacert", o.CACert}
	}
	if o.Cert != "" {
		cert, key = file{"cert", o.Cert}, file{"key", o.Key}
	}
	if ca.path == "" && cert.path == "" {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca.path != "" {
		pem, err := safefile.Read(ca.path)
		if err != nil {
			return optionErr(ca.flag, flagValue(ca.flag, ca.path, local), "read CA certificate: %w%s", err, missingHint(ca.flag, err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return optionErr(ca.flag, flagValue(ca.flag, ca.path, local), "%s holds no PEM certificate", ca.path)
		}
		cfg.RootCAs = pool
		t.Files.CA = ca.path
	}
	if cert.path != "" {
		pair, err := loadKeyPair(cert.path, key.path)
		if err != nil {
			return optionErr(cert.flag, flagValue(cert.flag, cert.path, local), "load client certificate %s and key %s: %w%s", cert.path, key.path, err, missingHint(cert.flag, err))
		}
		cfg.Certificates = []tls.Certificate{pair}
		t.Files.Cert, t.Files.Key = cert.path, key.path
	}
	t.tls = cfg
	return nil
}

// missingHint says how to name the files when the local ones are absent.
func missingHint(flag string, err error) string {
	if (flag == "bundle" || flag == "root") && errors.Is(err, os.ErrNotExist) {
		return "; give --cacert, --cert and --key"
	}
	return ""
}

// flagValue is the value the user typed for the flag a file came from.
func flagValue(flag, path, local string) string {
	if flag == "bundle" || flag == "root" {
		return local
	}
	return path
}

func plainOnly(endpoints []string) bool {
	for _, e := range endpoints {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "unix://") {
			return false
		}
	}
	return true
}

// parseEndpoints checks each URL (or HOST:PORT, as etcdctl accepts).
func parseEndpoints(in []string) ([]string, error) {
	var out []string
	for _, raw := range in {
		for _, e := range strings.Split(raw, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				return nil, optionErr("endpoints", raw, "empty entry in the list")
			}
			if err := checkEndpoint(e); err != nil {
				return nil, optionErr("endpoints", e, "%w", err)
			}
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func checkEndpoint(e string) error {
	hostport := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return errors.New("not a URL")
		}
		switch u.Scheme {
		case "https", "http":
		case "unix", "unixs":
			return nil
		default:
			return fmt.Errorf("scheme %q: want https or http", u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return errors.New("want SCHEME://HOST:PORT with no path")
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return errors.New("want https://HOST:PORT")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1-65535", port)
	}
	return nil
}

// seed is a member known from a manifest.
type seed struct {
	name string
	urls []string
}

// siblings are the other host folders beside bundle that hold a manifest,
// in name order.
func (t *Target) siblings(bundle string) []seed {
	self := filepath.Clean(bundle)
	parent := filepath.Dir(self)
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Notes = append(t.Notes, fmt.Sprintf("cannot list the other hosts in %s: %v", parent, err))
		return nil
	}
	var out []seed
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		if !e.IsDir() || dir == self {
			continue
		}
		m, err := ReadHost(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Notes = append(t.Notes, fmt.Sprintf("skipped host folder %s: %v", dir, err))
			continue
		}
		name := m.Name
		if name == "" {
			name = e.Name()
		}
		if len(m.ClientURLs) > 0 {
			out = append(out, seed{name: name, urls: m.ClientURLs})
		}
	}
	return out
}

// discover reads the member list and takes every member's client URLs as
// the endpoints (etcdctl's --cluster). The own member is asked first; when
// it has not answered within probeDelay, or failed, the others are asked
// together, and the first list that comes wins, so that a member that
// does not answer costs no more than that delay. From then on every
// endpoint is probed too: once each has been found unreachable (refused,
// its certificate refused, ...) nobody can answer, and discover stops
// waiting, leaving the rest of the time to the checks that follow. If
// nobody answers, the manifests' URLs are used so that health and status
// can still report each of them. Everything ends with ctx.
func (t *Target) discover(ctx context.Context, own seed, others []seed) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var names, urls []string
	for _, s := range others {
		names = append(names, s.name)
		urls = append(urls, s.urls...)
	}
	all := appendNew(slices.Clone(own.urls), urls...)
	type answer struct {
		own     bool
		members []Member
		err     error
	}
	// Buffered for both askers, which may finish after discover returned.
	answers := make(chan answer, 2)
	ask := func(own bool, urls []string) {
		go func() {
			ms, err := t.listMembers(ctx, urls, false)
			answers <- answer{own: own, members: ms, err: err}
		}()
	}
	type finding struct {
		endpoint string
		err      error
	}
	// Buffered for every probe, which may finish after discover returned.
	findings := make(chan finding, len(all))
	ask(true, own.urls)
	pending, othersAsked := 1, false
	askOthers := func() {
		if othersAsked {
			return
		}
		othersAsked = true
		if len(urls) > 0 {
			pending++
			ask(false, urls)
		}
		for _, ep := range all {
			go func() { findings <- finding{ep, t.probe(ctx, ep)} }()
		}
	}
	grace := time.NewTimer(probeDelay(t.Timeout))
	defer grace.Stop()
	var ownErr, othersErr error
	unreachable := map[string]error{}
	for pending > 0 && (len(all) == 0 || len(unreachable) < len(all)) {
		select {
		case <-grace.C:
			askOthers()
			continue
		case f := <-findings:
			if f.err != nil {
				unreachable[f.endpoint] = f.err
			}
			continue
		case a := <-answers:
			pending--
			switch {
			case a.err == nil && a.own:
				t.Members = a.members
				t.Endpoints = ClientEndpoints(a.members)
				return
			case a.err == nil:
				t.Members = a.members
				t.Endpoints = appendNew(ClientEndpoints(a.members), own.urls...)
				why := fmt.Sprintf("gave no member list within %v", probeDelay(t.Timeout))
				if ownErr != nil {
					why = fmt.Sprintf("gave no member list (%v)", ownErr)
				}
				t.Notes = append(t.Notes, fmt.Sprintf("%s (%s) %s; found the members through %s", own.name, strings.Join(own.urls, ","), why, strings.Join(names, ", ")))
				return
			case a.own:
				ownErr = a.err
				askOthers()
			default:
				othersErr = a.err
			}
		}
	}
	t.Endpoints = all
	if pending > 0 {
		// Every endpoint was found unreachable before the lists gave up;
		// the askers read t.unreachable, so they end first.
		cancel()
		for ; pending > 0; pending-- {
			<-answers
		}
		t.unreachable = unreachable
		err := unreachableErr(all, unreachable)
		t.MemberListErr = fmt.Errorf("member list from %s: %w", strings.Join(all, ","), err)
		t.Notes = append(t.Notes, fmt.Sprintf("no member can give the member list: %v; checking every manifest's endpoint", err))
		return
	}
	t.unreachable = unreachable
	if len(urls) == 0 {
		t.MemberListErr = fmt.Errorf("member list from %s: %w", strings.Join(own.urls, ","), ownErr)
		t.Notes = append(t.Notes, fmt.Sprintf("could not read the member list (%v); checking the manifest's endpoint only", ownErr))
		return
	}
	t.MemberListErr = fmt.Errorf("member list from %s: %w; from %s: %w", strings.Join(own.urls, ","), ownErr, strings.Join(urls, ","), othersErr)
	t.Notes = append(t.Notes, fmt.Sprintf("no member answered the member list (%v); checking every manifest's endpoint", othersErr))
}

// unreachableErr says why none of endpoints can be reached: one reason
// when they share it, else each endpoint's.
func unreachableErr(endpoints []string, reasons map[string]error) error {
	var each []string
	same := true
	for _, ep := range endpoints {
		each = append(each, fmt.Sprintf("%s: %v", ep, reasons[ep]))
		same = same && reasons[ep].Error() == reasons[endpoints[0]].Error()
	}
	if same && len(endpoints) > 1 {
		return fmt.Errorf("%v at each of %s", reasons[endpoints[0]], strings.Join(endpoints, ", "))
	}
	return errors.New(strings.Join(each, "; "))
}

func appendNew(list []string, more ...string) []string {
	for _, s := range more {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// loadKeyPair is tls.LoadX509KeyPair through safefile: a named pipe or a
// huge file in place of a certificate is refused, not read.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := safefile.Read(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := safefile.Read(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
