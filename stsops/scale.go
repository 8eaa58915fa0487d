package stsops

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/kube"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/membership"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// DefaultWait bounds a whole scale.
const DefaultWait = 15 * time.Minute

// pollEvery is how often Pods are looked at while waiting for them.
const pollEvery = time.Second

// ScaleOptions say how far to scale.
type ScaleOptions struct {
	Replicas int
	// DeleteVolumes deletes a removed member's PersistentVolumeClaim, and
	// one left from an earlier member of an ordinal being added.
	DeleteVolumes bool
	// Force allows fewer than membership.MinMembers voting members, as
	// member remove --force.
	Force bool
}

// Step is one change Scale made, in order.
type Step struct {
	// Action is "added-learner", "promoted", "removed", "replicas",
	// "deleted-volume" or "kept-volume".
	Action string `json:"action"`
	Member string `json:"member,omitempty"`
	ID     string `json:"id,omitempty"`
	// From and To are the replicas of a "replicas" step.
	From int `json:"from,omitempty"`
	To   int `json:"to,omitempty"`
}

// ScaleResult is what Scale did.
type ScaleResult struct {
	From, To int
	Steps    []Step
	Members  []etcdops.Member
}

// Scale brings the StatefulSet to o.Replicas members, one at a time.
//
// Out: for each new ordinal i, its server and peer certificates go into
// the Secret NAME-members (from the CA in the bundle folder), the member
// is added to etcd as a learner, the ConfigMap NAME-cluster lists it (state
// existing), replicas rise to i+1, and once the learner has caught up it
// is promoted. In: the highest ordinal leaves etcd's membership first
// (refused as member remove refuses, unless Force; leadership moves away
// from it first), then replicas fall, and once its Pod is gone its keys
// leave the Secret and its name the ConfigMap; its claim stays unless
// DeleteVolumes.
//
// Every step looks at what is there first, so that running the command
// again after an interruption finishes the job: a learner added by an
// earlier run is taken up, a member removed already is not removed again.
// The bundle folder records the new replicas and objects at the end.
func (c *Cluster) Scale(ctx context.Context, o ScaleOptions) (*ScaleResult, error) {
	if o.Replicas < 1 || o.Replicas > spec.MaxStatefulSetReplicas {
		return nil, badinput.New("--replicas", fmt.Sprint(o.Replicas), "want 1 to %d", spec.MaxStatefulSetReplicas)
	}
	r, err := c.replicas(ctx)
	if err != nil {
		return nil, err
	}
	res := &ScaleResult{From: r, To: o.Replicas}
	s := &scaler{Cluster: c, o: o, res: res, replicas: r}
	if err := s.look(ctx); err != nil {
		return nil, err
	}
	if err := s.precheck(ctx); err != nil {
		return nil, err
	}
	if o.Replicas%2 == 0 {
		c.logf("warning: %d members tolerate no more failures than %d; an odd number is recommended", o.Replicas, o.Replicas-1)
	}
	c.logf("[scale] StatefulSet %s/%s: %d replicas, %d members; scaling to %d", c.Names.Namespace, c.Names.StatefulSet(), r, len(s.members), o.Replicas)
	for {
		hi := max(s.replicas, s.highest()+1)
		switch {
		case hi > o.Replicas:
			err = s.removeOne(ctx, hi-1)
		case s.replicas < o.Replicas:
			err = s.addOne(ctx, s.replicas)
		default:
			err = s.finish(ctx)
			if err == nil {
				res.Members = s.members
				return res, nil
			}
		}
		if err != nil {
			res.Members = s.members
			return res, err
		}
	}
}

// scaler is one Scale's view of the cluster.
type scaler struct {
	*Cluster
	o        ScaleOptions
	res      *ScaleResult
	replicas int
	members  []etcdops.Member
	// changed is set once anything was changed.
	changed bool
	ca      *certs.Authority
}

func (s *scaler) step(st Step) {
	s.res.Steps = append(s.res.Steps, st)
	s.changed = true
}

// look reads the member list through the running members.
func (s *scaler) look(ctx context.Context) error {
	why := s.reach(ctx, s.replicas)
	t := s.target()
	if len(t.Endpoints) == 0 {
		return fmt.Errorf("no member of StatefulSet %s/%s can be reached: %s", s.Names.Namespace, s.Names.StatefulSet(), reasons(why))
	}
	ms, err := etcdops.Members(ctx, t)
	if err != nil {
		return s.explain(err)
	}
	for _, m := range ms {
		if _, ok := s.Ordinal(m); !ok {
			return badinput.Errorf("StatefulSet %s/%s: member %s (ID %s, peer URLs %s) is not one of its Pods; remove it first (etcd-staticpod member remove)", s.Names.Namespace, s.Names.StatefulSet(), m.Name, m.IDString(), strings.Join(m.PeerURLs, ","))
		}
	}
	s.members = ms
	return nil
}

