package main

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// architecture this tool is built for.
const userHZ = 100

// processStart is when the kernel started this process, so that a
// command's --timeout counts from there, as the caller's clock does, and
// not from main: on a busy machine the Go runtime and the packages' set-up
// alone can take tens of milliseconds. The kernel's record is in 10 ms
// ticks, rounded down, so the deadline errs early. Where it cannot be
// read, it is now.
func processStart() time.Time {
	now := time.Now()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return now
	}
	// Field 2, the command's name, is in parentheses and may hold spaces:
	// the fields after it start at field 3; starttime is field 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return now
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 22-2 {
		return now
	}
	ticks, err := strconv.ParseUint(string(fields[22-3]), 10, 64)
	if err != nil {
		return now
	}
	// starttime counts from boot on the clock that includes suspend.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	age := time.Duration(ts.Nano()) - time.Duration(ticks)*time.Second/userHZ
	if age < 0 {
		return now
	}
	return now.Add(-age)
}
