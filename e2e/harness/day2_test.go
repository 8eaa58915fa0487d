package harness

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
)

// TestDay2Machinery checks the harness's own day-2 parts against a real
// cluster: a rewritten manifest restarts its member with the binary of the
// new image tag, a host added later joins, a removed member is forgotten,
// and the writer keeps every acknowledged write throughout.
func TestDay2Machinery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster")
	}
	tools := RequireTools(t)
	tools.RequireImage(t, "3.6.16-0")
	lab := NewLab(t)
	hosts := lab.Hosts(t, 4, IPv4)
	// Four hosts in the initial cluster, three started: quorum is three,
	// and the fourth joins later as a bootstrap member.
	b := Init(t, tools, hosts)
	c := StartCluster(t, lab, tools, Bundle{Dir: b.Dir, Hosts: hosts[:3]})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	k := c.Kubelet(ctx)
	cli, err := lab.Client(b.APIServerClient(hosts[0].Name), c.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	w := StartWriter(ctx, cli, "/e2e/harness/day2")

	m := c.Members[1]
	manifest, err := os.ReadFile(m.ManifestFile())
	if err != nil {
		t.Fatal(err)
	}
	next := bytes.ReplaceAll(manifest, []byte("etcd:3.6.8-0"), []byte("etcd:3.6.16-0"))
	if bytes.Equal(next, manifest) {
		t.Fatalf("%s: no etcd:3.6.8-0 image in the manifest", m.Name)
	}
	if err := atomicfile.WriteFile(m.ManifestFile(), next, 0o600); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	for m.Binary() != tools.EtcdByTag["3.6.16-0"] || !m.Running() {
		if ctx.Err() != nil {
			t.Fatalf("%s still runs %s: %v", m.Name, m.Binary(), k.Events())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := cli.Status(ctx, m.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "3.6.16" {
		t.Errorf("%s reports version %s after its manifest named 3.6.16-0", m.Name, st.Version)
	}
	t.Logf("%s restarted by the kubelet emulation and ready %s after the rewrite: %v", m.Name, time.Since(begin).Round(time.Millisecond), k.Events())

	added := c.AddMember(t, hosts[3])
	if err := added.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := cli.MemberList(ctx)
	if err != nil || len(list.Members) != 4 {
		t.Fatalf("member list after AddMember: %v %v", list, err)
	}
	if len(c.Members) != 4 || c.Member(hosts[3].Name) != added {
		t.Fatalf("members after AddMember: %d", len(c.Members))
	}
	c.RemoveMember(t, hosts[3].Name)
	if len(c.Endpoints()) != 3 || added.Running() {
		t.Fatalf("after RemoveMember: endpoints %v, running %v", c.Endpoints(), added.Running())
	}

	r := w.Stop()
	t.Logf("writer: %s", r)
	if r.Acked == 0 || len(r.Stale) > 0 {
		t.Errorf("writer: %s", r)
	}
	if err := w.Verify(ctx, cli); err != nil {
		t.Error(err)
	}
}
