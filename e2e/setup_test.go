package e2e

import (
	"context"
	"fmt"
	"slices"
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

// newRun finds the tools and makes the test's lab; start adds the cluster.
func newRun(t *testing.T) *run {
	t.Helper()
	return &run{tools: harness.RequireTools(t), lab: harness.NewLab(t)}
}

// startCluster is newRun followed by start.
func startCluster(t *testing.T, n int, family harness.Family, initFlags ...string) *run {
	t.Helper()
	r := newRun(t)
	r.start(t, n, family, initFlags...)
	return r
}

// start makes a bundle for n hosts with `etcd-staticpod init`, starts
// every host's static Pod and waits until kubelet would call every member
// ready and live.
func (r *run) start(t *testing.T, n int, family harness.Family, initFlags ...string) {
	t.Helper()
	hosts := r.lab.Hosts(t, n, family)
	r.bundle = harness.Init(t, r.tools, hosts, initFlags...)
	r.cluster = harness.StartCluster(t, r.lab, r.tools, r.bundle)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	took, err := r.cluster.WaitReady(ctx)
	if err != nil {
		t.Fatalf("cluster did not become ready: %v", err)
	}
	t.Logf("%d-member cluster healthy %s after start (%s mode)", n, took.Round(time.Millisecond), r.lab.Mode())
}

// client connects with the credentials (to every member unless endpoints
// are given) and closes the client when the test ends.
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

// healthcheck is the healthcheck-client certificate from the first host's bundle.
func (r *run) healthcheck() harness.Credentials {
	return r.bundle.HealthcheckClient(r.bundle.Hosts[0].Name)
}

// stepContext is a deadline for one step of a test.
func stepContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// putEventually writes until a write succeeds or ctx ends. A write may meet
// an election (a member just went away) and fail once; what matters is
// that the cluster accepts writes again within the deadline.
func putEventually(ctx context.Context, cli *clientv3.Client, key, value string) (*clientv3.PutResponse, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := cli.Put(attempt, key, value)
		cancel()
		if err == nil {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("put %s: %w (last error: %v)", key, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkServes proves the cluster serves the apiserver: every host is a
// started voting member with the peer and client URLs of its manifest,
// a write through the whole cluster is read back from each member alone,
// and every member is healthy for the healthcheck-client certificate.
func checkServes(t *testing.T, r *run) {
	t.Helper()
	ctx := stepContext(t, time.Minute)
	cli := r.client(t, r.apiserver())

	list, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	if len(list.Members) != len(r.cluster.Members) {
		t.Fatalf("member list has %d members, want %d: %v", len(list.Members), len(r.cluster.Members), list.Members)
	}
	for _, m := range r.cluster.Members {
		i := slices.IndexFunc(list.Members, func(lm *etcdMember) bool { return lm.Name == m.Name })
		if i < 0 {
			t.Fatalf("member %s is not in the member list %v", m.Name, list.Members)
		}
		lm := list.Members[i]
		if want := m.Flag("initial-advertise-peer-urls"); !slices.Equal(lm.PeerURLs, []string{want}) {
			t.Errorf("member %s: peer URLs %v, want %v from its manifest", m.Name, lm.PeerURLs, want)
		}
		if want := m.ClientURL(); !slices.Equal(lm.ClientURLs, []string{want}) {
			t.Errorf("member %s: client URLs %v, want %v from its manifest", m.Name, lm.ClientURLs, want)
		}
		if lm.IsLearner {
			t.Errorf("member %s is a learner", m.Name)
		}
	}

	key, value := "/registry/e2e/"+t.Name(), "written through "+fmt.Sprint(r.cluster.Endpoints())
	put, err := cli.Put(ctx, key, value)
	if err != nil {
		t.Fatalf("put with the apiserver-etcd-client certificate: %v", err)
	}
	for _, m := range r.cluster.Members {
		one := r.client(t, r.apiserver(), m.ClientURL())
		// A linearizable read from each member alone: every member serves
		// the write, not only the one that took it.
		got, err := one.Get(ctx, key)
		if err != nil {
			t.Fatalf("get from %s: %v", m.Name, err)
		}
		if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != value || got.Kvs[0].ModRevision != put.Header.Revision {
			t.Fatalf("get from %s: %v, want %q at revision %d", m.Name, got.Kvs, value, put.Header.Revision)
		}
	}

	checkHealth(t, r, nil)
}
