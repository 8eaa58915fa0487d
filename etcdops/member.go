package etcdops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

// isEtcdError reports whether err is the server error want, however the
// client delivered it: as a gRPC status, as the client's EtcdError, or
// wrapped.
func isEtcdError(err, want error) bool {
	if err == nil {
		return false
	}
	// Exact matches only: "can only promote a learner member" is the
	// start of "can only promote a learner member which is in sync with
	// leader".
	desc := rpctypes.ErrorDesc(want)
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) && se.GRPCStatus().Message() == desc {
		return true
	}
	return errors.Is(err, rpctypes.Error(want)) || err.Error() == desc || strings.HasSuffix(err.Error(), ": "+desc)
}

// IsLearnerNotReady reports etcd's "can only promote a learner member which
// is in sync with leader": the learner has not caught up yet.
func IsLearnerNotReady(err error) bool { return isEtcdError(err, rpctypes.ErrGRPCLearnerNotReady) }

// IsNotLearner reports etcd's "can only promote a learner member": the
// member votes already.
func IsNotLearner(err error) bool { return isEtcdError(err, rpctypes.ErrGRPCMemberNotLearner) }

// IsMemberNotFound reports etcd's "member not found".
func IsMemberNotFound(err error) bool { return isEtcdError(err, rpctypes.ErrGRPCMemberNotFound) }

// IsTooManyLearners reports etcd's "too many learner members in cluster".
func IsTooManyLearners(err error) bool { return isEtcdError(err, rpctypes.ErrGRPCTooManyLearners) }

// IsUnhealthy reports etcd's "unhealthy cluster": a membership change
// refused, before it was proposed, because the leader has not been in touch
// with every member (for an add) or with a quorum of the rest (for a
// remove) for the last five seconds, as after a member restarted. Trying
// again later is safe.
func IsUnhealthy(err error) bool { return isEtcdError(err, rpctypes.ErrGRPCUnhealthy) }

