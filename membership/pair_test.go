package membership

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

func TestPair(t *testing.T) {
	c := &spec.Cluster{Hosts: []spec.Host{
		{Name: "etcd01", Address: "10.0.0.1"},
		{Name: "etcd02", Address: "10.0.0.2"},
		{Name: "etcd03", Address: "fd00::3"},
	}}
	started := func(name, addr string) etcdops.Member {
		return etcdops.Member{ID: uint64(len(name) + len(addr)), Name: name, PeerURLs: []string{"https://" + addr + ":2380"}}
	}
	for _, tc := range []struct {
		name    string
		members []etcdops.Member
		want    []string
	}{
		{"agree", []etcdops.Member{started("etcd01", "10.0.0.1"), started("etcd02", "10.0.0.2"), started("etcd03", "[fd00:0::3]")}, nil},
		{"not started yet, by address", []etcdops.Member{started("etcd01", "10.0.0.1"), started("etcd02", "10.0.0.2"), {ID: 9, PeerURLs: []string{"https://[fd00::3]:2380"}}}, nil},
		// Other ports (the loopback tests') and host names are no conflict.
		{"other port, DNS name", []etcdops.Member{started("etcd01", "10.0.0.1:40000"), started("etcd02", "etcd02.example"), started("etcd03", "[fd00::3]")}, nil},
		{"missing host", []etcdops.Member{started("etcd01", "10.0.0.1"), started("etcd02", "10.0.0.2")}, []string{"host etcd03 (fd00::3) is not a member"}},
		{"stray member", []etcdops.Member{started("etcd01", "10.0.0.1"), started("etcd02", "10.0.0.2"), started("etcd03", "[fd00::3]"), started("etcd09", "10.0.0.9")}, []string{"member etcd09 (ID", "is not in the spec"}},
		{"stray learner not started", []etcdops.Member{started("etcd01", "10.0.0.1"), started("etcd02", "10.0.0.2"), started("etcd03", "[fd00::3]"), {ID: 0xab, PeerURLs: []string{"https://10.0.0.9:2380"}}}, []string{"member ab (https://10.0.0.9:2380, not started) is not in the spec"}},
		{"moved", []etcdops.Member{started("etcd01", "10.0.0.1"), started("etcd02", "10.0.0.7"), started("etcd03", "[fd00::3]")}, []string{"member etcd02 has peer URL https://10.0.0.7:2380 but the spec gives it address 10.0.0.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pair(c, tc.members).disagreement()
			if len(tc.want) == 0 && got != "" {
				t.Errorf("disagreement %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("disagreement %q, want %q", got, w)
				}
			}
		})
	}
}

func TestSamePeers(t *testing.T) {
	if !samePeers([]string{"https://a:2380", "https://b:2380"}, []string{"https://b:2380", "https://a:2380"}) {
		t.Error("order matters")
	}
	if samePeers(nil, nil) || samePeers([]string{"https://a:2380"}, []string{"https://a:2381"}) {
		t.Error("different lists are the same")
	}
}

// The promote loop tells "not in sync yet" from "votes already", whose
// messages share their start, in every form the client delivers them.
func TestEtcdErrors(t *testing.T) {
	notReady, notLearner := rpctypes.ErrGRPCLearnerNotReady, rpctypes.ErrGRPCMemberNotLearner
	for _, err := range []error{notReady, rpctypes.Error(notReady), fmt.Errorf("member promote 1: %w", notReady), fmt.Errorf("member promote 1: %w", rpctypes.Error(notReady))} {
		if !etcdops.IsLearnerNotReady(err) || etcdops.IsNotLearner(err) {
			t.Errorf("%v: not ready %v, not a learner %v", err, etcdops.IsLearnerNotReady(err), etcdops.IsNotLearner(err))
		}
	}
	for _, err := range []error{notLearner, rpctypes.Error(notLearner), fmt.Errorf("member promote 1: %w", notLearner)} {
		if etcdops.IsLearnerNotReady(err) || !etcdops.IsNotLearner(err) {
			t.Errorf("%v: not ready %v, not a learner %v", err, etcdops.IsLearnerNotReady(err), etcdops.IsNotLearner(err))
		}
	}
	if etcdops.IsUnhealthy(errors.New("etcdserver: unhealthy cluster, or not")) || !etcdops.IsUnhealthy(rpctypes.ErrGRPCUnhealthy) {
		t.Error("IsUnhealthy")
	}
}

func TestCheckRemoval(t *testing.T) {
	mk := func(names ...string) []etcdops.Member {
		var out []etcdops.Member
		for i, n := range names {
			out = append(out, etcdops.Member{ID: uint64(i + 1), Name: n})
		}
		return out
	}
	voter, learner := etcdops.Member{ID: 9, Name: "etcd09"}, etcdops.Member{ID: 9, Name: "etcd09", IsLearner: true}
	for _, tc := range []struct {
		name            string
		m               etcdops.Member
		voters, healthy []etcdops.Member
		force           bool
		refused, warned string
	}{
		{"five to four, all healthy", voter, mk("a", "b", "c", "d"), mk("a", "b", "c", "d"), false, "", ""},
		{"five to four, three healthy", voter, mk("a", "b", "c", "d"), mk("a", "b", "c"), false, "", ""},
		{"five to four, two healthy", voter, mk("a", "b", "c", "d"), mk("a", "b"), false, "only 2 of the 4 remaining voting members are healthy (a, b), fewer than the quorum of 3", ""},
		{"five to four, two healthy, forced", voter, mk("a", "b", "c", "d"), mk("a", "b"), true, "", "only 2 of the 4 remaining"},
		{"four to three, one down", voter, mk("a", "b", "c"), mk("a", "b"), false, "", ""},
		{"four to three, two down", voter, mk("a", "b", "c"), mk("a"), false, "only 1 of the 3", ""},
		{"three to two", voter, mk("a", "b"), mk("a", "b"), false, "2 voting members would remain, fewer than 3", ""},
		{"three to two, forced", voter, mk("a", "b"), mk("a", "b"), true, "", ""},
		{"a learner of three", learner, mk("a", "b"), mk("a"), false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warning, err := CheckRemoval("etcd09", tc.m, tc.voters, tc.healthy, tc.force)
			switch {
			case tc.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused) || !badinput.Is(err)):
				t.Errorf("got %v, want a refusal with %q", err, tc.refused)
			}
			if (tc.warned == "") != (warning == "") || !strings.Contains(warning, tc.warned) {
				t.Errorf("warning %q, want %q", warning, tc.warned)
			}
		})
	}
}
