// Package stsops runs day 2 of an etcd cluster that runs inside Kubernetes
// as a StatefulSet (runtime statefulset): it reaches each member through a
// port-forward to its Pod, as kubectl port-forward does, with the
// healthcheck client certificate of the bundle folder, for health, status
// and the member list; and it scales the StatefulSet one member at a time,
// changing etcd's membership, the Secret of member certificates, the
// ConfigMap new members read and the StatefulSet's replicas in the order
// that keeps quorum (Scale).
package stsops

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/kube"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// Options say where the bundle folder and the cluster are.
type Options struct {
	// Out is the bundle folder init wrote: cluster.yaml (runtime
	// statefulset), the CA in pki/etcd and statefulset/etcd.yaml, whose
	// Secret NAME-healthcheck-client is the client certificate used.
	Out string
	// Kube finds the Kubernetes API. Its Namespace, when set, must be the
	// spec's: the members' certificates name it.
	Kube kube.Options
	// Timeout bounds each request, to etcd and to the API server; 0 means
	// etcdops.DefaultTimeout.
	Timeout time.Duration
	// Log receives progress lines.
	Log io.Writer
}

// Cluster is an open connection to the StatefulSet's members.
type Cluster struct {
	Spec  *spec.Cluster
	Names statefulset.Names
	Kube  *kube.Client
	// SpecPath is the spec read.
	SpecPath string

	opts  Options
	creds statefulset.Credentials
	tls   *tls.Config

	mu       sync.Mutex
	forwards map[int]*kube.Forward
}

// Open reads the bundle folder's spec and client certificate and connects
// to the Kubernetes API. Forwards to the members are opened as needed;
// Close ends them.
func Open(o Options) (*Cluster, error) {
	if o.Out == "" {
		o.Out = layout.DefaultOut
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Timeout < 0 {
		return nil, badinput.New("--timeout", o.Timeout.String(), "must not be negative")
	}
	if o.Timeout == 0 {
		o.Timeout = etcdops.DefaultTimeout
	}
	r, err := spec.Resolve(spec.Source{Out: o.Out, Required: true})
	if err != nil {
		return nil, err
	}
	c := r.Cluster
	if !c.InKubernetes() {
		return nil, badinput.New("--out", o.Out, "the spec %s is runtime %s, not %s: use the commands without statefulset", r.Path, c.Runtime, spec.RuntimeStatefulSet)
	}
	names := statefulset.NamesOf(c)
	if o.Kube.Namespace != "" && o.Kube.Namespace != names.Namespace {
		return nil, badinput.New("--namespace", o.Kube.Namespace, "the spec %s puts the StatefulSet %s in namespace %s, which its members' certificates name", r.Path, names.StatefulSet(), names.Namespace)
	}
	o.Kube.Namespace = names.Namespace
	if o.Kube.Timeout == 0 {
		o.Kube.Timeout = o.Timeout
	}
	manifest := layout.Bundle(o.Out).StatefulSetManifest()
	stream, err := safefile.Read(manifest)
	if err != nil {
		return nil, badinput.New("--out", o.Out, "the StatefulSet's objects: %v", err)
	}
	creds, err := statefulset.ReadCredentials(c, stream)
	if err != nil {
		return nil, badinput.New("--out", o.Out, "%s: %v", manifest, err)
	}
	tlsConfig, err := clientTLS(creds)
	if err != nil {
		return nil, badinput.New("--out", o.Out, "%s: the healthcheck client certificate: %v", manifest, err)
	}
	kc, err := kube.Connect(o.Kube)
	if err != nil {
		return nil, err
	}
	return &Cluster{Spec: c, Names: names, Kube: kc, SpecPath: r.Path, opts: o, creds: creds, tls: tlsConfig, forwards: map[int]*kube.Forward{}}, nil
}

// clientTLS trusts the CA and shows the healthcheck client certificate.
func clientTLS(creds statefulset.Credentials) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(creds.CA) {
		return nil, fmt.Errorf("no CA certificate")
	}
	pair, err := tls.X509KeyPair(creds.Healthcheck.Cert, creds.Healthcheck.Key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}, nil
}

// Close ends every forward.
func (c *Cluster) Close() {
	c.mu.Lock()
	fs := c.forwards
	c.forwards = map[int]*kube.Forward{}
	c.mu.Unlock()
	for _, f := range fs {
		f.Close()
	}
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.Log, format+"\n", args...)
}

