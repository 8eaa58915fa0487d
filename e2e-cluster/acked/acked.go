// Package acked keeps the books of the whole-cluster run's writers (writer,
// etcdwriter): which writes were acknowledged and when, each stretch without
// an acknowledged write as it ends, and at the end which acknowledged writes a
// read-back no longer finds. It does no I/O of its own beyond the lines it
// prints, and is not safe for concurrent use.
package acked

import (
	"fmt"
	"io"
	"sort"
	"time"
)

// GapReport is the shortest stretch without an acknowledged write that is
// logged as it ends, so that the log shows which step it fell in.
const GapReport = time.Second

// Ledger records one writer's writes.
type Ledger struct {
	name        string
	log         io.Writer
	start       time.Time
	acked       map[string]time.Time
	failed      int
	lastAck     time.Time
	failedAtAck int
}

// ReadBack runs read, which lists what the writer wrote, until it
// succeeds, a second apart, for at most within: the read-back may come
// while the cluster still settles after the run's last step.
func ReadBack(within time.Duration, read func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := read()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}

// New starts the books of the writer called name (the prefix of its lines),
// which logs to log, at start.
func New(name string, log io.Writer, start time.Time) *Ledger {
	return &Ledger{name: name, log: log, start: start, acked: map[string]time.Time{}, lastAck: start}
}

// Ack records that the write of key was acknowledged at at, and logs the
// stretch without one it ends when that was GapReport or longer.
func (l *Ledger) Ack(key string, at time.Time) {
	l.acked[key] = at
	if d := at.Sub(l.lastAck); d >= GapReport {
		fmt.Fprintf(l.log, "%s: no acknowledged write for %s (%s to %s), %d failed or unanswered meanwhile\n",
			l.name, d.Round(time.Millisecond), l.lastAck.UTC().Format("15:04:05.0"), at.UTC().Format("15:04:05.0"), l.failed-l.failedAtAck)
	}
	l.lastAck, l.failedAtAck = at, l.failed
}

// Fail records a write that failed or was not answered.
func (l *Ledger) Fail() { l.failed++ }

// Counts is the number of acknowledged and of failed writes so far.
func (l *Ledger) Counts() (acked, failed int) { return len(l.acked), l.failed }

// Summary is what a read-back found of the acknowledged writes.
type Summary struct {
	// Lost are the acknowledged writes not found, sorted.
	Lost                 []string
	Acked, Failed, Found int
	// Span is from the start to the end of writing; Gap the longest stretch
	// in it without an acknowledged write (the start and the end count as
	// its bounds), ending at GapEnd.
	Span, Gap time.Duration
	GapEnd    time.Time
}

// Check compares the acknowledged writes with found, the keys a read-back
// returned after writing stopped at end.
func (l *Ledger) Check(found map[string]bool, end time.Time) Summary {
	s := Summary{Acked: len(l.acked), Failed: l.failed, Found: len(found), Span: end.Sub(l.start)}
	times := make([]time.Time, 0, len(l.acked)+2)
	times = append(times, l.start, end)
	for key, at := range l.acked {
		if !found[key] {
			s.Lost = append(s.Lost, key)
		}
		times = append(times, at)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d > s.Gap {
			s.Gap, s.GapEnd = d, times[i]
		}
	}
	sort.Strings(s.Lost)
	return s
}

// Print writes the summary's two lines, "NAME: N lost of M acknowledged
// writes (...)" and the longest stretch, for the run to check; found names
// what the read-back counted ("keys", "ConfigMaps").
func (s Summary) Print(w io.Writer, name, found string) {
	fmt.Fprintf(w, "%s: %d lost of %d acknowledged writes (%d failed or unanswered, %d %s found) over %s\n",
		name, len(s.Lost), s.Acked, s.Failed, s.Found, found, s.Span.Round(time.Second))
	fmt.Fprintf(w, "%s: longest stretch without an acknowledged write: %s (ended %s)\n",
		name, s.Gap.Round(time.Millisecond), s.GapEnd.UTC().Format("15:04:05"))
}

// Err is an error naming the lost writes, nil when none was lost.
func (s Summary) Err() error {
	if len(s.Lost) > 0 {
		return fmt.Errorf("acknowledged but missing: %v", s.Lost)
	}
	return nil
}
