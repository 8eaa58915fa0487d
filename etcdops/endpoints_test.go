package etcdops

import (
	"slices"
	"testing"
)

// TestClientEndpoints: every member's client URLs in member order, each
// once, members without any skipped.
func TestClientEndpoints(t *testing.T) {
	ms := []Member{
		{Name: "etcd01", ClientURLs: []string{"https://10.0.0.1:2379", "https://127.0.0.1:2379"}},
		{PeerURLs: []string{"https://10.0.0.9:2380"}}, // not started: no client URL yet
		{Name: "etcd02", ClientURLs: []string{"https://[fd00::2]:2379", "https://127.0.0.1:2379"}},
		{Name: "etcd03", ClientURLs: []string{"https://10.0.0.1:2379"}},
	}
	want := []string{"https://10.0.0.1:2379", "https://127.0.0.1:2379", "https://[fd00::2]:2379"}
	if got := ClientEndpoints(ms); !slices.Equal(got, want) {
		t.Errorf("ClientEndpoints = %v, want %v", got, want)
	}
	if got := ClientEndpoints(nil); got != nil {
		t.Errorf("no members: %v", got)
	}
	if got := appendNew([]string{"a", "b"}, "b", "c", "a", "c"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("appendNew = %v", got)
	}
}
