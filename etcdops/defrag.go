package etcdops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The default --min-free: a tenth of the database, and at least 16 MiB,
// below which a defragmentation stalls a member for little gain.
const (
	DefaultMinFreePercent = 10
	DefaultMinFreeBytes   = 16 << 20
)

// DefaultDefragWait bounds one member's defragmentation and the wait
// for the cluster's health after it. etcd copies the whole database while
// the member stalls; a few GiB take minutes on a slow disk.
const DefaultDefragWait = 10 * time.Minute

// MinFree is how much free space (database size minus size in use) a
// member must have before it is worth defragmenting: a size, or a share
// of the database. The zero value is the default, a tenth of the database
// and at least DefaultMinFreeBytes.
type MinFree struct {
	// Bytes is a fixed size; used when Percent is not set.
	Bytes int64
	// Percent, when set, is a share of the database's size, 0 to 100.
	Percent    float64
	HasPercent bool
	// Set is false for the default.
	Set bool
	// Text is what was parsed, for messages.
	Text string
}

var sizeRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// sizeUnits are the units ParseMinFree accepts: SI and IEC, with or
// without the trailing B, as Kubernetes quantities and etcd's logs write
// them.
var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"k": 1e3, "K": 1e3, "kB": 1e3, "KB": 1e3, "Ki": 1 << 10, "KiB": 1 << 10,
	"M": 1e6, "MB": 1e6, "Mi": 1 << 20, "MiB": 1 << 20,
	"G": 1e9, "GB": 1e9, "Gi": 1 << 30, "GiB": 1 << 30,
	"T": 1e12, "TB": 1e12, "Ti": 1 << 40, "TiB": 1 << 40,
}

// ParseMinFree reads a size such as 64MiB, 100MB or 1048576, or a share
// such as 10%. A bad --min-free is a *badinput.Error.
func ParseMinFree(s string) (MinFree, error) {
	in := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(in, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
			return MinFree{}, optionErr("min-free", s, "want a share from 0%% to 100%%, such as 10%%")
		}
		return MinFree{Percent: v, HasPercent: true, Set: true, Text: in}, nil
	}
	m := sizeRe.FindStringSubmatch(in)
	if m == nil {
		return MinFree{}, optionErr("min-free", s, "want a size such as 64MiB or a share of the database such as 10%%")
	}
	unit, ok := sizeUnits[m[2]]
	if !ok {
		return MinFree{}, optionErr("min-free", s, "unit %q: want B, kB, MB, GB, TB, KiB, MiB, GiB or TiB", m[2])
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || v*unit > 1<<62 {
		return MinFree{}, optionErr("min-free", s, "too large")
	}
	return MinFree{Bytes: int64(v * unit), Set: true, Text: in}, nil
}

// Threshold is the free space, in bytes, above which a database of dbSize
// bytes is defragmented.
func (m MinFree) Threshold(dbSize int64) int64 {
	switch {
	case !m.Set:
		return max(dbSize*DefaultMinFreePercent/100, DefaultMinFreeBytes)
	case m.HasPercent:
		return int64(float64(dbSize) * m.Percent / 100)
	}
	return m.Bytes
}

func (m MinFree) String() string {
	if !m.Set {
		return fmt.Sprintf("%d%% of the database, at least %s", DefaultMinFreePercent, FormatBytes(DefaultMinFreeBytes))
	}
	return m.Text
}

// FormatBytes prints a size in IEC units, as --min-free takes them: 512 B,
// 3.2 MiB, 8.0 GiB.
func FormatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, unit := float64(n), -1
	for (f >= 1024 || f <= -1024) && unit < 5 {
		f /= 1024
		unit++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[unit])
}

// DefragOptions say which members to defragment and how.
type DefragOptions struct {
	// MinFree is the free space a member needs to be defragmented; the
	// zero value is the default.
	MinFree MinFree
	// All defragments every member whatever its free space.
	All bool
	// DryRun checks the cluster and says what would be done; nothing is
	// defragmented.
	DryRun bool
	// Wait bounds one member's defragmentation and, after it, the
	// wait for the cluster's health; 0 means DefaultDefragWait.
	Wait time.Duration
	// ChecksBy, when set, ends the checks before the first member (the
	// member list, health and status of every member) at that time, as
	// the command's --timeout.
	ChecksBy time.Time
	// Logf, when set, hears of the progress, one line at a time.
	Logf func(format string, args ...any)
}

