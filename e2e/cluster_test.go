package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

// TestThreeMembersFromInit runs the HA guide's three hosts from the bundles
// of `etcd-staticpod init` and checks what kube-apiserver relies on: the
// members form one cluster, the apiserver-etcd-client certificate can
// write and read, the healthcheck-client certificate sees every member
// healthy, and clients without a certificate of the cluster's CA are
// turned away.
func TestThreeMembersFromInit(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	t.Run("runs each member in its host's namespaces", func(t *testing.T) {
		r.lab.RequireNamespaces(t, "checking namespaces")
		for _, m := range r.cluster.Members {
			if err := m.CheckIsolation(); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("serves the apiserver client", func(t *testing.T) { checkServes(t, r) })
	t.Run("refuses a client without a certificate", func(t *testing.T) {
		ca := harness.Credentials{CA: r.apiserver().CA}
		checkRefused(t, r, ca)
	})
	t.Run("refuses a certificate from another CA", func(t *testing.T) {
		// A second init makes a complete, valid bundle under its own CA.
		other := harness.Init(t, r.tools, r.bundle.Hosts)
		foreign := other.APIServerClient(r.bundle.Hosts[0].Name)
		// Trust our CA, so that the only fault is the client's certificate.
		foreign.CA = r.apiserver().CA
		checkRefused(t, r, foreign)
	})
}

// checkRefused expects every member to refuse the client's TLS handshake
// and the client's write never to land.
func checkRefused(t *testing.T, r *run, creds harness.Credentials) {
	t.Helper()
	for _, m := range r.cluster.Members {
		err := r.lab.TLSHandshake(stepContext(t, 10*time.Second), m.ClientURL(), creds)
		// A TLS alert from the server is its refusal; a timeout would mean
		// it accepted the client and waited for a request.
		if err == nil || !strings.Contains(err.Error(), "remote error: tls:") {
			t.Errorf("%s: want the server to refuse the client with a TLS alert, got %v", m.Name, err)
		} else {
			t.Logf("%s refuses the client: %v", m.Name, err)
		}
	}
	key := "/registry/e2e/" + t.Name()
	cli := r.client(t, creds)
	if _, err := cli.Put(stepContext(t, 3*time.Second), key, "must not be written"); err == nil {
		t.Fatalf("put without a valid client certificate succeeded")
	}
	got, err := r.client(t, r.apiserver()).Get(stepContext(t, 10*time.Second), key)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(got.Kvs) != 0 {
		t.Fatalf("the refused client's write landed: %v", got.Kvs)
	}
}

// TestStoppedMember stops one member as kubelet would when its manifest is
// removed: health names it while the other two keep taking writes, and
// once started again from the same manifest and data it is healthy and has
// every write it missed.
func TestStoppedMember(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	stopped := r.cluster.Members[2]
	ctx := stepContext(t, 2*time.Minute)
	begin := time.Now()
	if err := stopped.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped %s in %s: %v", stopped.Name, time.Since(begin).Round(time.Millisecond), stopped.ExitError())

	checkHealth(t, r, []string{stopped.Name})
	rest := r.cluster.Endpoints(r.cluster.Members[0].Name, r.cluster.Members[1].Name)
	cli := r.client(t, r.apiserver(), rest...)
	var last int64
	for i := range 5 {
		resp, err := putEventually(ctx, cli, fmt.Sprintf("/registry/e2e/stopped/%d", i), "while "+stopped.Name+" is down")
		if err != nil {
			t.Fatalf("write without %s: %v", stopped.Name, err)
		}
		last = resp.Header.Revision
	}

	begin = time.Now()
	if err := stopped.Start(); err != nil {
		t.Fatal(err)
	}
	if err := stopped.WaitReady(ctx); err != nil {
		t.Fatalf("restarted member: %v", err)
	}
	t.Logf("restarted %s from the same manifest and data: ready after %s", stopped.Name, time.Since(begin).Round(time.Millisecond))
	waitCaughtUp(t, r, stopped, last)
	checkHealth(t, r, nil)
}

// TestLinkCut cuts one host off the network: the two others keep quorum
// and take writes, the cut member cannot be reached, and once the link is
// back the member catches up with what it missed.
func TestLinkCut(t *testing.T) {
	r := newRun(t)
	r.lab.RequireNamespaces(t, "cutting a host's link")
	r.start(t, 3, harness.IPv4)
	cut := r.cluster.Members[1]
	ctx := stepContext(t, 2*time.Minute)
	if err := r.lab.CutLink(cut.Name); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = r.lab.RestoreLink(cut.Name)
		}
	})

	rest := r.cluster.Endpoints(r.cluster.Members[0].Name, r.cluster.Members[2].Name)
	cli := r.client(t, r.apiserver(), rest...)
	var last int64
	for i := range 5 {
		resp, err := putEventually(ctx, cli, fmt.Sprintf("/registry/e2e/cut/%d", i), "while "+cut.Name+" is cut off")
		if err != nil {
			t.Fatalf("write with %s cut off: %v", cut.Name, err)
		}
		last = resp.Header.Revision
	}
	// Health must find the cut member unreachable and the others healthy.
	checkHealth(t, r, []string{cut.Name})
	if !cut.Running() {
		t.Fatalf("%s exited while cut off: %v", cut.Name, cut.ExitError())
	}

	if err := r.lab.RestoreLink(cut.Name); err != nil {
		t.Fatal(err)
	}
	restored = true
	waitCaughtUp(t, r, cut, last)
	checkHealth(t, r, nil)
}

// waitCaughtUp waits until the member itself reports at least the revision
// of the last write and the raft index the others had applied by then.
func waitCaughtUp(t *testing.T, r *run, m *harness.Member, revision int64) {
	t.Helper()
	ctx := stepContext(t, time.Minute)
	cli := r.client(t, r.apiserver())
	var target uint64
	for _, other := range r.cluster.Members {
		if other == m {
			continue
		}
		st, err := cli.Status(ctx, other.ClientURL())
		if err != nil {
			t.Fatalf("status of %s: %v", other.Name, err)
		}
		target = max(target, st.RaftAppliedIndex)
	}
	start := time.Now()
	for {
		attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := cli.Status(attempt, m.ClientURL())
		cancel()
		if err == nil && st.Header.Revision >= revision && st.RaftAppliedIndex >= target {
			t.Logf("%s caught up after %s: revision %d, applied raft index %d (others at %d)",
				m.Name, time.Since(start).Round(time.Millisecond), st.Header.Revision, st.RaftAppliedIndex, target)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not catch up to revision %d / raft index %d: last status %v, error %v", m.Name, revision, target, st, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
