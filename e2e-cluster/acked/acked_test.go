package acked

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// A write acknowledged but not read back is reported lost, by name, in the
// line the run checks and in the error.
func TestLostWriteReported(t *testing.T) {
	var log bytes.Buffer
	l := New("w", &log, t0)
	l.Ack("k1", at(100))
	l.Ack("k2", at(200))
	l.Fail()
	l.Ack("k3", at(400))
	s := l.Check(map[string]bool{"k1": true, "k3": true, "other": true}, at(500))
	if len(s.Lost) != 1 || s.Lost[0] != "k2" {
		t.Fatalf("lost %v, want [k2]", s.Lost)
	}
	var out bytes.Buffer
	s.Print(&out, "w", "keys")
	if want := "w: 1 lost of 3 acknowledged writes (1 failed or unanswered, 3 keys found) over 1s\n"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("printed %q, want it to start %q", out.String(), want)
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "k2") {
		t.Errorf("Err() = %v, want one naming k2", err)
	}
	if log.Len() != 0 {
		t.Errorf("logged %q with no stretch of a second", log.String())
	}
}

// Every acknowledged write read back: none lost, no error.
func TestNoneLost(t *testing.T) {
	l := New("w", &bytes.Buffer{}, t0)
	l.Ack("k1", at(100))
	l.Ack("k2", at(200))
	s := l.Check(map[string]bool{"k1": true, "k2": true}, at(300))
	var out bytes.Buffer
	s.Print(&out, "etcdwriter", "keys")
	if !strings.HasPrefix(out.String(), "etcdwriter: 0 lost of 2 acknowledged writes") || s.Err() != nil {
		t.Errorf("printed %q, Err() = %v", out.String(), s.Err())
	}
}

// The longest stretch counts from the start and to the end of writing, and a
// stretch of GapReport or more is logged when it ends, with the failures in it.
func TestLongestStretch(t *testing.T) {
	var log bytes.Buffer
	l := New("w", &log, t0)
	l.Ack("k1", at(100))
	l.Fail()
	l.Fail()
	l.Ack("k2", at(1600)) // 1.5 s after k1
	l.Fail()
	l.Ack("k3", at(1700))
	if got, want := log.String(), "w: no acknowledged write for 1.5s (03:04:05.1 to 03:04:06.6), 2 failed or unanswered meanwhile\n"; got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
	if a, f := l.Counts(); a != 3 || f != 3 {
		t.Errorf("counts %d acknowledged, %d failed; want 3, 3", a, f)
	}
	s := l.Check(map[string]bool{"k1": true, "k2": true, "k3": true}, at(1800))
	if s.Gap != 1500*time.Millisecond || !s.GapEnd.Equal(at(1600)) {
		t.Errorf("longest stretch %s ending %s, want 1.5s ending %s", s.Gap, s.GapEnd, at(1600))
	}
	// Nothing acknowledged: the whole span is the stretch.
	s = New("w", &log, t0).Check(nil, at(2500))
	if s.Gap != 2500*time.Millisecond || s.Acked != 0 {
		t.Errorf("with no write: stretch %s, %d acknowledged", s.Gap, s.Acked)
	}
}

// ReadBack tries again until the read succeeds, and gives the last error
// once its time is up.
func TestReadBack(t *testing.T) {
	tries := 0
	err := ReadBack(time.Minute, func() error {
		if tries++; tries < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Errorf("after %d tries: %v, want success on the third", tries, err)
	}
	tries = 0
	err = ReadBack(0, func() error { tries++; return errors.New("down") })
	if err == nil || err.Error() != "down" || tries != 1 {
		t.Errorf("with no time: %d tries, %v; want one try and its error", tries, err)
	}
}