// forward returns the forward to member i's client port, opening it when
// there is none: the Pod must run.
func (c *Cluster) forward(ctx context.Context, i int) (*kube.Forward, error) {
	c.mu.Lock()
	f, ok := c.forwards[i]
	c.mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := c.Kube.Forward(ctx, c.Names.Member(i), spec.ClientPort)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.forwards[i]; ok {
		f.Close()
		return old, nil
	}
	c.forwards[i] = f
	return f, nil
}

// dropForward ends the forward to member i, whose Pod goes away.
func (c *Cluster) dropForward(i int) {
	c.mu.Lock()
	f, ok := c.forwards[i]
	delete(c.forwards, i)
	c.mu.Unlock()
	if ok {
		f.Close()
	}
}

// localURL is the client URL that reaches member i through its forward.
func localURL(f *kube.Forward) string { return "https://" + f.Addr }

// reach opens forwards to the members 0..n-1 whose Pods run, all at once,
// and returns the reasons of those it could not reach, by ordinal.
func (c *Cluster) reach(ctx context.Context, n int) map[int]string {
	why := map[int]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := c.forward(ctx, i); err != nil {
				mu.Lock()
				why[i] = err.Error()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return why
}

// target reaches the cluster through every open forward but those of skip.
func (c *Cluster) target(skip ...int) *etcdops.Target {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ords []int
	for i := range c.forwards {
		if !slices.Contains(skip, i) {
			ords = append(ords, i)
		}
	}
	slices.Sort(ords)
	var eps []string
	for _, i := range ords {
		eps = append(eps, localURL(c.forwards[i]))
	}
	return etcdops.NewTarget(eps, c.tls, c.opts.Timeout, "StatefulSet "+c.Names.Namespace+"/"+c.Names.StatefulSet())
}

// Ordinal is the StatefulSet ordinal of member m: from its name once it
// has started, from its peer URL before.
func (c *Cluster) Ordinal(m etcdops.Member) (int, bool) {
	if m.Started() {
		rest, ok := strings.CutPrefix(m.Name, c.Names.Name+"-")
		if !ok {
			return 0, false
		}
		i, err := strconv.Atoi(rest)
		if err != nil || i < 0 || c.Names.Member(i) != m.Name {
			return 0, false
		}
		return i, true
	}
	for _, u := range m.PeerURLs {
		rest, ok := strings.CutPrefix(u, "https://"+c.Names.Name+"-")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ".")
		i, err := strconv.Atoi(n)
		if err == nil && i >= 0 && c.Names.PeerURL(i) == u {
			return i, true
		}
	}
	return 0, false
}

// local gives each member, for requests from here, the client URL of its
// forward instead of its in-cluster URL; a member without a forward gets
// none.
func (c *Cluster) local(ms []etcdops.Member) []etcdops.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]etcdops.Member, len(ms))
	for k, m := range ms {
		m.ClientURLs = nil
		if i, ok := c.Ordinal(m); ok {
			if f, ok := c.forwards[i]; ok {
				m.ClientURLs = []string{localURL(f)}
			}
		}
		out[k] = m
	}
	return out
}

// replicas reads the StatefulSet's replicas.
func (c *Cluster) replicas(ctx context.Context) (int, error) {
	s, err := c.Kube.StatefulSet(ctx, c.Names.StatefulSet())
	if err != nil {
		return 0, err
	}
	if s.Spec.Replicas == nil {
		return 1, nil // the API's default
	}
	return int(*s.Spec.Replicas), nil
}

// Target reaches the cluster through forwards to every Pod of the
// StatefulSet that runs, for requests of any kind.
func (c *Cluster) Target(ctx context.Context) (*etcdops.Target, error) {
	n, err := c.replicas(ctx)
	if err != nil {
		return nil, err
	}
	why := c.reach(ctx, n)
	t := c.target()
	if len(t.Endpoints) == 0 {
		return nil, fmt.Errorf("no member of StatefulSet %s/%s can be reached: %s", c.Names.Namespace, c.Names.StatefulSet(), reasons(why))
	}
	return t, nil
}

