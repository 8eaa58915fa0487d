package e2e

import (
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// etcdMember is an entry of the member list.
type etcdMember = etcdserverpb.Member

// checkHealth checks every member's health with the healthcheck-client
// certificate and expects exactly the members named in down to fail.
func checkHealth(t *testing.T, r *run, down []string) {
	t.Helper()
	ctx := stepContext(t, 30*time.Second)
	for _, m := range r.cluster.Members {
		err := r.lab.Health(ctx, r.healthcheck(), m.ClientURL())
		switch wantDown := slices.Contains(down, m.Name); {
		case wantDown && err == nil:
			t.Errorf("health of %s: healthy, want unhealthy", m.Name)
		case !wantDown && err != nil:
			t.Errorf("health of %s: %v", m.Name, err)
		case wantDown:
			t.Logf("health of %s reports it: %v", m.Name, err)
		}
	}
}
