package membership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// DefaultWait bounds the wait for a learner to start and catch up.
const DefaultWait = 10 * time.Minute

// AddOptions say which host to add and how.
type AddOptions struct {
	Options
	Host spec.Host
	// Voting adds a voting member at once instead of a learner. Until it
	// has started, the cluster counts it for quorum without its vote.
	Voting bool
	// NoPromote returns once the learner is added, without waiting.
	NoPromote bool
	// Wait bounds the wait for promotion; 0 means DefaultWait.
	Wait time.Duration
	// EtcdBinary, with runtime systemd, is the etcd binary the new host's
	// bundle carries at the unit's ExecStart path; "" keeps the spec's
	// (etcdBinary), if any. It is recorded in the spec.
	EtcdBinary string
}

// AddResult is what Add did.
type AddResult struct {
	Host spec.Host
	// Member is the new member, as the cluster last listed it.
	Member etcdops.Member
	// Members is the member list after the last change.
	Members []etcdops.Member
	// Resumed is set when an earlier run had added the member already.
	Resumed  bool
	Promoted bool
	// Bundle and Archive are the new host's folder and tarball.
	Bundle, Archive string
	// Warnings are about the new spec, such as an even member count.
	Warnings []string
}

// Add makes the new host's bundle, adds it to the cluster (as a learner
// unless Voting), records it in the spec, tells the operator how to start
// it and, unless NoPromote or Voting, waits for it to catch up and promotes
// it.
//
// The recorded spec's etcd.initialClusterState becomes "existing": the
// cluster has been bootstrapped, so any member made from the spec from now
// on joins it. Members that have their data ignore both
// --initial-cluster-state and --initial-cluster, so the manifests of the
// other hosts are left as they are; a later init that rewrites them with
// "existing" and the longer --initial-cluster changes nothing for them.
func Add(ctx context.Context, o AddOptions) (*AddResult, error) {
	o.defaults()
	s, err := waitingSession(o.Options, &o.Wait)
	if err != nil {
		return nil, err
	}
	old, path := s.spec, s.specPath
	h := o.Host
	arg := h.Name + "=" + h.Address
	if e, ok := old.Host(h.Name); ok {
		return nil, refuse("member add %s: host %q is already in the spec %s (address %s)", arg, h.Name, path, e.Address)
	}
	for _, e := range old.Hosts {
		if ip := net.ParseIP(h.Address); ip != nil && ip.Equal(net.ParseIP(e.Address)) {
			return nil, refuse("member add %s: address %s is already host %q's in the spec %s", arg, h.Address, e.Name, path)
		}
	}
	c := clone(old)
	c.Hosts = append(c.Hosts, h)
	c.Etcd.ClusterState = "existing"
	if o.EtcdBinary != "" {
		abs, err := filepath.Abs(o.EtcdBinary)
		if err != nil {
			return nil, refuse("--etcd-binary %q: %w", o.EtcdBinary, err)
		}
		if !c.Systemd() {
			return nil, refuse("--etcd-binary %q: only with runtime %s; the cluster of %s runs static Pods, which run the image's etcd", o.EtcdBinary, spec.RuntimeSystemd, path)
		}
		if fi, err := os.Stat(abs); err != nil {
			return nil, refuse("--etcd-binary %q: %w", o.EtcdBinary, errors.Unwrap(err))
		} else if !fi.Mode().IsRegular() {
			return nil, refuse("--etcd-binary %q: not a regular file", o.EtcdBinary)
		}
		c.EtcdBinary = abs
	}
	warnings, err := c.Validate()
	if err != nil {
		return nil, refuse("member add %s: %w", arg, err)
	}
	for _, w := range warnings {
		s.logf("warning: %s", w)
	}
	// The peer URLs the new member will advertise, as its manifest gives
	// them; the manifest itself must render too.
	if _, err := phases.EtcdManifest(c, h); err != nil {
		return nil, refuse("member add %s: %w", arg, err)
	}
	peerURLs := manifests.PeerURLs(c, h)
	if len(peerURLs) == 0 {
		return nil, refuse("member add %s: the new manifest names no peer URL", arg)
	}
	if err := checkCA(o.Options); err != nil {
		return nil, err
	}

	checkCtx, cancel := o.checkDeadline(ctx)
	defer cancel()
	if err := s.connect(checkCtx); err != nil {
		return nil, err
	}
	pending, err := s.checkAdd(h, peerURLs)
	if err != nil {
		return nil, err
	}
	if err := s.checkHealthy(checkCtx); err != nil {
		return nil, err
	}
	cancel()

	res := &AddResult{Host: h, Warnings: warnings, Bundle: layout.Bundle(o.Out).Host(h.Name), Archive: layout.Bundle(o.Out).Archive(h.Name)}
	_, folderErr := os.Stat(res.Bundle)
	newFolder := errors.Is(folderErr, os.ErrNotExist)
	if !newFolder && pending == nil {
		s.logf("note: %s exists (a host of that name was removed earlier?); certificates in it that match %s are kept, any other is an error", res.Bundle, arg)
	}
	if err := s.writeBundle(ctx, c, h); err != nil {
		return nil, fmt.Errorf("member add %s: the new host's bundle: %w", arg, err)
	}

	if pending != nil {
		res.Member, res.Members, res.Resumed = *pending, s.members, true
		s.logf("[member] %s is in the member list already (ID %s, added by an earlier run); recording it", h.Name, pending.IDString())
	} else {
		var m etcdops.Member
		var ms []etcdops.Member
		err := s.retryUnhealthy(ctx, "add a member", func() error {
			var err error
			m, ms, err = etcdops.AddMember(ctx, s.target, peerURLs, o.Voting)
			return err
		})
		if err != nil {
			if newFolder {
				// The bundle was only made for this member.
				_ = os.RemoveAll(res.Bundle)
				_ = os.Remove(res.Archive)
			}
			if etcdops.IsTooManyLearners(err) {
				return nil, fmt.Errorf("%w; promote or remove the learner first", err)
			}
			return nil, fmt.Errorf("%w; nothing was recorded, run the same command again once the cluster accepts the change", err)
		}
		res.Member, res.Members = m, ms
		kind := "learner"
		if o.Voting {
			kind = "voting member"
		}
		s.logf("[member] Added %s to the cluster as a %s (ID %s)", h.Name, kind, m.IDString())
	}

	if err := s.record(c); err != nil {
		return res, fmt.Errorf("%s is a member of the cluster (ID %s) but %w; run the same command again to finish", h.Name, res.Member.IDString(), err)
	}
	if err := archive.UpdateSHA256Sums(o.Out, h.Name+layout.ArchiveExt); err != nil {
		return res, fmt.Errorf("%s is a member of the cluster (ID %s) and recorded in the spec, but %w; run `etcd-staticpod init phase bundle --out %s` to pack the archives again", h.Name, res.Member.IDString(), err, o.Out)
	}
	s.logf("[member] Recorded %s in %s and its endpoint in %s", h.Name, layout.Bundle(o.Out).Spec(), layout.Bundle(o.Out).KubeadmConfig())
	s.logf("%s", startInstructions(o.Out, c, h))

	if o.Voting || !res.Member.IsLearner || o.NoPromote {
		if res.Member.IsLearner {
			s.logf("Once %s has started and caught up, promote it:\n  etcd-staticpod member promote %s --out %s", h.Name, h.Name, o.Out)
		}
		return res, nil
	}
	m, ms, err := s.promote(ctx, res.Member, h.Name, o.Wait)
	if ms != nil {
		res.Members = ms
	}
	res.Member = m
	if err != nil {
		return res, err
	}
	res.Promoted = true
	return res, nil
}

