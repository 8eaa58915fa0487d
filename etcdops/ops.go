package etcdops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

// Member is one entry of the cluster's member list.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
}

// Started reports whether the member has joined: etcd gives a member its
// name only once it has started.
func (m Member) Started() bool { return m.Name != "" }

// IDString is the member ID the way etcd prints it.
func (m Member) IDString() string { return FormatID(m.ID) }

// FormatID prints a member ID in hex, as etcd and etcdctl do.
func FormatID(id uint64) string { return fmt.Sprintf("%x", id) }

// EndpointHealth is the outcome of one endpoint's health check.
type EndpointHealth struct {
	Endpoint string
	Healthy  bool
	// Took is the time the read took (or until it failed).
	Took time.Duration
	// Error says why the endpoint is unhealthy; empty when healthy.
	Error string
	// Alarms are the cluster's active alarms, which make every endpoint
	// unhealthy; set only when the read went through.
	Alarms []Alarm
}

// EndpointStatus is one member's view of itself and of raft.
type EndpointStatus struct {
	Endpoint string
	// Name is the member's name from the member list, when known.
	Name             string
	MemberID         uint64
	Version          string
	StorageVersion   string
	DBSize           int64
	DBSizeInUse      int64
	DBSizeQuota      int64
	LeaderID         uint64
	IsLeader         bool
	IsLearner        bool
	RaftTerm         uint64
	RaftIndex        uint64
	RaftAppliedIndex uint64
	// Errors are the member's own reported problems, such as alarms.
	Errors []string
	// Error says why the status could not be read; the other fields are
	// then empty.
	Error string
}

// Members reads the member list with a linearizable request (etcdctl's
// default), so a member cut off from the quorum cannot answer with a stale
// list. Members come sorted by name, then ID; members not started yet last.
func Members(ctx context.Context, t *Target) ([]Member, error) {
	ms, err := t.listMembers(ctx, t.Endpoints, true)
	if err != nil {
		return nil, fmt.Errorf("member list from %s: %w", strings.Join(t.Endpoints, ","), err)
	}
	return ms, nil
}

// listMembers asks any of the endpoints for the member list.
func (t *Target) listMembers(ctx context.Context, endpoints []string, linearizable bool) ([]Member, error) {
	cli, err := t.Client(endpoints...)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	var opts []clientv3.OpOption
	if !linearizable {
		opts = append(opts, clientv3.WithSerializable())
	}
	if linearizable {
		ctx = clientv3.WithRequireLeader(ctx)
	}
	explain := func(err error) error {
		err = cleanError(err, t.Timeout)
		for _, ep := range endpoints {
			if t.unreachable[ep] == nil {
				return err
			}
		}
		if bareTimeout(err) {
			return fmt.Errorf("%w: %v", err, unreachableErr(endpoints, t.unreachable))
		}
		return err
	}
	if len(endpoints) == 1 {
		ex := t.explainer(ctx, endpoints[0])
		defer ex.stop()
		explain = ex.explain
	}
	resp, err := cli.MemberList(ctx, opts...)
	if err != nil {
		return nil, explain(err)
	}
	return toMembers(resp.Members), nil
}