// DefragResult is one member's outcome.
type DefragResult struct {
	Name     string
	Endpoint string
	MemberID uint64
	// Leader says the member led the cluster when its turn came.
	Leader bool
	// Before and After are the database's size in bytes (the file etcd
	// keeps, which the quota is measured against); After is 0 when the
	// member was not defragmented.
	Before, After int64
	// BeforeInUse and AfterInUse are the bytes the data uses.
	BeforeInUse, AfterInUse int64
	Took                    time.Duration
	// Skipped is set when the member was not defragmented; Reason says
	// why, or why it was.
	Skipped bool
	Reason  string
}

// Free is the space a defragmentation gives back, as the status before it
// showed it.
func (r DefragResult) Free() int64 { return r.Before - r.BeforeInUse }

// Defrag defragments the target's members one at a time, never two at
// once: a member stalls while etcd copies its database, so followers go
// first and the leader last, each only when its free space is above the
// threshold (or with All), and between two members the cluster must be
// healthy again. An active NOSPACE alarm does not count against its health:
// defragmenting is how the space it needs is given back. The cluster must
// be healthy before the first member, or nothing is done.
//
// The results are in the order the members were taken, the skipped ones
// included; on an error they hold what was done until then.
func Defrag(ctx context.Context, t *Target, o DefragOptions) ([]DefragResult, error) {
	if o.Wait <= 0 {
		o.Wait = DefaultDefragWait
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	checks := ctx
	if !o.ChecksBy.IsZero() {
		var cancel context.CancelFunc
		checks, cancel = context.WithDeadline(ctx, o.ChecksBy)
		defer cancel()
	}
	if t.Members == nil {
		// Names for the messages when the endpoints were given.
		if ms, err := Members(checks, t); err == nil {
			t.Members = ms
		}
	}
	var sts []EndpointStatus
	var herr error
	var wg sync.WaitGroup
	wg.Go(func() { herr = healthyForDefrag(checks, t) })
	wg.Go(func() { sts = Status(checks, t) })
	wg.Wait()
	if herr != nil {
		return nil, fmt.Errorf("the cluster is not healthy, so no member is defragmented (each stalls while it runs): %w", herr)
	}
	var plan []DefragResult
	for _, s := range sts {
		if s.Error != "" {
			return nil, fmt.Errorf("no status from %s: %s", s.Endpoint, s.Error)
		}
		r := DefragResult{Name: s.Name, Endpoint: s.Endpoint, MemberID: s.MemberID, Leader: s.IsLeader, Before: s.DBSize, BeforeInUse: s.DBSizeInUse}
		threshold := o.MinFree.Threshold(s.DBSize)
		free := r.Free()
		switch {
		case o.All:
			r.Reason = fmt.Sprintf("--all (%s free of %s)", FormatBytes(free), FormatBytes(s.DBSize))
		case free > threshold:
			r.Reason = fmt.Sprintf("%s free of %s, above %s", FormatBytes(free), FormatBytes(s.DBSize), FormatBytes(threshold))
		default:
			r.Skipped = true
			r.Reason = fmt.Sprintf("%s free of %s, not above --min-free %s (%s)", FormatBytes(free), FormatBytes(s.DBSize), FormatBytes(threshold), o.MinFree)
		}
		plan = append(plan, r)
	}
	// Followers in name order, the leader last.
	slices.SortStableFunc(plan, func(a, b DefragResult) int {
		if a.Leader != b.Leader {
			if b.Leader {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Endpoint, b.Endpoint))
	})
	if o.DryRun {
		for i := range plan {
			if !plan[i].Skipped {
				plan[i].Skipped = true
				plan[i].Reason = "dry run: would defragment, " + plan[i].Reason
			}
		}
		return plan, nil
	}

	var done []DefragResult
	var todo []DefragResult
	for _, r := range plan {
		if r.Skipped {
			done = append(done, r)
			logf("%s: skipped: %s", label(r), r.Reason)
		} else {
			todo = append(todo, r)
		}
	}
	first := true
	for len(todo) > 0 {
		if !first {
			if err := waitHealthyForDefrag(ctx, t, o.Wait); err != nil {
				return done, fmt.Errorf("after defragmenting %s the cluster did not become healthy within %v, so %s %s not defragmented: %w",
					label(done[len(done)-1]), o.Wait, resultNames(todo), plural(len(todo), "is", "are"), err)
			}
		}
		first = false
		// The leader may have changed since the plan: take a member that
		// does not lead now, the current leader only when it is the last.
		leader, lerr := Leader(ctx, t)
		next := 0
		if lerr == nil {
			next = slices.IndexFunc(todo, func(r DefragResult) bool { return r.MemberID != leader.MemberID })
			if next < 0 {
				next = 0
			}
		}
		r := todo[next]
		todo = slices.Delete(todo, next, next+1)
		s := EndpointStatusOf(ctx, t, r.Endpoint)
		if s.Error != "" {
			return append(done, r), fmt.Errorf("no status from %s before defragmenting it: %s", label(r), s.Error)
		}
		r.Leader = s.IsLeader
		r.Before, r.BeforeInUse = s.DBSize, s.DBSizeInUse
		logf("%s: defragmenting%s: %s, %s in use", label(r), leaderNote(r.Leader), FormatBytes(r.Before), FormatBytes(r.BeforeInUse))
		took, err := defragment(ctx, t, r.Endpoint, o.Wait)
		r.Took = took
		if err != nil {
			r.Reason = "failed: " + err.Error()
			return append(done, r), fmt.Errorf("defragment %s: %w", label(r), err)
		}
		if s := EndpointStatusOf(ctx, t, r.Endpoint); s.Error == "" {
			r.After, r.AfterInUse = s.DBSize, s.DBSizeInUse
		}
		logf("%s: %s -> %s in %v", label(r), FormatBytes(r.Before), FormatBytes(r.After), took.Round(time.Millisecond))
		done = append(done, r)
	}
	if first {
		return done, nil // nothing was defragmented
	}
	if err := waitHealthyForDefrag(ctx, t, o.Wait); err != nil {
		return done, fmt.Errorf("after defragmenting %s the cluster did not become healthy within %v: %w", label(done[len(done)-1]), o.Wait, err)
	}
	return done, nil
}

// defragment runs one member's defragmentation.
func defragment(ctx context.Context, t *Target, endpoint string, timeout time.Duration) (time.Duration, error) {
	cli, err := t.Client(endpoint)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	_, err = cli.Defragment(ctx, endpoint)
	took := time.Since(start)
	if err != nil {
		return took, cleanError(err, timeout)
	}
	return took, nil
}

// healthyForDefrag checks every endpoint once: a read through raft on each,
// and no alarm other than NOSPACE.
func healthyForDefrag(ctx context.Context, t *Target) error {
	var bad []string
	for _, h := range Health(ctx, t) {
		if h.Healthy || onlyNoSpace(h.Alarms) {
			continue
		}
		bad = append(bad, h.Endpoint+": "+h.Error)
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// waitHealthyForDefrag polls healthyForDefrag until it passes or timeout.
func waitHealthyForDefrag(ctx context.Context, t *Target, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := healthyForDefrag(ctx, t)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// onlyNoSpace reports whether there are alarms and all are NOSPACE.
func onlyNoSpace(as []Alarm) bool {
	if len(as) == 0 {
		return false
	}
	for _, a := range as {
		if a.Type != AlarmNoSpace {
			return false
		}
	}
	return true
}

func label(r DefragResult) string {
	if r.Name == "" {
		return r.Endpoint
	}
	return r.Name + " (" + r.Endpoint + ")"
}

func leaderNote(leader bool) string {
	if leader {
		return " (the leader)"
	}
	return ""
}

func resultNames(rs []DefragResult) string {
	var out []string
	for _, r := range rs {
		out = append(out, cmp.Or(r.Name, r.Endpoint))
	}
	return strings.Join(out, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
