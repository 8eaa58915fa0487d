package calendar

import (
	"os/exec"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/testtool"
)

// expressions are schedules people write and near misses, each with
// whether systemd takes it.
var expressions = []struct {
	expr string
	ok   bool
}{
	{"daily", true}, {"Daily", true}, {"MINUTELY", true}, {"hourly", true}, {"weekly", true},
	{"monthly", true}, {"yearly", true}, {"annually", true}, {"quarterly", true}, {"semiannually", true},
	{"daily UTC", true}, {"weekly UTC", true},
	{"Mon..Fri 02:00", true}, {"*-*-* 03:15:00", true}, {"Sat,Sun *-*-* 1:5", true}, {"*:0/15", true},
	{"*-*-1/2 4:00", true}, {"*-02~03", true}, {"*~01", true}, {"*-*~1..3", true}, {"03:00 UTC", true}, {"00:00 utc", true},
	{"03:00 Europe/Berlin", true}, {"Mon 2024-01-01", true}, {"2199-12-31", true}, {"*-*-* *:*:*", true},
	{"mon 3:00", true}, {"Monday 1:00", true}, {"Mon..Fri,Sun 12:00", true}, {"03:00:30.5", true}, {"12,14:00", true},
	{"12..14:00", true}, {"0..23/2:00", true}, {"0/2:00", true}, {"1..5-01", true}, {"Mon..Fri", true},
	{"Mon..Fri *-*-* 02:00:00 UTC", true}, {"2024-*-* 02:00", true}, {"24-01-01", true}, {"*-1-1 0:0", true},
	{"1,2,3-1-1", true}, {"*:*:0/0.5", true},

	{"", false}, {"dayly", false}, {"25:00", false}, {"Mon..Fry", false}, {"*-13-01", false}, {"*/2:00", false},
	{"* 03:00", false}, {"hourly 03:00", false}, {"1:2:3:4", false}, {"03:00:60", false}, {"2200-01-01", false},
	{"*-*-*/2", false}, {"00:00 Nowhere/Zone", false}, {"Mo 1:00", false}, {"3..1:00", false}, {"Mon,,Tue", false},
	{"12:00 ", false}, {" 12:00", false}, {"12:00  UTC", false}, {"Mon..Sun/2", false}, {"5/0:00", false},
	{"Fri..Mon", false}, {"*-00-01", false}, {"*-*-32", false}, {"12:60", false}, {"daily daily", false},
	{"02:00 Mon", false}, {"12:00 1-1", false}, {"x", false},
}

func TestCheck(t *testing.T) {
	for _, tc := range expressions {
		err := Check(tc.expr)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.expr, err, tc.ok)
		}
	}
}

// TestAgreesWithSystemd runs systemd's own parser on every expression:
// what Check accepts, systemd accepts, and the other way round.
func TestAgreesWithSystemd(t *testing.T) {
	bin := testtool.SystemdAnalyze(t)
	for _, tc := range expressions {
		out, err := exec.Command(bin, "calendar", "--", tc.expr).CombinedOutput()
		if systemdOK := err == nil; systemdOK != tc.ok {
			t.Errorf("systemd-analyze calendar %q: ok=%v, the table says %v\n%s", tc.expr, systemdOK, tc.ok, out)
		}
	}
}