func toMembers(in []*pb.Member) []Member {
	out := make([]Member, 0, len(in))
	for _, m := range in {
		out = append(out, Member{
			ID:         m.ID,
			Name:       m.Name,
			PeerURLs:   slices.Clone(m.PeerURLs),
			ClientURLs: slices.Clone(m.ClientURLs),
			IsLearner:  m.IsLearner,
		})
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.Started() != b.Started() {
			if a.Started() {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// ClientEndpoints are the members' client URLs, in member order, each once.
func ClientEndpoints(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = appendNew(out, m.ClientURLs...)
	}
	return out
}

// Health checks every endpoint at once, each within the target's timeout,
// the way etcdctl endpoint health does: a linearizable read must go
// through raft (permission denied still proves that), and no alarm may be
// raised. Results are in endpoint order.
func Health(ctx context.Context, t *Target) []EndpointHealth {
	return forEach(t.Endpoints, func(ep string) EndpointHealth { return CheckHealth(ctx, t, ep) })
}

// CheckHealth checks one endpoint.
func CheckHealth(ctx context.Context, t *Target, endpoint string) EndpointHealth {
	h := EndpointHealth{Endpoint: endpoint}
	req, err := t.request(ctx, endpoint)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	defer req.close()
	cli, ex := req.cli, req.ex
	ctx = req.ctx
	start := time.Now()
	// A member without a leader says so at once instead of timing out.
	_, err = cli.Get(clientv3.WithRequireLeader(ctx), "health")
	h.Took = time.Since(start)
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		h.Error = "read through raft failed: " + ex.explain(err).Error()
		return h
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		h.Error = "alarm list: " + ex.explain(err).Error()
		return h
	}
	if len(alarms.Alarms) > 0 {
		h.Alarms = t.toAlarms(alarms.Alarms)
		h.Error = "active alarm: " + DescribeAlarms(h.Alarms)
		return h
	}
	h.Healthy = true
	return h
}

// Status asks every endpoint at once for its status, each within the
// target's timeout. Results are in endpoint order.
func Status(ctx context.Context, t *Target) []EndpointStatus {
	names := map[uint64]string{}
	for _, m := range t.Members {
		names[m.ID] = m.Name
	}
	return forEach(t.Endpoints, func(ep string) EndpointStatus {
		s := EndpointStatusOf(ctx, t, ep)
		if s.Error == "" {
			s.Name = names[s.MemberID]
		}
		return s
	})
}

// EndpointStatusOf reads one endpoint's status.
func EndpointStatusOf(ctx context.Context, t *Target, endpoint string) EndpointStatus {
	s := EndpointStatus{Endpoint: endpoint}
	req, err := t.request(ctx, endpoint)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer req.close()
	cli, ex := req.cli, req.ex
	ctx = req.ctx
	r, err := cli.Status(ctx, endpoint)
	if err != nil {
		s.Error = ex.explain(err).Error()
		return s
	}
	if r.Header != nil {
		s.MemberID = r.Header.MemberId
		s.RaftTerm = r.Header.RaftTerm
	}
	s.Version = r.Version
	s.StorageVersion = r.StorageVersion
	s.DBSize = r.DbSize
	s.DBSizeInUse = r.DbSizeInUse
	s.DBSizeQuota = r.DbSizeQuota
	s.LeaderID = r.Leader
	s.IsLeader = r.Leader != 0 && r.Leader == s.MemberID
	s.IsLearner = r.IsLearner
	s.RaftTerm = cmp.Or(r.RaftTerm, s.RaftTerm)
	s.RaftIndex = r.RaftIndex
	s.RaftAppliedIndex = r.RaftAppliedIndex
	s.Errors = slices.Clone(r.Errors)
	return s
}

// forEach runs fn for every endpoint concurrently and keeps their order.
func forEach[T any](endpoints []string, fn func(string) T) []T {
	out := make([]T, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() { out[i] = fn(ep) })
	}
	wg.Wait()
	return out
}

// cleanError turns gRPC's wording into one short line: the status message
// without the "rpc error: code = ..." prefix, and a plain sentence for a
// timeout.
func cleanError(err error, timeout time.Duration) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if s, ok := status.FromError(err); ok && s.Message() != "" {
		msg = s.Message()
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "context deadline exceeded") {
		if i := strings.Index(msg, "latest balancer error: "); i >= 0 {
			return fmt.Errorf("no answer within %v: %s", timeout, strings.TrimSpace(msg[i+len("latest balancer error: "):]))
		}
		return fmt.Errorf("no answer within %v", timeout)
	}
	return errors.New(strings.ReplaceAll(msg, "\n", " "))
}
