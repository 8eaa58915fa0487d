package etcdops_test

import (
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
)

func TestMinFree(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		in     string
		dbSize int64
		want   int64
	}{
		{"", 100 * mib, 16 * mib},        // the default: at least 16 MiB
		{"", 1000 * mib, 100 * mib},      // and 10 % of a large database
		{"64MiB", 1000 * mib, 64 * mib},  // a size ignores the database
		{"64Mi", 1, 64 * mib},            // Kubernetes' spelling
		{"100MB", 1, 100_000_000},        // SI
		{"1.5GiB", 1, 3 << 29},           // a fraction of a unit
		{"1048576", 1, mib},              // bytes
		{"10%", 1000 * mib, 100 * mib},   // a share
		{"0%", 1000 * mib, 0},            // anything free at all
		{" 25 % ", 400 * mib, 100 * mib}, // spaces
	} {
		mf := etcdops.MinFree{}
		if tc.in != "" {
			var err error
			if mf, err = etcdops.ParseMinFree(tc.in); err != nil {
				t.Errorf("%q: %v", tc.in, err)
				continue
			}
		}
		if got := mf.Threshold(tc.dbSize); got != tc.want {
			t.Errorf("%q of %d bytes: %d, want %d", tc.in, tc.dbSize, got, tc.want)
		}
	}
	for _, bad := range []string{"", "lots", "-1MiB", "64XB", "101%", "-5%", "1e3MiB", "%"} {
		if _, err := etcdops.ParseMinFree(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := etcdops.FormatBytes(3 << 19); got != "1.5 MiB" {
		t.Errorf("FormatBytes: %s", got)
	}
}
