package membership

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// MinMembers is the smallest cluster Remove leaves without Force: three
// voting members keep quorum through the loss of one.
const MinMembers = 3

// RemoveOptions name the member to remove.
type RemoveOptions struct {
	Options
	Name string
	// Force allows going below MinMembers voting members and removing a
	// member while the others would not form a healthy quorum. The last
	// member is never removed.
	Force bool
}

// RemoveResult is what Remove did.
type RemoveResult struct {
	Host spec.Host
	// InSpec is set when the spec had the host.
	InSpec bool
	// Member is the member removed; zero when it was gone already.
	Member etcdops.Member
	// WasMember is false when an earlier run had removed it from the
	// cluster already and only the spec was left to update.
	WasMember bool
	// LeaderMovedTo names the member that took over leadership, if the
	// removed member led.
	LeaderMovedTo string
	Members       []etcdops.Member
}

// Remove takes the member of that name out of the cluster (moving
// leadership away from it first), then out of the spec and the control
// plane's kubeadm-config.yaml, and tells the operator what is left to do on
// the host. The host's folder and archive stay in Out.
func Remove(ctx context.Context, o RemoveOptions) (*RemoveResult, error) {
	o.defaults()
	c, path, err := loadSpec(o.Options)
	if err != nil {
		return nil, err
	}
	s := &session{opts: o.Options, spec: c, specPath: path}
	h, inSpec := c.Host(o.Name)
	res := &RemoveResult{Host: h, InSpec: inSpec}
	if !inSpec {
		res.Host = spec.Host{Name: o.Name}
	}
	checkCtx, cancel := o.checkDeadline(ctx)
	defer cancel()
	if err := s.connect(checkCtx, o.Name); err != nil {
		return nil, err
	}
	m, ok := s.find(o.Name)
	if !ok {
		if !inSpec {
			return nil, refuse("member remove %s: no such host in the spec %s and no such member in the cluster", o.Name, path)
		}
		// An earlier run removed the member and did not get to the spec.
		s.logf("[member] %s is not in the cluster's member list (removed already); removing it from the spec", o.Name)
		res.Members = s.members
		return res, s.forget(c, h)
	}
	res.Member, res.WasMember = m, true

	// Only voting members count for quorum: a learner goes freely.
	var voters, rest []etcdops.Member
	for _, x := range s.members {
		if x.ID != m.ID {
			rest = append(rest, x)
		}
		if !x.IsLearner && x.ID != m.ID {
			voters = append(voters, x)
		}
	}
	if len(rest) == 0 || (!m.IsLearner && len(voters) == 0) {
		return nil, refuse("member remove %s: it is the last voting member; a cluster cannot remove its last member", o.Name)
	}
	healthy := Healthy(checkCtx, s.target, voters)
	cancel()
	warning, err := CheckRemoval(o.Name, m, voters, healthy, o.Force)
	if err != nil {
		return nil, err
	}
	if warning != "" {
		s.logf("warning: %s", warning)
	}

	if !m.IsLearner && len(m.ClientURLs) > 0 {
		to, err := s.moveLeaderAway(ctx, m, healthy)
		if err != nil {
			return nil, fmt.Errorf("member remove %s: %w; nothing was changed", o.Name, err)
		}
		res.LeaderMovedTo = to
	}

	// Ask the others, since the member stops serving once it is removed.
	eps := etcdops.ClientEndpoints(healthy)
	if len(eps) == 0 {
		eps = etcdops.ClientEndpoints(rest)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("member remove %s: no other member serves clients to ask", o.Name)
	}
	var ms []etcdops.Member
	err = s.retryUnhealthy(ctx, "remove a member", func() error {
		var err error
		ms, err = etcdops.RemoveMember(ctx, s.target, m.ID, eps)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("member remove %s: %w; run the same command again once the cluster accepts the change", o.Name, err)
	}
	res.Members = ms
	s.logf("[member] Removed %s from the cluster", describe(m))
	if !inSpec {
		s.logf("note: %s was not in the spec %s; the spec is unchanged", o.Name, path)
		return res, nil
	}
	return res, s.forget(c, h)
}

// CheckRemoval decides whether m may go, given the voting members that
// would remain and those of them that are healthy: a learner always may;
// a voting member only if at least MinMembers voting members remain and
// the healthy ones are a quorum of them, unless force. A refusal is bad
// input naming the member.
func CheckRemoval(name string, m etcdops.Member, voters, healthy []etcdops.Member, force bool) (warning string, err error) {
	if m.IsLearner {
		return "", nil
	}
	if len(voters) < MinMembers && !force {
		return "", refuse("member remove %s: %d voting members would remain, fewer than %d (which keep quorum through the loss of one); --force to go ahead", name, len(voters), MinMembers)
	}
	if quorum := len(voters)/2 + 1; len(healthy) < quorum {
		if !force {
			return "", refuse("member remove %s: only %d of the %d remaining voting members are healthy (%s), fewer than the quorum of %d; --force to go ahead", name, len(healthy), len(voters), names(healthy), quorum)
		}
		return fmt.Sprintf("only %d of the %d remaining voting members are healthy; removing %s anyway (--force)", len(healthy), len(voters), name), nil
	}
	return "", nil
}

// forget records the spec without h and tells the operator what is left
// to do.
func (s *session) forget(c *spec.Cluster, h spec.Host) error {
	n := clone(c)
	n.Hosts = slices.DeleteFunc(n.Hosts, func(x spec.Host) bool { return x.Name == h.Name })
	if err := s.record(n); err != nil {
		return fmt.Errorf("%s is no longer a member of the cluster but %w; run the same command again to finish", h.Name, err)
	}
	s.logf("[member] Removed %s from %s and its endpoint from %s", h.Name, layout.Bundle(s.opts.Out).Spec(), layout.Bundle(s.opts.Out).KubeadmConfig())
	s.logf("%s", removeInstructions(s.opts.Out, n, h))
	return nil
}

// Healthy returns the members that commit a read through raft at their
// first client URL, all asked at once.
func Healthy(ctx context.Context, t *etcdops.Target, ms []etcdops.Member) []etcdops.Member {
	ok := make([]bool, len(ms))
	done := make(chan struct{}, len(ms))
	for i, m := range ms {
		go func() {
			defer func() { done <- struct{}{} }()
			if len(m.ClientURLs) > 0 {
				ok[i] = etcdops.CheckHealth(ctx, t, m.ClientURLs[0]).Healthy
			}
		}()
	}
	for range ms {
		<-done
	}
	var out []etcdops.Member
	for i, m := range ms {
		if ok[i] {
			out = append(out, m)
		}
	}
	return out
}

// moveLeaderAway hands leadership to a healthy member when m leads, and
// returns the new leader's name ("" when m did not lead).
func (s *session) moveLeaderAway(ctx context.Context, m etcdops.Member, healthy []etcdops.Member) (string, error) {
	to, err := MoveLeaderAway(ctx, s.target, m, healthy)
	if err == nil && to != "" {
		s.logf("[member] Moved leadership from %s to %s", m.Name, to)
	}
	return to, err
}

// MoveLeaderAway hands leadership to the most up-to-date of the healthy
// voting members when m leads, and returns the new leader's name ("" when
// m did not lead). Each member is asked at its first client URL.
func MoveLeaderAway(ctx context.Context, t *etcdops.Target, m etcdops.Member, healthy []etcdops.Member) (string, error) {
	st := etcdops.EndpointStatusOf(ctx, t, m.ClientURLs[0])
	if st.Error != "" || !st.IsLeader {
		return "", nil // a member that does not answer does not lead
	}
	// The most up-to-date healthy member takes over.
	var best etcdops.Member
	var bestIndex uint64
	found := false
	for _, x := range healthy {
		xs := etcdops.EndpointStatusOf(ctx, t, x.ClientURLs[0])
		if xs.Error != "" || xs.IsLearner {
			continue
		}
		if !found || xs.RaftIndex > bestIndex {
			best, bestIndex, found = x, xs.RaftIndex, true
		}
	}
	if !found {
		return "", fmt.Errorf("%s leads and no healthy voting member can take over", m.Name)
	}
	if err := etcdops.MoveLeader(ctx, t, m.ClientURLs[0], best.ID, best.ClientURLs[0]); err != nil {
		return "", err
	}
	return best.Name, nil
}

func names(ms []etcdops.Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// removeInstructions tell the operator how to stop the removed member and
// where the control plane's endpoints change.
func removeInstructions(out string, c *spec.Cluster, h spec.Host) string {
	t := shellcmd.Quote(shellcmd.SSHTarget("root", h.Address))
	if c.Systemd() {
		// With DynamicUser= the data lies in /var/lib/private; the
		// folder's link in /var/lib goes with it.
		data := layout.DynamicStateDir(c.Etcd.DataDir)
		return fmt.Sprintf(`
On %[1]s, stop etcd and keep it from starting again, then remove its data, which the
cluster no longer accepts:
  ssh %[2]s %[3]s
  ssh %[2]s %[4]s
Give the control plane the new endpoint list: %[5]s/%[6]s, and on every control-plane node
--etcd-servers=%[7]s in /etc/kubernetes/manifests/kube-apiserver.yaml.
%[5]s/%[1]s and %[5]s/%[1]s.tar.gz are left in place; delete them when the host is gone.`,
			h.Name, t, shellcmd.Quote("systemctl disable --now "+layout.EtcdUnitName),
			shellcmd.Quote("rm -rf "+shellcmd.Quote(data)+" "+shellcmd.Quote(c.Etcd.DataDir)),
			out, layout.KubeadmConfigFile, etcdServers(c))
	}
	return fmt.Sprintf(`
On %[1]s, remove the manifest so that kubelet stops the etcd Pod, then, once the Pod is gone
(crictl ps --name etcd lists nothing), its data, which the cluster no longer accepts:
  ssh %[2]s %[7]s
  ssh %[2]s %[3]s
Give the control plane the new endpoint list: %[4]s/%[5]s, and on every control-plane node
--etcd-servers=%[6]s in /etc/kubernetes/manifests/kube-apiserver.yaml.
%[4]s/%[1]s and %[4]s/%[1]s.tar.gz are left in place; delete them when the host is gone.`,
		h.Name, t, shellcmd.Quote("rm -rf "+shellcmd.Quote(c.Etcd.DataDir)), out, layout.KubeadmConfigFile, etcdServers(c), shellcmd.Quote("rm "+layout.EtcdManifest))
}