// checkCA makes sure a CA certificate and key are there to sign with.
func checkCA(o Options) error {
	cert, key := o.CACert, o.CAKey
	flag := "--ca-cert"
	if cert == "" {
		cert, key = layout.Bundle(o.Out).CACert(), layout.Bundle(o.Out).CAKey()
		flag = "--out"
	}
	for _, p := range []string{cert, key} {
		if _, err := os.Stat(p); err != nil {
			v := p
			if flag == "--out" {
				v = o.Out
			}
			return refuse("%s %q: no CA to sign the new host's certificates with (%s): %v", flag, v, p, errors.Unwrap(err))
		}
	}
	return nil
}

// checkAdd refuses a host that the cluster knows already, and a spec that
// does not describe the cluster. It returns the member an earlier run
// added for this host and did not record, if any.
func (s *session) checkAdd(h spec.Host, peerURLs []string) (*etcdops.Member, error) {
	arg := h.Name + "=" + h.Address
	var pending *etcdops.Member
	var others []etcdops.Member
	for _, m := range s.members {
		switch {
		case !m.Started() && samePeers(m.PeerURLs, peerURLs):
			pending = &m
			continue
		case m.Started() && m.Name == h.Name:
			return nil, refuse("member add %s: %s is already in the cluster's member list (ID %s)", arg, h.Name, m.IDString())
		case hasAddress(m, h.Address):
			return nil, refuse("member add %s: address %s is already used by member %s", arg, h.Address, describe(m))
		}
		others = append(others, m)
	}
	if d := pair(s.spec, others).disagreement(); d != "" {
		return nil, refuse("member add %s: the spec %s and the cluster's member list disagree: %s; make them agree first", arg, s.specPath, d)
	}
	for _, m := range others {
		if m.IsLearner {
			return nil, fmt.Errorf("member add %s: member %s is still a learner; promote it (etcd-staticpod member promote %s) or remove it first", arg, describe(m), m.Name)
		}
	}
	return pending, nil
}