// AddMember adds a member with the given peer URLs, as a learner unless
// voting, through the target's endpoints. It returns the new member (not
// started: no name yet) and the member list after the change. A member
// add is not retried: a request that timed out may have been applied, so
// the caller must look at the member list before trying again.
func AddMember(ctx context.Context, t *Target, peerURLs []string, voting bool) (Member, []Member, error) {
	cli, err := t.Client()
	if err != nil {
		return Member{}, nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	var resp *clientv3.MemberAddResponse
	if voting {
		resp, err = cli.MemberAdd(clientv3.WithRequireLeader(ctx), peerURLs)
	} else {
		resp, err = cli.MemberAddAsLearner(clientv3.WithRequireLeader(ctx), peerURLs)
	}
	if err != nil {
		return Member{}, nil, fmt.Errorf("member add %s: %w", strings.Join(peerURLs, ","), cleanError(err, t.Timeout))
	}
	added := toMembers(resp.Members)
	for _, m := range added {
		if m.ID == resp.Member.ID {
			return m, added, nil
		}
	}
	return Member{}, added, fmt.Errorf("member add %s: the answer does not list the new member %s", strings.Join(peerURLs, ","), FormatID(resp.Member.ID))
}

// RemoveMember removes the member by ID, asking only the given endpoints
// (those of other members: a member cannot be asked to remove itself
// reliably, since it stops serving once the removal is applied). It
// returns the member list after the change.
func RemoveMember(ctx context.Context, t *Target, id uint64, endpoints []string) ([]Member, error) {
	cli, err := t.Client(endpoints...)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	resp, err := cli.MemberRemove(clientv3.WithRequireLeader(ctx), id)
	if err != nil {
		return nil, fmt.Errorf("member remove %s: %w", FormatID(id), cleanError(err, t.Timeout))
	}
	return toMembers(resp.Members), nil
}

// PromoteMember makes a learner a voting member: one attempt. etcd refuses
// a learner that is not in sync with the leader (IsLearnerNotReady).
func PromoteMember(ctx context.Context, t *Target, id uint64) ([]Member, error) {
	cli, err := t.Client()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	resp, err := cli.MemberPromote(clientv3.WithRequireLeader(ctx), id)
	if err != nil {
		// The raw error is kept for IsLearnerNotReady and friends.
		return nil, fmt.Errorf("member promote %s: %w", FormatID(id), err)
	}
	return toMembers(resp.Members), nil
}

// PromoteState is what PromoteWhenReady is waiting for.
type PromoteState string

// The states a learner passes through on its way to a vote.
const (
	// PromoteNotStarted: the member was added but has not joined yet.
	PromoteNotStarted PromoteState = "not started"
	// PromoteCatchingUp: it runs, but etcd says it is not in sync yet.
	PromoteCatchingUp PromoteState = "catching up"
	// PromoteRetrying: the last attempt failed for another reason, such as
	// an election; it is tried again.
	PromoteRetrying PromoteState = "retrying"
	// PromoteDone: the member votes.
	PromoteDone PromoteState = "promoted"
)

// PromoteProgress is reported whenever the state changes, and every
// ReportEvery while it does not.
type PromoteProgress struct {
	State  PromoteState
	Member Member
	// Attempts counts promote requests sent so far.
	Attempts int
	Waited   time.Duration
	// Err is the last error, if any.
	Err error
}

// Backoff bounds of PromoteWhenReady: the first retry comes soon, since a
// learner with a small database catches up in well under a second.
const (
	promoteFirstBackoff = 200 * time.Millisecond
	promoteMaxBackoff   = 2 * time.Second
	// PromoteReportEvery is how often an unchanged state is reported again.
	PromoteReportEvery = 15 * time.Second
)

// PromoteWhenReady waits, until ctx ends, for the learner id to start and
// catch up, and promotes it, retrying with backoff while etcd answers that
// it is not in sync with the leader (or any other failure a retry may
// cure, such as an election). A member that votes already is success.
// report, when not nil, hears of every change of state.
func PromoteWhenReady(ctx context.Context, t *Target, id uint64, report func(PromoteProgress)) (Member, []Member, error) {
	start := time.Now()
	backoff := promoteFirstBackoff
	var p PromoteProgress
	var lastReport time.Time
	tell := func(state PromoteState, m Member, err error) {
		changed := state != p.State
		p.State, p.Member, p.Err, p.Waited = state, m, err, time.Since(start)
		if report != nil && (changed || time.Since(lastReport) >= PromoteReportEvery) {
			lastReport = time.Now()
			report(p)
		}
	}
	for {
		ms, err := Members(ctx, t)
		var m Member
		found := false
		if err == nil {
			for _, x := range ms {
				if x.ID == id {
					m, found = x, true
				}
			}
			if !found {
				return Member{}, ms, fmt.Errorf("member %s is no longer in the cluster", FormatID(id))
			}
		}
		switch {
		case err != nil:
			tell(PromoteRetrying, m, err)
		case !m.IsLearner:
			tell(PromoteDone, m, nil)
			return m, ms, nil
		case !m.Started():
			tell(PromoteNotStarted, m, nil)
		default:
			p.Attempts++
			after, perr := PromoteMember(ctx, t, id)
			switch {
			case IsLearnerNotReady(perr):
				tell(PromoteCatchingUp, m, perr)
			case perr == nil || IsNotLearner(perr):
				// The member list says so; the loop checks it again.
				if perr == nil {
					for _, x := range after {
						if x.ID == id && !x.IsLearner {
							tell(PromoteDone, x, nil)
							return x, after, nil
						}
					}
				}
				tell(PromoteRetrying, m, perr)
			case IsMemberNotFound(perr):
				return Member{}, nil, fmt.Errorf("member %s is no longer in the cluster", FormatID(id))
			default:
				tell(PromoteRetrying, m, cleanError(perr, t.Timeout))
			}
		}
		select {
		case <-ctx.Done():
			name := m.Name
			if name == "" {
				name = FormatID(id)
			}
			why := string(p.State)
			if p.Err != nil && p.State != PromoteCatchingUp {
				why += ": " + cleanError(p.Err, t.Timeout).Error()
			}
			return m, ms, fmt.Errorf("learner %s not promoted after %s (%d attempts; last state: %s)", name, time.Since(start).Round(time.Second), p.Attempts, why)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, promoteMaxBackoff)
	}
}