// member is the member of ordinal i.
func (s *scaler) member(i int) (etcdops.Member, bool) {
	for _, m := range s.members {
		if o, ok := s.Ordinal(m); ok && o == i {
			return m, true
		}
	}
	return etcdops.Member{}, false
}

// highest is the highest ordinal in the member list, -1 for none.
func (s *scaler) highest() int {
	hi := -1
	for _, m := range s.members {
		if i, ok := s.Ordinal(m); ok {
			hi = max(hi, i)
		}
	}
	return hi
}

// claim is the name of member i's data claim.
func (s *scaler) claim(i int) string {
	return statefulset.DataVolume + "-" + s.Names.Member(i)
}

// precheck refuses, before anything changes, a scale out onto a claim
// left by an earlier member of that ordinal (its Pod would start that
// member again, with data the cluster no longer accepts), and needs the CA
// when certificates are to be issued.
func (s *scaler) precheck(ctx context.Context) error {
	var left []string
	for i := s.replicas; i < s.o.Replicas; i++ {
		if _, ok := s.member(i); ok {
			continue // added by an earlier run: its claim is its own
		}
		_, err := s.Kube.PersistentVolumeClaim(ctx, s.claim(i))
		switch {
		case err == nil:
			left = append(left, s.claim(i))
		case !kube.IsNotFound(err):
			return err
		}
	}
	if len(left) > 0 && !s.o.DeleteVolumes {
		return badinput.Errorf("--replicas %d: PersistentVolumeClaim %s is left from an earlier member of that ordinal, whose Pod would start with that member's old data; delete it (kubectl -n %s delete pvc %s) or give --delete-volumes", s.o.Replicas, strings.Join(left, ", "), s.Names.Namespace, strings.Join(left, " "))
	}
	if s.o.Replicas > s.replicas {
		ca, err := statefulset.LoadCA(s.opts.Out, time.Now())
		if err != nil {
			return badinput.New("--out", s.opts.Out, "no CA to sign the new members' certificates with: %v", err)
		}
		s.ca = ca
	}
	return nil
}

// addOne adds member i: certificates, learner, ConfigMap, replicas,
// promotion.
func (s *scaler) addOne(ctx context.Context, i int) error {
	name := s.Names.Member(i)
	m, exists := s.member(i)
	if !exists {
		for _, x := range s.members {
			if x.IsLearner {
				return fmt.Errorf("scale out to %s: member %s is still a learner; promote it (run the same command again) or remove it first", name, describe(x))
			}
		}
		if err := s.freeClaim(ctx, i); err != nil {
			return err
		}
		if err := s.checkHealthy(ctx); err != nil {
			return err
		}
	}
	if err := s.ensureCerts(ctx, i); err != nil {
		return err
	}
	if exists {
		s.logf("[scale] %s is in the member list already (ID %s, added by an earlier run)", name, m.IDString())
	} else {
		t := s.target()
		var ms []etcdops.Member
		err := membership.RetryUnhealthy(ctx, s.logf, "add a member", func() error {
			var err error
			m, ms, err = etcdops.AddMember(ctx, t, []string{s.Names.PeerURL(i)}, false)
			return err
		})
		if err != nil {
			return fmt.Errorf("scale out: add %s: %w; run the same command again once the cluster accepts the change", name, err)
		}
		s.members = ms
		s.step(Step{Action: "added-learner", Member: name, ID: m.IDString()})
		s.logf("[scale] Added %s to the cluster as a learner (ID %s, peer URL %s)", name, m.IDString(), s.Names.PeerURL(i))
	}
	if err := s.setConfigMap(ctx, i+1); err != nil {
		return err
	}
	if err := s.setReplicas(ctx, i+1); err != nil {
		return err
	}
	if m.IsLearner {
		if err := s.promote(ctx, i, m); err != nil {
			return err
		}
	}
	return s.waitServing(ctx, i)
}

