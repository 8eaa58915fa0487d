package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// printStartEnv makes this test binary print its own processStart and exit,
// so that a fresh process can be measured from outside.
const printStartEnv = "ETCD_STATICPOD_TEST_PRINT_START"

// TestProcessStart: a child process that sleeps half a second reads its
// own start as the moment it was started (to within the kernel's 10 ms
// tick, rounded down), not as the moment it reads, and two readings agree.
func TestProcessStart(t *testing.T) {
	if os.Getenv(printStartEnv) == "1" {
		// A reading of the clock instead of the start would come after
		// this sleep, and fail the bound below.
		time.Sleep(500 * time.Millisecond)
		a := processStart()
		time.Sleep(30 * time.Millisecond)
		b := processStart()
		fmt.Printf("%d %d\n", a.UnixNano(), b.UnixNano())
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessStart$")
	cmd.Env = append(os.Environ(), printStartEnv+"=1")
	before := time.Now()
	out, err := cmd.Output()
	after := time.Now()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		t.Fatalf("child printed %q", out)
	}
	var reads [2]time.Time
	for i, f := range fields {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("child printed %q", out)
		}
		reads[i] = time.Unix(0, n)
	}
	const tick = 20 * time.Millisecond
	if reads[0].Before(before.Add(-tick)) || reads[0].After(before.Add(400*time.Millisecond)) {
		t.Fatalf("child's start %v is not within 400 ms after its exec at %v (exit %v)", reads[0], before, after)
	}
	if d := reads[1].Sub(reads[0]).Abs(); d > 10*time.Millisecond {
		t.Fatalf("two reads differ by %v", d)
	}
	t.Logf("the child's start read %v after its exec", reads[0].Sub(before).Round(time.Millisecond))
}
