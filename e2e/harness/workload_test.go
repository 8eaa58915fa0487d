package harness

import (
	"errors"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	fail := errors.New("context deadline exceeded")
	ops := []writerOp{
		{start: at(0), end: at(10)},                                     // put ok
		{read: true, start: at(10), end: at(12)},                        // read ok
		{start: at(20), end: at(2020), err: fail},                       // outage 1 begins at 20
		{start: at(2120), end: at(4120), err: fail},                     // still failing
		{start: at(4220), end: at(4300)},                                // outage 1 ends: 4280 ms
		{read: true, start: at(4300), end: at(4310), err: fail},         // outage 2 begins at 4300
		{read: true, start: at(4400), end: at(4410), stale: "k: stale"}, // a stale read is an answer: ends outage 2 (110 ms)
		{start: at(5000), end: at(5010)},
		{start: at(6000), end: at(6500), err: errors.New("etcdserver: leader changed")}, // open at stop
	}
	r := summarize(ops, at(7000))
	if r.Acked != 3 || r.Reads != 1 || r.Failed != 4 || len(r.Stale) != 1 {
		t.Errorf("counts: %+v", r)
	}
	if r.Outages != 3 || !r.Open {
		t.Errorf("outages %d open %v, want 3 and open", r.Outages, r.Open)
	}
	if r.LongestOutage != 4280*time.Millisecond || !r.LongestOutageFrom.Equal(at(20)) {
		t.Errorf("longest outage %s from %s, want 4.28s from %s", r.LongestOutage, r.LongestOutageFrom, at(20))
	}
	if r.Duration != 7*time.Second {
		t.Errorf("duration %s", r.Duration)
	}
	if len(r.Errors) != 2 {
		t.Errorf("distinct errors %q, want 2", r.Errors)
	}
	t.Log(r)

	// The open outage counts until stop and can be the longest.
	r = summarize(ops, at(20000))
	if r.LongestOutage != 14*time.Second {
		t.Errorf("open outage: longest %s, want 14s", r.LongestOutage)
	}
	if r := summarize(nil, at(0)); r.Acked != 0 || r.LongestOutage != 0 || r.Open {
		t.Errorf("no requests: %+v", r)
	}
}
