package etcdops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
)

// Leader asks every endpoint at once for its status and returns the
// leader's as soon as it has answered, so that a silent member costs
// nothing when the leader answers.
func Leader(ctx context.Context, t *Target, endpoints ...string) (EndpointStatus, error) {
	if len(endpoints) == 0 {
		endpoints = t.Endpoints
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan EndpointStatus, len(endpoints))
	for _, ep := range endpoints {
		go func() { answers <- EndpointStatusOf(ctx, t, ep) }()
	}
	var errs []string
	for range endpoints {
		s := <-answers
		if s.Error == "" && s.IsLeader {
			return s, nil
		}
		if s.Error != "" {
			errs = append(errs, s.Endpoint+": "+s.Error)
		}
	}
	slices.Sort(errs)
	msg := "no endpoint is the leader"
	if len(errs) > 0 {
		msg += " (" + strings.Join(errs, "; ") + ")"
	}
	return EndpointStatus{}, errors.New(msg)
}

// MoveLeader asks the leader, at leaderEndpoint, to hand leadership to the
// member to, and waits until that member reports itself the leader. The
// request and the wait are each bounded by the target's timeout.
func MoveLeader(ctx context.Context, t *Target, leaderEndpoint string, to uint64, toEndpoint string) error {
	cli, err := t.Client(leaderEndpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	ex := t.explainer(rctx, leaderEndpoint)
	if _, err := cli.MoveLeader(rctx, to); err != nil {
		return fmt.Errorf("move leader to %s: %w", FormatID(to), ex.explain(err))
	}
	ex.stop()
	// MoveLeader returns once the transfer is done; the check makes sure
	// the new leader sees itself as such before the caller goes on.
	wctx, wcancel := context.WithTimeout(ctx, t.Timeout)
	defer wcancel()
	for {
		s := EndpointStatusOf(wctx, t, toEndpoint)
		if s.Error == "" && s.IsLeader {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("move leader to %s: %w", FormatID(to), ctx.Err())
		case <-wctx.Done():
			return fmt.Errorf("move leader to %s: %s does not report itself the leader within %v", FormatID(to), toEndpoint, t.Timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LeaderMove is what TransferLeadership did.
type LeaderMove struct {
	// From and To are the members' names; equal when To led already.
	From, To string
	// FromID and ToID are their IDs.
	FromID, ToID uint64
	// Took is the time from the request until To reported itself the
	// leader; 0 when nothing was done.
	Took time.Duration
}

// TransferLeadership makes the member called name the leader (etcd's
// MoveLeader, sent to the current leader), and returns once it reports
// itself the leader. A name that is not a started voting member is an
// *badinput.Error; a member that leads already is left alone.
func TransferLeadership(ctx context.Context, t *Target, name string) (LeaderMove, error) {
	var mv LeaderMove
	members := t.Members
	if members == nil {
		var err error
		if members, err = Members(ctx, t); err != nil {
			return mv, err
		}
	}
	var to *Member
	var names []string
	for i, m := range members {
		if m.Started() {
			names = append(names, m.Name)
		}
		if m.Name == name {
			to = &members[i]
		}
	}
	switch {
	case to == nil:
		return mv, &badinput.Error{What: "member", Value: name, Err: fmt.Errorf("not in the member list (%s)", strings.Join(names, ", "))}
	case to.IsLearner:
		return mv, &badinput.Error{What: "member", Value: name, Err: errors.New("is a learner: only a voting member can lead; promote it first")}
	case len(to.ClientURLs) == 0:
		return mv, &badinput.Error{What: "member", Value: name, Err: errors.New("advertises no client URL")}
	}
	mv.To, mv.ToID = to.Name, to.ID
	leader, err := Leader(ctx, t, ClientEndpoints(members)...)
	if err != nil {
		return mv, fmt.Errorf("find the leader: %w", err)
	}
	mv.FromID, mv.From = leader.MemberID, FormatID(leader.MemberID)
	for _, m := range members {
		if m.ID == leader.MemberID {
			mv.From = m.Name
		}
	}
	if leader.MemberID == to.ID {
		return mv, nil
	}
	start := time.Now()
	if err := MoveLeader(ctx, t, leader.Endpoint, to.ID, to.ClientURLs[0]); err != nil {
		return mv, fmt.Errorf("from %s to %s: %w", mv.From, mv.To, err)
	}
	mv.Took = time.Since(start)
	return mv, nil
}