// freeClaim deletes a claim left by an earlier member i (precheck refused
// it without DeleteVolumes) and waits until it is gone.
func (s *scaler) freeClaim(ctx context.Context, i int) error {
	name := s.claim(i)
	if _, err := s.Kube.PersistentVolumeClaim(ctx, name); kube.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if !s.o.DeleteVolumes {
		return badinput.Errorf("scale out to %s: PersistentVolumeClaim %s is left from an earlier member of that ordinal; delete it or give --delete-volumes", s.Names.Member(i), name)
	}
	if err := s.Kube.DeletePersistentVolumeClaim(ctx, name); err != nil {
		return err
	}
	for {
		_, err := s.Kube.PersistentVolumeClaim(ctx, name)
		if kube.IsNotFound(err) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("PersistentVolumeClaim %s still there: %w", name, context.Cause(ctx))
		case <-time.After(pollEvery):
		}
	}
	s.step(Step{Action: "deleted-volume", Member: s.Names.Member(i)})
	s.logf("[scale] Deleted PersistentVolumeClaim %s, left from an earlier %s (--delete-volumes)", name, s.Names.Member(i))
	return nil
}

// checkHealthy wants every voting member to commit a read through raft,
// through its own forward.
func (s *scaler) checkHealthy(ctx context.Context) error {
	var voters []etcdops.Member
	for _, m := range s.members {
		if !m.IsLearner {
			voters = append(voters, m)
		}
	}
	s.reachMembers(ctx)
	healthy := membership.Healthy(ctx, s.target(), s.local(voters))
	if len(healthy) == len(voters) {
		return nil
	}
	var bad []string
	for _, m := range voters {
		if !slices.ContainsFunc(healthy, func(h etcdops.Member) bool { return h.ID == m.ID }) {
			bad = append(bad, describe(m))
		}
	}
	return fmt.Errorf("the cluster is not healthy, so its membership is left alone: %s do not commit a read (etcd-staticpod statefulset health says why)", strings.Join(bad, ", "))
}

// reachMembers opens a forward to every member of the list whose Pod runs.
func (s *scaler) reachMembers(ctx context.Context) {
	for _, m := range s.members {
		if i, ok := s.Ordinal(m); ok {
			_, _ = s.forward(ctx, i)
		}
	}
}

// ensureCerts puts member i's certificates into the Secret, keeping a pair
// already there that still fits the spec and the CA.
func (s *scaler) ensureCerts(ctx context.Context, i int) error {
	name := s.Names.Member(i)
	issued := false
	_, err := s.Kube.UpdateSecret(ctx, s.Names.MembersSecret(), func(sec *corev1.Secret) (bool, error) {
		if s.ca != nil && s.fits(sec, i) {
			return false, nil
		}
		if s.ca == nil {
			if s.hasKeys(sec, i) {
				return false, nil
			}
			ca, err := statefulset.LoadCA(s.opts.Out, time.Now())
			if err != nil {
				return false, badinput.New("--out", s.opts.Out, "no CA to sign %s's certificates with: %v", name, err)
			}
			s.ca = ca
		}
		mc, err := statefulset.IssueMember(s.ca, s.Spec, i, time.Now())
		if err != nil {
			return false, fmt.Errorf("%s's certificates: %w", name, err)
		}
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data[statefulset.ServerCertKey(name)] = mc.Server.Cert
		sec.Data[statefulset.ServerKeyKey(name)] = mc.Server.Key
		sec.Data[statefulset.PeerCertKey(name)] = mc.Peer.Cert
		sec.Data[statefulset.PeerKeyKey(name)] = mc.Peer.Key
		issued = true
		return true, nil
	})
	if err != nil {
		return err
	}
	if issued {
		s.logf("[scale] Issued %s's server and peer certificates into Secret %s", name, s.Names.MembersSecret())
	}
	return nil
}

func (s *scaler) hasKeys(sec *corev1.Secret, i int) bool {
	n := s.Names.Member(i)
	for _, k := range []string{statefulset.ServerCertKey(n), statefulset.ServerKeyKey(n), statefulset.PeerCertKey(n), statefulset.PeerKeyKey(n)} {
		if len(sec.Data[k]) == 0 {
			return false
		}
	}
	return true
}

