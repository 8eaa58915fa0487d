package etcdops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The alarms etcd raises, as its API names them.
const (
	// AlarmNoSpace: a member's database reached --quota-backend-bytes. The
	// cluster takes no more writes (reads and deletes still work) until
	// the alarm is disarmed.
	AlarmNoSpace = "NOSPACE"
	// AlarmCorrupt: the corruption check found a member whose data differs
	// from the others'. The cluster takes no more writes.
	AlarmCorrupt = "CORRUPT"
)

// Alarm is one active alarm: which member raised it and what it is.
type Alarm struct {
	MemberID uint64
	// Member is the member's name from the member list, when known.
	Member string
	// Type is AlarmNoSpace or AlarmCorrupt.
	Type string
}

// String is "NOSPACE on etcd02 (8e9e05c52164694d)".
func (a Alarm) String() string {
	if a.Member == "" {
		return fmt.Sprintf("%s on member %s", a.Type, FormatID(a.MemberID))
	}
	return fmt.Sprintf("%s on %s (%s)", a.Type, a.Member, FormatID(a.MemberID))
}

// DescribeAlarms is the alarms as one phrase, in a stable order.
func DescribeAlarms(as []Alarm) string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return strings.Join(out, ", ")
}

// toAlarms names each alarm's member from the target's member list and
// sorts them by member name, ID, then type.
func (t *Target) toAlarms(in []*pb.AlarmMember) []Alarm {
	names := map[uint64]string{}
	for _, m := range t.Members {
		names[m.ID] = m.Name
	}
	out := make([]Alarm, 0, len(in))
	for _, a := range in {
		out = append(out, Alarm{MemberID: a.MemberID, Member: names[a.MemberID], Type: a.Alarm.String()})
	}
	slices.SortFunc(out, func(a, b Alarm) int {
		return cmp.Or(strings.Compare(a.Member, b.Member), cmp.Compare(a.MemberID, b.MemberID), strings.Compare(a.Type, b.Type))
	})
	return out
}

// Alarms lists the cluster's active alarms. Alarms are raised and disarmed
// through raft, so every member gives the same answer: all are asked at
// once, within the target's timeout, and the first answer is taken, so
// that a silent member costs nothing.
func Alarms(ctx context.Context, t *Target) ([]Alarm, error) {
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	type answer struct {
		alarms []*pb.AlarmMember
		err    error
	}
	answers := make(chan answer, len(t.Endpoints))
	for _, ep := range t.Endpoints {
		go func() {
			cli, err := t.Client(ep)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer cli.Close()
			ex := t.explainer(ctx, ep)
			defer ex.stop()
			resp, err := cli.AlarmList(ctx)
			if err != nil {
				answers <- answer{err: fmt.Errorf("%s: %w", ep, ex.explain(err))}
				return
			}
			answers <- answer{alarms: resp.Alarms}
		}()
	}
	var errs []string
	for range t.Endpoints {
		a := <-answers
		if a.err == nil {
			return t.toAlarms(a.alarms), nil
		}
		errs = append(errs, a.err.Error())
	}
	return nil, fmt.Errorf("alarm list: %s", strings.Join(errs, "; "))
}

// RefusedError is a change the cluster's state rules out, with the reason
// and what to do instead. Nothing was changed.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// DisarmResult is what DisarmAlarms did.
type DisarmResult struct {
	// Disarmed are the alarms that were active and are gone now.
	Disarmed []Alarm
}

// DisarmAlarms clears the active NOSPACE alarms, once the reason is gone:
// every member must have its database below its quota, with headroom (etcd
// compares the database file's size with --quota-backend-bytes, so after
// a compaction only a defragmentation makes room; raising the quota works
// too), or the next write raises the alarm again. A CORRUPT alarm is
// refused: disarming it does not repair the member whose data differs,
// and the cluster would serve that data. Both refusals are RefusedError.
func DisarmAlarms(ctx context.Context, t *Target) (DisarmResult, error) {
	var res DisarmResult
	active, err := Alarms(ctx, t)
	if err != nil {
		return res, err
	}
	if len(active) == 0 {
		return res, nil
	}
	var corrupt []Alarm
	for _, a := range active {
		if a.Type != AlarmNoSpace {
			corrupt = append(corrupt, a)
		}
	}
	if len(corrupt) > 0 {
		return res, &RefusedError{Reason: fmt.Sprintf("not disarming %s: the member's data differs from the rest of the cluster's, and disarming does not repair it. "+
			"Save a snapshot, take the member out (etcd-staticpod member remove NAME), wipe its data folder and add it again (etcd-staticpod member add NAME=ADDRESS); "+
			"the alarm goes with the old member. If the whole cluster is in doubt, restore from a known-good snapshot (etcd-staticpod snapshot restore)", DescribeAlarms(corrupt))}
	}
	if err := checkRoom(ctx, t); err != nil {
		return res, err
	}
	cli, err := t.Client()
	if err != nil {
		return res, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	for _, a := range active {
		if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			return res, fmt.Errorf("disarm %s: %w", a, cleanError(err, t.Timeout))
		}
		res.Disarmed = append(res.Disarmed, a)
	}
	return res, nil
}

// noSpaceHeadroom: disarming NOSPACE needs 1/20 of the quota free in every
// member's database. etcd raises the alarm when the database plus the
// write's size would reach the quota, so a database just below it raises
// the alarm again at the next large write.
const noSpaceHeadroom = 20

// checkRoom refuses to disarm NOSPACE while a member's database is still
// at (or within 5 % of) its quota.
func checkRoom(ctx context.Context, t *Target) error {
	var full, errs []string
	for _, s := range Status(ctx, t) {
		name := cmp.Or(s.Name, s.Endpoint)
		switch {
		case s.Error != "":
			errs = append(errs, s.Endpoint+": "+s.Error)
		case s.DBSizeQuota > 0 && s.DBSizeQuota-s.DBSize < s.DBSizeQuota/noSpaceHeadroom:
			full = append(full, fmt.Sprintf("%s's database is %s of its %s quota", name, FormatBytes(s.DBSize), FormatBytes(s.DBSizeQuota)))
		}
	}
	if len(full) > 0 {
		return &RefusedError{Reason: fmt.Sprintf("not disarming NOSPACE: %s, so the next write would raise it again. "+
			"Delete what is not needed, then etcd-staticpod compact and etcd-staticpod defrag (which gives the space back), or raise --quota-backend-bytes", strings.Join(full, "; "))}
	}
	if len(errs) > 0 {
		return errors.New("cannot check the database sizes before disarming: " + strings.Join(errs, "; "))
	}
	return nil
}
