package main

import (
	"testing"
	"time"
)

// TestProcessStart: the kernel's start of this test process lies before
// now and before the test began, in the past few minutes, the same on
// every call to within the kernel's 10 ms tick.
func TestProcessStart(t *testing.T) {
	begun := time.Now()
	a := processStart()
	time.Sleep(30 * time.Millisecond)
	b := processStart()
	if !a.Before(begun) || a.Before(begun.Add(-10*time.Minute)) {
		t.Fatalf("process start %v, test began %v", a, begun)
	}
	if d := b.Sub(a).Abs(); d > 10*time.Millisecond {
		t.Fatalf("two reads differ by %v", d)
	}
	t.Logf("this process started %v before the test", begun.Sub(a).Round(time.Millisecond))
}
