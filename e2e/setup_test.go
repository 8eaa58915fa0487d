package e2e

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

// readyTimeout bounds the wait for a new cluster; etcd's own startup probe
// allows 250 s, far more than a healthy start needs.
const readyTimeout = 2 * time.Minute

// run is one started cluster of a test.
type run struct {
	tools   harness.Tools
	lab     *harness.Lab
	bundle  harness.Bundle
	cluster *harness.Cluster
}

// startCluster makes a bundle for n hosts with `etcd-staticpod init`,
// starts every host's static Pod and waits until kubelet would call every
// member ready and live.
func startCluster(t *testing.T, n int, family harness.Family, initFlags ...string) *run {
	t.Helper()
	tools := harness.RequireTools(t)
	lab := harness.NewLab(t)
	hosts := lab.Hosts(n, family)
	b := harness.Init(t, tools, hosts, initFlags...)
	c := harness.StartCluster(t, lab, tools, b)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	took, err := c.WaitReady(ctx)
	if err != nil {
		t.Fatalf("cluster did not become ready: %v", err)
	}
	t.Logf("%d-member cluster healthy %s after start (%s mode)", n, took.Round(time.Millisecond), lab.Mode())
	return &run{tools: tools, lab: lab, bundle: b, cluster: c}
}

// client connects with the credentials and closes the client at the end.
func (r *run) client(t *testing.T, creds harness.Credentials, endpoints ...string) *clientv3.Client {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = r.cluster.Endpoints()
	}
	cli, err := r.lab.Client(creds, endpoints...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// apiserver is the credentials kube-apiserver would use: the
// apiserver-etcd-client certificate from the first host's bundle.
func (r *run) apiserver() harness.Credentials {
	return r.bundle.APIServerClient(r.bundle.Hosts[0].Name)
}

// ctx is a deadline for one step of a test.
func stepContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