// fits reports whether the Secret holds member i's pairs as the CA would
// issue them now.
func (s *scaler) fits(sec *corev1.Secret, i int) bool {
	if !s.hasKeys(sec, i) {
		return false
	}
	n := s.Names.Member(i)
	now := time.Now()
	for _, p := range []struct {
		pair    statefulset.Pair
		profile certs.Profile
	}{
		{statefulset.Pair{Cert: sec.Data[statefulset.ServerCertKey(n)], Key: sec.Data[statefulset.ServerKeyKey(n)]}, statefulset.ServerProfile(s.Names, i)},
		{statefulset.Pair{Cert: sec.Data[statefulset.PeerCertKey(n)], Key: sec.Data[statefulset.PeerKeyKey(n)]}, statefulset.PeerProfile(s.Names, i)},
	} {
		diff, err := statefulset.Check(p.pair, s.ca, s.Spec, p.profile, statefulset.MemberHost(s.Names, i), now)
		if err != nil || len(diff) > 0 {
			return false
		}
	}
	return true
}

// setConfigMap makes the ConfigMap list members 0..n-1, state existing.
func (s *scaler) setConfigMap(ctx context.Context, n int) error {
	want := statefulset.InitialCluster(s.Spec, n)
	updated := false
	_, err := s.Kube.UpdateConfigMap(ctx, s.Names.ConfigMap(), func(cm *corev1.ConfigMap) (bool, error) {
		if cm.Data[statefulset.InitialClusterKey] == want && cm.Data[statefulset.InitialClusterStateKey] == "existing" {
			return false, nil
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[statefulset.InitialClusterKey] = want
		cm.Data[statefulset.InitialClusterStateKey] = "existing"
		updated = true
		return true, nil
	})
	if err != nil {
		return err
	}
	if updated {
		s.changed = true
		s.logf("[scale] ConfigMap %s: initial-cluster lists %s, initial-cluster-state existing", s.Names.ConfigMap(), s.memberRange(n))
	}
	return nil
}

func (s *scaler) memberRange(n int) string {
	switch n {
	case 1:
		return s.Names.Member(0)
	case 2:
		return s.Names.Member(0) + ", " + s.Names.Member(1)
	}
	return s.Names.Member(0) + " .. " + s.Names.Member(n-1)
}

// setReplicas sets the StatefulSet's replicas to n.
func (s *scaler) setReplicas(ctx context.Context, n int) error {
	if s.replicas == n {
		return nil
	}
	if _, err := s.Kube.ScaleStatefulSet(ctx, s.Names.StatefulSet(), int32(n)); err != nil {
		return err
	}
	s.step(Step{Action: "replicas", From: s.replicas, To: n})
	s.logf("[scale] StatefulSet %s: replicas %d -> %d", s.Names.StatefulSet(), s.replicas, n)
	s.replicas = n
	return nil
}

// promote waits for learner i to start and catch up, and promotes it
// (etcdops.PromoteWhenReady, as member promote).
func (s *scaler) promote(ctx context.Context, i int, m etcdops.Member) error {
	name := s.Names.Member(i)
	s.logf("[scale] Waiting for %s to start and catch up with the leader", name)
	got, ms, err := etcdops.PromoteWhenReady(ctx, s.target(i), m.ID, func(p etcdops.PromoteProgress) {
		waited := p.Waited.Round(time.Second)
		switch p.State {
		case etcdops.PromoteNotStarted:
			s.logf("[scale] %s has not started yet (%s)", name, waited)
		case etcdops.PromoteCatchingUp:
			s.logf("[scale] %s runs and is catching up with the leader (%s)", name, waited)
		case etcdops.PromoteRetrying:
			s.logf("[scale] %s: will retry (%s): %v", name, waited, p.Err)
		}
	})
	if ms != nil {
		s.members = ms
	}
	if err != nil {
		return fmt.Errorf("scale out: promote %s: %w; it stays a learner: run the same command again to finish", name, err)
	}
	s.step(Step{Action: "promoted", Member: name, ID: got.IDString()})
	s.logf("[scale] Promoted %s to a voting member (ID %s)", name, got.IDString())
	return nil
}

// waitServing waits until member i's Pod is Ready and the member commits
// a read through its forward, so that the next step counts it healthy.
func (s *scaler) waitServing(ctx context.Context, i int) error {
	name := s.Names.Member(i)
	start := time.Now()
	var last string
	for {
		p, err := s.Kube.Pod(ctx, name)
		switch {
		case err != nil:
			last = err.Error()
		case !kube.PodReady(p):
			last = fmt.Sprintf("Pod %s is not Ready (%s)", name, p.Status.Phase)
		default:
			f, err := s.forward(ctx, i)
			if err != nil {
				last = err.Error()
				break
			}
			h := etcdops.CheckHealth(ctx, s.target(), localURL(f))
			if h.Healthy {
				s.logf("[scale] %s is Ready and serves clients (%s)", name, time.Since(start).Round(time.Second))
				return nil
			}
			last = h.Error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s votes, but does not serve clients yet: %s", name, last)
		case <-time.After(pollEvery):
		}
	}
}

// removeOne takes member i out: membership, replicas, Pod, Secret keys,
// ConfigMap, claim.
func (s *scaler) removeOne(ctx context.Context, i int) error {
	name := s.Names.Member(i)
	if m, ok := s.member(i); ok {
		if err := s.removeMember(ctx, i, m); err != nil {
			return err
		}
	}
	if s.replicas > i {
		if err := s.setReplicas(ctx, i); err != nil {
			return err
		}
	}
	s.dropForward(i)
	if err := s.Kube.WaitPodGone(ctx, name, pollEvery); err != nil {
		return fmt.Errorf("scale in: %w", err)
	}
	s.logf("[scale] Pod %s is gone", name)
	if err := s.dropCerts(ctx, i); err != nil {
		return err
	}
	if err := s.setConfigMap(ctx, i); err != nil {
		return err
	}
	return s.dropClaim(ctx, i)
}

// removeMember removes member i from etcd, with member remove's rules.
func (s *scaler) removeMember(ctx context.Context, i int, m etcdops.Member) error {
	name := s.Names.Member(i)
	s.reachMembers(ctx)
	var voters, rest []etcdops.Member
	for _, x := range s.members {
		if x.ID == m.ID {
			continue
		}
		rest = append(rest, x)
		if !x.IsLearner {
			voters = append(voters, x)
		}
	}
	if len(rest) == 0 || (!m.IsLearner && len(voters) == 0) {
		return badinput.Errorf("scale in: %s is the last voting member; a cluster cannot remove its last member", name)
	}
	t := s.target()
	healthy := membership.Healthy(ctx, t, s.local(voters))
	warning, err := membership.CheckRemoval(name, m, voters, healthy, s.o.Force)
	if err != nil {
		if s.changed {
			return fmt.Errorf("%w (the steps before this one are done)", err)
		}
		return err
	}
	if warning != "" {
		s.logf("warning: %s", warning)
	}
	if !m.IsLearner {
		if own := s.local([]etcdops.Member{m})[0]; len(own.ClientURLs) > 0 {
			to, err := membership.MoveLeaderAway(ctx, t, own, healthy)
			if err != nil {
				return fmt.Errorf("scale in: %s: %w; nothing was changed for it", name, err)
			}
			if to != "" {
				s.logf("[scale] Moved leadership from %s to %s", name, to)
			}
		}
	}
	// Ask the others: the member stops serving once it is removed.
	others := s.target(i)
	if len(others.Endpoints) == 0 {
		return fmt.Errorf("scale in: %s: no other member can be reached to ask", name)
	}
	var ms []etcdops.Member
	err = membership.RetryUnhealthy(ctx, s.logf, "remove a member", func() error {
		var err error
		ms, err = etcdops.RemoveMember(ctx, others, m.ID, others.Endpoints)
		return err
	})
	if err != nil && !etcdops.IsMemberNotFound(err) {
		return fmt.Errorf("scale in: remove %s: %w; run the same command again once the cluster accepts the change", name, err)
	}
	if ms == nil {
		ms = slices.DeleteFunc(slices.Clone(s.members), func(x etcdops.Member) bool { return x.ID == m.ID })
	}
	s.members = ms
	s.step(Step{Action: "removed", Member: name, ID: m.IDString()})
	s.logf("[scale] Removed %s (ID %s) from the cluster", name, m.IDString())
	return nil
}

// dropCerts removes member i's keys from the Secret.
func (s *scaler) dropCerts(ctx context.Context, i int) error {
	name := s.Names.Member(i)
	keys := []string{statefulset.ServerCertKey(name), statefulset.ServerKeyKey(name), statefulset.PeerCertKey(name), statefulset.PeerKeyKey(name)}
	dropped := false
	_, err := s.Kube.UpdateSecret(ctx, s.Names.MembersSecret(), func(sec *corev1.Secret) (bool, error) {
		changed := false
		for _, k := range keys {
			if _, ok := sec.Data[k]; ok {
				delete(sec.Data, k)
				changed = true
			}
		}
		dropped = changed
		return changed, nil
	})
	if err != nil {
		return err
	}
	if dropped {
		s.changed = true
		s.logf("[scale] Removed %s's certificates and keys from Secret %s", name, s.Names.MembersSecret())
	}
	return nil
}

// dropClaim deletes member i's claim with DeleteVolumes, else says it is
// kept.
func (s *scaler) dropClaim(ctx context.Context, i int) error {
	name := s.claim(i)
	if _, err := s.Kube.PersistentVolumeClaim(ctx, name); kube.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if !s.o.DeleteVolumes {
		s.step(Step{Action: "kept-volume", Member: s.Names.Member(i)})
		s.logf("[scale] Kept PersistentVolumeClaim %s: a later scale out to %s refuses it until it is deleted (or give --delete-volumes)", name, s.Names.Member(i))
		return nil
	}
	if err := s.Kube.DeletePersistentVolumeClaim(ctx, name); err != nil {
		return err
	}
	s.step(Step{Action: "deleted-volume", Member: s.Names.Member(i)})
	s.logf("[scale] Deleted PersistentVolumeClaim %s (--delete-volumes)", name)
	return nil
}

// finish promotes a learner left by an interrupted run, leaves the
// ConfigMap and Secret for exactly the members there are, and records the
// replicas and objects in the bundle folder.
func (s *scaler) finish(ctx context.Context) error {
	for _, m := range s.members {
		if i, ok := s.Ordinal(m); ok && m.IsLearner {
			if err := s.promote(ctx, i, m); err != nil {
				return err
			}
			if err := s.waitServing(ctx, i); err != nil {
				return err
			}
		}
	}
	if s.changed {
		if err := s.setConfigMap(ctx, s.replicas); err != nil {
			return err
		}
	}
	if err := s.record(ctx); err != nil {
		return err
	}
	if !s.changed {
		s.logf("[scale] StatefulSet %s/%s has %d replicas and members already; nothing to do", s.Names.Namespace, s.Names.StatefulSet(), s.replicas)
	}
	return nil
}

// record writes the new replicas into the bundle folder's spec and the
// objects' stream (with the Secret's current certificates and state
// existing), so that applying the stream again keeps the cluster as it is.
func (s *scaler) record(ctx context.Context) error {
	c := *s.Spec
	sts := *s.Spec.StatefulSet
	sts.Replicas = s.replicas
	c.StatefulSet = &sts
	if s.changed {
		c.Etcd.ClusterState = "existing"
	}
	if sts.Replicas == s.Spec.StatefulSet.Replicas && c.Etcd.ClusterState == s.Spec.Etcd.ClusterState {
		return nil
	}
	sec, err := s.Kube.Secret(ctx, s.Names.MembersSecret())
	if err != nil {
		return err
	}
	creds := s.creds
	creds.Members = nil
	for i := range s.replicas {
		if !s.hasKeys(sec, i) {
			return fmt.Errorf("record: Secret %s has no certificates for %s", s.Names.MembersSecret(), s.Names.Member(i))
		}
		n := s.Names.Member(i)
		creds.Members = append(creds.Members, statefulset.MemberCerts{
			Server: statefulset.Pair{Cert: sec.Data[statefulset.ServerCertKey(n)], Key: sec.Data[statefulset.ServerKeyKey(n)]},
			Peer:   statefulset.Pair{Cert: sec.Data[statefulset.PeerCertKey(n)], Key: sec.Data[statefulset.PeerKeyKey(n)]},
		})
	}
	stream, err := statefulset.Render(&c, creds)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	specYAML, err := spec.Marshal(&c)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	b := layout.Bundle(s.opts.Out)
	if err := atomicfile.WriteFiles([]atomicfile.File{
		{Path: b.Spec(), Data: specYAML, Mode: layout.ModeSpec},
		{Path: b.StatefulSetManifest(), Data: stream, Mode: layout.ModeKey},
	}); err != nil {
		return fmt.Errorf("the cluster has %d members, but recording that failed: %w; run the same command again", s.replicas, err)
	}
	s.logf("[scale] Recorded replicas %d in %s and %s", s.replicas, b.Spec(), b.StatefulSetManifest())
	return nil
}

// describe names a member for messages.
func describe(m etcdops.Member) string {
	if m.Started() {
		return fmt.Sprintf("%s (ID %s)", m.Name, m.IDString())
	}
	return fmt.Sprintf("%s (%s, not started)", m.IDString(), strings.Join(m.PeerURLs, ","))
}