func samePeers(a, b []string) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if x == y {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// checkHealthy wants every voting member to commit a read through raft;
// all are asked at once.
func (s *session) checkHealthy(ctx context.Context) error {
	problems := make([]string, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		switch {
		case m.IsLearner:
		case len(m.ClientURLs) == 0:
			problems[i] = describe(m) + ": no client URL"
		default:
			wg.Go(func() {
				if r := etcdops.CheckHealth(ctx, s.target, m.ClientURLs[0]); !r.Healthy {
					problems[i] = fmt.Sprintf("%s: %s", describe(m), r.Error)
				}
			})
		}
	}
	wg.Wait()
	var bad []string
	for _, p := range problems {
		if p != "" {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the cluster is not healthy, so its membership is left alone: %s", strings.Join(bad, "; "))
	}
	return nil
}

// writeBundle writes the new host's folder with init's phases, for that
// host alone, and packs its archive. Other hosts' files are not touched.
// A ctx that ends before the files are in place rolls the folder back.
func (s *session) writeBundle(ctx context.Context, c *spec.Cluster, h spec.Host) error {
	r, err := phases.NewRunner(phases.Options{
		Context: ctx,
		Cluster: c,
		Out:     s.opts.Out,
		Node:    h.Name,
		CACert:  s.opts.CACert,
		CAKey:   s.opts.CAKey,
		Log:     s.opts.Log,
		Warn:    s.opts.Warn,
	})
	if err != nil {
		return err
	}
	// The other hosts' archives are not packed again: only this host's.
	ps, err := phases.List().Select([]string{phases.Bundle().Name})
	if err != nil {
		return err
	}
	if err := r.Run(ps); err != nil {
		return err
	}
	dst := layout.Bundle(s.opts.Out).Archive(h.Name)
	packer := &archive.Packer{Check: r.ShippingCheck()}
	if err := packer.WriteTarGz(layout.Bundle(s.opts.Out).Host(h.Name), dst); err != nil {
		return err
	}
	s.logf("[bundle] Wrote %s", dst)
	return nil
}

// startInstructions tells the operator how to start the new member and
// where the control plane's endpoints change.
func startInstructions(out string, c *spec.Cluster, h spec.Host) string {
	copyCmd := archive.CopyCommand(layout.Bundle(out).Archive(h.Name), h.Address, phases.StartCommand(c))
	how, joins := "restart kubelet", "Its manifest joins the running cluster (--initial-cluster-state=existing)."
	if c.Systemd() {
		how = "start " + layout.EtcdUnitName
		joins = "Its " + layout.EtcdConfig + " joins the running cluster (initial-cluster-state: existing)."
		if line := phases.InstallEtcdLine(c); line != "" {
			joins = line + "\n" + joins
		}
	}
	return fmt.Sprintf(`
Start %[1]s: copy its bundle and unpack it at / on the host, then %[6]s:
  %[3]s
%[7]s Once it votes, give the
control plane the new endpoint list: %[2]s/%[4]s, and on every control-plane node
--etcd-servers=%[5]s in /etc/kubernetes/manifests/kube-apiserver.yaml.`, h.Name, out, copyCmd, layout.KubeadmConfigFile, etcdServers(c), how, joins)
}

// PromoteOptions name the learner to promote.
type PromoteOptions struct {
	Options
	Name string
	// Wait bounds the wait; 0 means DefaultWait.
	Wait time.Duration
}

// PromoteResult is what Promote did.
type PromoteResult struct {
	Member  etcdops.Member
	Members []etcdops.Member
	// Already is set when the member voted before.
	Already bool
}

// Promote waits for the learner of that name to start and catch up, and
// promotes it. A member that votes already is success.
func Promote(ctx context.Context, o PromoteOptions) (*PromoteResult, error) {
	o.defaults()
	s, err := waitingSession(o.Options, &o.Wait)
	if err != nil {
		return nil, err
	}
	c, path := s.spec, s.specPath
	h, inSpec := c.Host(o.Name)
	checkCtx, cancel := o.checkDeadline(ctx)
	defer cancel()
	if err := s.connect(checkCtx); err != nil {
		return nil, err
	}
	cancel()
	m, ok := s.find(o.Name)
	if !ok {
		if !inSpec {
			return nil, refuse("member promote %s: no such host in the spec %s and no such member", o.Name, path)
		}
		return nil, refuse("member promote %s: host %s (%s) is not a member of the cluster; add it with `etcd-staticpod member add %s=%s`", o.Name, o.Name, h.Address, o.Name, h.Address)
	}
	if !m.IsLearner {
		s.logf("[member] %s votes already (ID %s)", o.Name, m.IDString())
		return &PromoteResult{Member: m, Members: s.members, Already: true}, nil
	}
	m, ms, err := s.promote(ctx, m, o.Name, o.Wait)
	return &PromoteResult{Member: m, Members: ms}, err
}

// find looks a member up by name, or, while it has not started, by the
// address the spec gives the host of that name.
func (s *session) find(name string) (etcdops.Member, bool) {
	for _, m := range s.members {
		if m.Started() && m.Name == name {
			return m, true
		}
	}
	if h, ok := s.spec.Host(name); ok {
		for _, m := range s.members {
			if !m.Started() && peerOn(m, h.Address) {
				return m, true
			}
		}
	}
	return etcdops.Member{}, false
}

// promote waits, within wait, for the learner to start and catch up, and
// promotes it.
func (s *session) promote(ctx context.Context, m etcdops.Member, name string, wait time.Duration) (etcdops.Member, []etcdops.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	s.logf("[promote] Waiting up to %v for %s to start and catch up with the leader", wait, name)
	got, ms, err := etcdops.PromoteWhenReady(ctx, s.target, m.ID, func(p etcdops.PromoteProgress) {
		waited := p.Waited.Round(time.Second)
		switch p.State {
		case etcdops.PromoteNotStarted:
			s.logf("[promote] %s has not started yet (%s): copy and start its bundle", name, waited)
		case etcdops.PromoteCatchingUp:
			s.logf("[promote] %s runs and is catching up with the leader (%s)", name, waited)
		case etcdops.PromoteRetrying:
			s.logf("[promote] %s: will retry (%s): %v", name, waited, p.Err)
		case etcdops.PromoteDone:
			s.logf("[promote] %s is a voting member (ID %s) after %s, %d promote requests", name, p.Member.IDString(), p.Waited.Round(time.Millisecond), p.Attempts)
		}
	})
	if err != nil {
		return got, ms, fmt.Errorf("member promote %s: %w; it stays a learner: once it runs, `etcd-staticpod member promote %s --out %s` finishes the job", name, err, name, s.opts.Out)
	}
	// A member serves clients only once it has applied its own start,
	// which may come a moment after the cluster lists it; the control
	// plane should not be sent to it before.
	if err := s.waitServing(ctx, got, name); err != nil {
		return got, ms, err
	}
	return got, ms, nil
}

// waitServing waits until the member commits a read through raft for a
// client.
func (s *session) waitServing(ctx context.Context, m etcdops.Member, name string) error {
	if len(m.ClientURLs) == 0 {
		return nil
	}
	start := time.Now()
	for {
		r := etcdops.CheckHealth(ctx, s.target, m.ClientURLs[0])
		if r.Healthy {
			s.logf("[promote] %s serves clients at %s (%s after its promotion)", name, m.ClientURLs[0], time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s votes, but does not serve clients at %s yet: %s; check its log on the host", name, m.ClientURLs[0], r.Error)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
