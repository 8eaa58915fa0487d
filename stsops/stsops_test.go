package stsops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/kube"
	"github.com/etcd-staticpod/etcd-staticpod/kube/kubetest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
	"github.com/etcd-staticpod/etcd-staticpod/stsops"
)

const ns = "etcd-test"

// TestScale runs the StatefulSet made by init --runtime statefulset on a
// real kube-apiserver, with real etcd members started from its container
// (see sim), and scales it 3 -> 5 -> 3 through port-forwards: learners
// added and promoted, the highest ordinals removed first, the Secret, the
// ConfigMap and the claims as the command says, data kept throughout; then
// a scale out onto a claim left behind is refused until --delete-volumes.
func TestScale(t *testing.T) {
	bin := etcdtest.CLIBinary(t)
	out := filepath.Join(t.TempDir(), "bundles")
	if _, stderr, code := etcdtest.Exec(t, bin, "init", "--runtime", "statefulset", "--namespace", ns, "--name", "etcd", "--replicas", "3",
		"--encryption-algorithm", "ECDSA-P256", "--out", out); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	s := kubetest.StartAPIServer(t, 11, 12)
	kl := kubetest.StartKubelet(t, s, 13, "node-a")
	admin := s.Clientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stream, err := os.ReadFile(layout.Bundle(out).StatefulSetManifest())
	if err != nil {
		t.Fatal(err)
	}
	apply(t, admin, stream)
	r, err := spec.Resolve(spec.Source{Out: out, Required: true})
	if err != nil {
		t.Fatal(err)
	}
	names := statefulset.NamesOf(r.Cluster)
	sim := startSim(t, admin, kl, names)

	var log bytes.Buffer
	open := func() *stsops.Cluster {
		c, err := stsops.Open(stsops.Options{Out: out, Kube: kube.Options{Kubeconfig: s.Kubeconfig}, Log: &log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	c := open()
	waitHealthy(t, c, 3)

	// Data written now must be there after every step.
	put(t, c, "before-scale", "kept")

	// The commands, as a whole process: health and members through the
	// forwards, and bad input refused before anything is asked.
	stdout, stderr, code := etcdtest.Exec(t, bin, "statefulset", "health", "--out", out, "--kubeconfig", s.Kubeconfig, "-o", "json")
	var health []map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &health) != nil || len(health) != 3 {
		t.Errorf("statefulset health: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = etcdtest.Exec(t, bin, "statefulset", "members", "--dir", out, "--kubeconfig", s.Kubeconfig)
	if code != 0 || !strings.Contains(stdout, "https://etcd-2.etcd.etcd-test.svc.cluster.local:2379") {
		t.Errorf("statefulset members: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("statefulset members:\n%s", stdout)
	for _, args := range [][]string{
		{"--replicas", "0"},
		{"--replicas", "3", "--namespace", "elsewhere"},
		{"--replicas", "3", "--kubeconfig", filepath.Join(t.TempDir(), "missing")},
	} {
		_, stderr, code := etcdtest.Exec(t, bin, append([]string{"statefulset", "scale", "--out", out, "--kubeconfig", s.Kubeconfig}, args...)...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("scale %v: exit %d, want 2 and one line: %s", args, code, stderr)
		}
	}

	res, err := c.Scale(ctx, stsops.ScaleOptions{Replicas: 5})
	t.Logf("scale 3 -> 5:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	wantSteps(t, res.Steps, "added-learner etcd-3", "replicas 3->4", "promoted etcd-3", "added-learner etcd-4", "replicas 4->5", "promoted etcd-4")
	if got := voters(res.Members); got != "etcd-0,etcd-1,etcd-2,etcd-3,etcd-4" {
		t.Errorf("voting members %s", got)
	}
	for _, line := range []string{"Added etcd-3 to the cluster as a learner", "StatefulSet etcd: replicas 3 -> 4", "Promoted etcd-3 to a voting member", "Issued etcd-4's server and peer certificates into Secret etcd-members"} {
		if !strings.Contains(log.String(), line) {
			t.Errorf("log lacks %q", line)
		}
	}
	checkObjects(t, admin, names, 5)
	waitHealthy(t, c, 5)
	if got := get(t, c, "before-scale"); got != "kept" {
		t.Errorf("before-scale = %q after the scale out", got)
	}
	// The bundle folder records what the cluster is now.
	r2, err := spec.Resolve(spec.Source{Out: out, Required: true})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Cluster.StatefulSet.Replicas != 5 || r2.Cluster.Etcd.ClusterState != "existing" {
		t.Errorf("recorded replicas %d state %q", r2.Cluster.StatefulSet.Replicas, r2.Cluster.Etcd.ClusterState)
	}

	// Again with nothing to do.
	log.Reset()
	res, err = c.Scale(ctx, stsops.ScaleOptions{Replicas: 5})
	if err != nil || len(res.Steps) != 0 {
		t.Errorf("second scale to 5: steps %v, %v", res.Steps, err)
	}

	log.Reset()
	res, err = c.Scale(ctx, stsops.ScaleOptions{Replicas: 3})
	t.Logf("scale 5 -> 3:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	wantSteps(t, res.Steps, "removed etcd-4", "replicas 5->4", "kept-volume etcd-4", "removed etcd-3", "replicas 4->3", "kept-volume etcd-3")
	if got := voters(res.Members); got != "etcd-0,etcd-1,etcd-2" || len(res.Members) != 3 {
		t.Errorf("members after scale in: %s (%d)", got, len(res.Members))
	}
	checkObjects(t, admin, names, 3)
	waitHealthy(t, c, 3)
	if got := get(t, c, "before-scale"); got != "kept" {
		t.Errorf("before-scale = %q after the scale in", got)
	}
	for _, i := range []int{3, 4} {
		if _, err := admin.CoreV1().PersistentVolumeClaims(ns).Get(ctx, fmt.Sprintf("data-etcd-%d", i), metav1.GetOptions{}); err != nil {
			t.Errorf("claim of etcd-%d: %v (kept without --delete-volumes)", i, err)
		}
	}

	// A claim left from the removed etcd-3 would start it with old data.
	before := etcdtest.Tree(t, out)
	log.Reset()
	_, err = c.Scale(ctx, stsops.ScaleOptions{Replicas: 4})
	if !badinput.Is(err) || !strings.Contains(err.Error(), "data-etcd-3") {
		t.Fatalf("scale onto a left claim: %v", err)
	}
	t.Logf("refused: %v", err)
	if d := etcdtest.DiffTree(before, etcdtest.Tree(t, out)); len(d) > 0 {
		t.Errorf("the refusal changed %v", d)
	}
	if n, _ := replicas(t, admin, names); n != 3 {
		t.Errorf("the refusal changed replicas to %d", n)
	}
	starts := sim.Starts(3)
	res, err = c.Scale(ctx, stsops.ScaleOptions{Replicas: 4, DeleteVolumes: true})
	t.Logf("scale 3 -> 4 --delete-volumes:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	wantSteps(t, res.Steps, "deleted-volume etcd-3", "added-learner etcd-3", "replicas 3->4", "promoted etcd-3")
	if sim.Starts(3) != starts+1 {
		t.Errorf("etcd-3 started %d times more", sim.Starts(3)-starts)
	}
	waitHealthy(t, c, 4)
	if got := get(t, c, "before-scale"); got != "kept" {
		t.Errorf("before-scale = %q", got)
	}

	// Interrupted: the new Pod does not start before the wait ends, so the
	// learner stays one; the same command run again takes it up.
	sim.Hold(true)
	log.Reset()
	short, cancelShort := context.WithTimeout(ctx, 8*time.Second)
	_, err = c.Scale(short, stsops.ScaleOptions{Replicas: 5, DeleteVolumes: true})
	cancelShort()
	t.Logf("scale 4 -> 5, cut short:\n%s", log.String())
	if err == nil || !strings.Contains(err.Error(), "run the same command again") {
		t.Fatalf("a scale whose Pod never starts: %v", err)
	}
	if n, _ := replicas(t, admin, names); n != 5 {
		t.Errorf("replicas %d after the cut-short scale, want 5", n)
	}
	sim.Hold(false)
	log.Reset()
	res, err = c.Scale(ctx, stsops.ScaleOptions{Replicas: 5})
	t.Logf("scale 4 -> 5 again:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	wantSteps(t, res.Steps, "promoted etcd-4")
	if got := voters(res.Members); got != "etcd-0,etcd-1,etcd-2,etcd-3,etcd-4" || len(res.Members) != 5 {
		t.Errorf("members after the second run: %s (%d)", got, len(res.Members))
	}
	checkObjects(t, admin, names, 5)
}

// wantSteps compares the steps, each as "action member" or "replicas
// from->to".
func wantSteps(t *testing.T, got []stsops.Step, want ...string) {
	t.Helper()
	var have []string
	for _, s := range got {
		if s.Action == "replicas" {
			have = append(have, fmt.Sprintf("replicas %d->%d", s.From, s.To))
		} else {
			have = append(have, s.Action+" "+s.Member)
		}
	}
	if strings.Join(have, "; ") != strings.Join(want, "; ") {
		t.Errorf("steps:\n got %s\nwant %s", strings.Join(have, "; "), strings.Join(want, "; "))
	}
}

func voters(ms []etcdops.Member) string {
	var out []string
	for _, m := range ms {
		if !m.IsLearner {
			out = append(out, m.Name)
		}
	}
	return strings.Join(out, ",")
}

func replicas(t *testing.T, api kubernetes.Interface, names statefulset.Names) (int, error) {
	t.Helper()
	sts, err := api.AppsV1().StatefulSets(ns).Get(context.Background(), names.StatefulSet(), metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	return int(*sts.Spec.Replicas), nil
}

// put writes a key through the forwards.
func put(t *testing.T, c *stsops.Cluster, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tg, err := c.Target(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := tg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatal(err)
	}
}

// get reads a key through the forwards, linearizably.
func get(t *testing.T, c *stsops.Cluster, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tg, err := c.Target(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := tg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

// checkObjects: the Secret holds exactly members 0..n-1's pairs, the
// ConfigMap lists them with state existing, the StatefulSet has n replicas.
func checkObjects(t *testing.T, api kubernetes.Interface, names statefulset.Names, n int) {
	t.Helper()
	ctx := context.Background()
	sec, err := api.CoreV1().Secrets(ns).Get(ctx, names.MembersSecret(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.Data) != 1+4*n {
		t.Errorf("Secret %s has %d keys, want %d", names.MembersSecret(), len(sec.Data), 1+4*n)
	}
	for i := range n {
		if len(sec.Data[statefulset.PeerKeyKey(names.Member(i))]) == 0 {
			t.Errorf("Secret lacks %s's peer key", names.Member(i))
		}
	}
	cm, err := api.CoreV1().ConfigMaps(ns).Get(ctx, names.ConfigMap(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{statefulset.InitialClusterKey: "", statefulset.InitialClusterStateKey: "existing"}
	var parts []string
	for i := range n {
		parts = append(parts, names.Member(i)+"="+names.PeerURL(i))
	}
	want[statefulset.InitialClusterKey] = strings.Join(parts, ",")
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("ConfigMap %s: %s = %q, want %q", names.ConfigMap(), k, cm.Data[k], v)
		}
	}
	sts, err := api.AppsV1().StatefulSets(ns).Get(ctx, names.StatefulSet(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if int(*sts.Spec.Replicas) != n {
		t.Errorf("replicas %d, want %d", *sts.Spec.Replicas, n)
	}
}

// waitHealthy waits until n members answer healthy through their forwards.
func waitHealthy(t *testing.T, c *stsops.Cluster, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last []etcdops.EndpointHealth
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		hs, err := c.Health(ctx)
		cancel()
		ok := err == nil && len(hs) == n
		for _, h := range hs {
			ok = ok && h.Healthy
		}
		if ok {
			return
		}
		last = hs
		time.Sleep(500 * time.Millisecond)
	}
	b, _ := json.Marshal(last)
	t.Fatalf("not %d healthy members: %s", n, b)
}
