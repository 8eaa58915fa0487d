package e2e

import (
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

func TestThreeMemberCluster(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	cli := r.client(t, r.apiserver())
	ctx := stepContext(t, 30*time.Second)
	if _, err := cli.Put(ctx, "/e2e/greeting", "hello"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "/e2e/greeting")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "hello" {
		t.Fatalf("get: %v", resp.Kvs)
	}
}