// Members connects to the members the StatefulSet runs and reads the
// member list through them.
func (c *Cluster) Members(ctx context.Context) ([]etcdops.Member, error) {
	t, err := c.Target(ctx)
	if err != nil {
		return nil, err
	}
	ms, err := etcdops.Members(ctx, t)
	if err != nil {
		return nil, c.explain(err)
	}
	return ms, nil
}

// explain adds to err what the forwards know.
func (c *Cluster) explain(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var more []string
	for i, f := range c.forwards {
		if ferr := f.Err(); ferr != nil {
			more = append(more, fmt.Sprintf("%s: %v", c.Names.Member(i), ferr))
		}
	}
	if len(more) == 0 {
		return err
	}
	slices.Sort(more)
	return fmt.Errorf("%w (%s)", err, strings.Join(more, "; "))
}

func reasons(why map[int]string) string {
	var out []string
	for _, i := range slices.Sorted(maps.Keys(why)) {
		out = append(out, why[i])
	}
	if len(out) == 0 {
		return "no replicas"
	}
	return strings.Join(out, "; ")
}

// Health checks every member the StatefulSet runs (0..replicas-1) and any
// other member of the list, each through its own forward. Each result
// names the member's in-cluster client URL; a member whose Pod cannot be
// reached is unhealthy with the reason.
func (c *Cluster) Health(ctx context.Context) ([]etcdops.EndpointHealth, error) {
	return eachMember(ctx, c, func(t *etcdops.Target, i int, url string, f *kube.Forward) etcdops.EndpointHealth {
		h := etcdops.CheckHealth(ctx, t, localURL(f))
		h.Endpoint = url
		if !h.Healthy && f.Err() != nil {
			h.Error += " (" + f.Err().Error() + ")"
		}
		return h
	}, func(url, why string) etcdops.EndpointHealth { return etcdops.EndpointHealth{Endpoint: url, Error: why} })
}

// Status reads every member's status as Health checks it.
func (c *Cluster) Status(ctx context.Context) ([]etcdops.EndpointStatus, error) {
	return eachMember(ctx, c, func(t *etcdops.Target, i int, url string, f *kube.Forward) etcdops.EndpointStatus {
		s := etcdops.EndpointStatusOf(ctx, t, localURL(f))
		s.Endpoint = url
		if s.Error == "" {
			s.Name = c.Names.Member(i)
		} else if f.Err() != nil {
			s.Error += " (" + f.Err().Error() + ")"
		}
		return s
	}, func(url, why string) etcdops.EndpointStatus { return etcdops.EndpointStatus{Endpoint: url, Error: why} })
}

// eachMember asks every member at once, each through its own forward;
// a member whose Pod cannot be reached gets unreachable's result instead.
func eachMember[R any](ctx context.Context, c *Cluster, ask func(t *etcdops.Target, i int, url string, f *kube.Forward) R, unreachable func(url, why string) R) ([]R, error) {
	ords, why, err := c.everyMember(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]R, len(ords))
	t := c.target()
	var wg sync.WaitGroup
	for k, i := range ords {
		wg.Go(func() {
			if f, ok := c.openForward(i); ok {
				out[k] = ask(t, i, c.Names.ClientURL(i), f)
			} else {
				out[k] = unreachable(c.Names.ClientURL(i), why[i])
			}
		})
	}
	wg.Wait()
	return out, nil
}

func (c *Cluster) openForward(i int) (*kube.Forward, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.forwards[i]
	return f, ok
}

// everyMember opens forwards to the StatefulSet's Pods and returns the
// ordinals to report on: 0..replicas-1 and any member of the list beyond,
// with the reasons of those not reachable.
func (c *Cluster) everyMember(ctx context.Context) ([]int, map[int]string, error) {
	n, err := c.replicas(ctx)
	if err != nil {
		return nil, nil, err
	}
	why := c.reach(ctx, n)
	ords := make([]int, 0, n)
	for i := range n {
		ords = append(ords, i)
	}
	if t := c.target(); len(t.Endpoints) > 0 {
		if ms, err := etcdops.Members(ctx, t); err == nil {
			for _, m := range ms {
				if i, ok := c.Ordinal(m); ok && i >= n {
					ords = append(ords, i)
					if _, err := c.forward(ctx, i); err != nil {
						why[i] = err.Error()
					}
				}
			}
		}
	}
	return ords, why, nil
}
