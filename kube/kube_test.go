package kube_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/kube"
	"github.com/etcd-staticpod/etcd-staticpod/kube/kubetest"
)

// TestAgainstAPIServer runs the object calls against a real kube-apiserver:
// the kubeconfig found as kubectl finds it, concurrent updates that
// conflict on resourceVersion and are all kept, and replicas changed
// without touching the rest of the StatefulSet.
func TestAgainstAPIServer(t *testing.T) {
	s := kubetest.StartAPIServer(t, 11, 12)
	ctx := context.Background()
	admin := s.Clientset(t)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "etcd-test"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("kubeconfig as kubectl finds it", func(t *testing.T) {
		// $KUBECONFIG, when --kubeconfig is not given.
		t.Setenv("KUBECONFIG", s.Kubeconfig)
		c, err := kube.Connect(kube.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Namespace != "default" || c.Host != s.URL {
			t.Errorf("namespace %q host %q, want default and %s", c.Namespace, c.Host, s.URL)
		}
		c, err = kube.Connect(kube.Options{Namespace: "etcd-test"})
		if err != nil {
			t.Fatal(err)
		}
		if c.Namespace != "etcd-test" {
			t.Errorf("namespace %q, want etcd-test from --namespace", c.Namespace)
		}
		if _, err := c.Clientset.CoreV1().ConfigMaps("etcd-test").List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("list through $KUBECONFIG: %v", err)
		}
	})

	t.Run("bad kubeconfig or context is bad input", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.conf")
		_, err := kube.Connect(kube.Options{Kubeconfig: missing})
		if !badinput.Is(err) || !strings.Contains(err.Error(), "--kubeconfig") || !strings.Contains(err.Error(), missing) {
			t.Errorf("missing kubeconfig: %v", err)
		}
		_, err = kube.Connect(kube.Options{Kubeconfig: s.Kubeconfig, Context: "elsewhere"})
		if !badinput.Is(err) || !strings.Contains(err.Error(), `--context "elsewhere"`) {
			t.Errorf("unknown context: %v", err)
		}
	})

	c, err := kube.Connect(kube.Options{Kubeconfig: s.Kubeconfig, Namespace: "etcd-test"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("concurrent updates conflict and are all kept", func(t *testing.T) {
		if _, err := admin.CoreV1().Secrets("etcd-test").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "members"}, Data: map[string][]byte{"ca.crt": []byte("x")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Every writer reads the same version, then waits for the others
		// to have read it too: all but one must lose the first race.
		const writers = 3
		var read sync.WaitGroup
		read.Add(writers)
		var mu sync.Mutex
		calls := map[int]int{}
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for w := range writers {
			wg.Go(func() {
				first := true
				_, errs[w] = c.UpdateSecret(ctx, "members", func(s *corev1.Secret) (bool, error) {
					mu.Lock()
					calls[w]++
					mu.Unlock()
					if first {
						first = false
						read.Done()
						read.Wait()
					}
					s.Data[fmt.Sprintf("etcd-%d-server.crt", w)] = []byte(fmt.Sprint(w))
					return true, nil
				})
			})
		}
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		}
		got, err := c.Secret(ctx, "members")
		if err != nil {
			t.Fatal(err)
		}
		for w := range writers {
			if string(got.Data[fmt.Sprintf("etcd-%d-server.crt", w)]) != fmt.Sprint(w) {
				t.Errorf("writer %d's key lost: %v", w, keys(got.Data))
			}
		}
		retried := 0
		for _, n := range calls {
			if n > 1 {
				retried++
			}
		}
		if retried < writers-1 {
			t.Errorf("calls per writer %v: want at least %d writers retried after a conflict", calls, writers-1)
		}
		t.Logf("mutations per writer: %v", calls)
	})

	t.Run("unchanged object is not written", func(t *testing.T) {
		before, err := c.Secret(ctx, "members")
		if err != nil {
			t.Fatal(err)
		}
		after, err := c.UpdateSecret(ctx, "members", func(*corev1.Secret) (bool, error) { return false, nil })
		if err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != before.ResourceVersion {
			t.Errorf("resourceVersion %s -> %s for no change", before.ResourceVersion, after.ResourceVersion)
		}
	})

	t.Run("a missing object names itself", func(t *testing.T) {
		_, err := c.UpdateConfigMap(ctx, "nothing-here", func(*corev1.ConfigMap) (bool, error) { return true, nil })
		if !kube.IsNotFound(err) || !strings.Contains(err.Error(), "ConfigMap etcd-test/nothing-here") {
			t.Errorf("got %v", err)
		}
	})

	t.Run("replicas change alone", func(t *testing.T) {
		three := int32(3)
		labels := map[string]string{"app": "etcd"}
		if _, err := admin.AppsV1().StatefulSets("etcd-test").Create(ctx, &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "etcd"},
			Spec: appsv1.StatefulSetSpec{
				Replicas: &three, ServiceName: "etcd", Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "etcd", Image: "registry.k8s.io/etcd:3.6.8-0"}}},
				},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Another writer changes the template meanwhile: the scale keeps it.
		if _, err := c.UpdateStatefulSet(ctx, "etcd", func(s *appsv1.StatefulSet) (bool, error) {
			s.Spec.Template.Annotations = map[string]string{"touched": "yes"}
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
		got, err := c.ScaleStatefulSet(ctx, "etcd", 4)
		if err != nil {
			t.Fatal(err)
		}
		if *got.Spec.Replicas != 4 || got.Spec.Template.Annotations["touched"] != "yes" {
			t.Errorf("replicas %d annotations %v", *got.Spec.Replicas, got.Spec.Template.Annotations)
		}
	})

	t.Run("a Pod that does not run is not forwarded to", func(t *testing.T) {
		if _, err := admin.CoreV1().Pods("etcd-test").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "etcd-0"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "etcd", Image: "registry.k8s.io/etcd:3.6.8-0"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Forward(ctx, "etcd-0", 2379)
		if err == nil || !strings.Contains(err.Error(), "Pending, not Running") {
			t.Errorf("got %v", err)
		}
		gone, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := c.WaitPodGone(gone, "etcd-0", 100*time.Millisecond); err == nil {
			t.Error("WaitPodGone: the Pod is there")
		}
		if err := admin.CoreV1().Pods("etcd-test").Delete(ctx, "etcd-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitPodGone(ctx, "etcd-0", 100*time.Millisecond); err != nil {
			t.Error(err)
		}
	})
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestForward: connections to a Forward reach the Pod's port through a
// real kube-apiserver and a stand-in kubelet, several at once; a
// connection the Pod refuses costs that connection only, not the Forward.
func TestForward(t *testing.T) {
	s := kubetest.StartAPIServer(t, 21, 22)
	kl := kubetest.StartKubelet(t, s, 23, "node-a")
	ctx := context.Background()
	admin := s.Clientset(t)
	if _, err := admin.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-0"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: "registry.k8s.io/etcd:3.6.8-0"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Pod's server: an echo on a port of the Pod's address.
	podIP := etcdtest.Addr(24)
	l, err := net.Listen("tcp", net.JoinHostPort(podIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	_, portStr, _ := net.SplitHostPort(l.Addr().String())
	port, _ := strconv.Atoi(portStr)
	if err := kl.RunPod(ctx, "default", "echo-0", podIP, true); err != nil {
		t.Fatal(err)
	}
	c, err := kube.Connect(kube.Options{Kubeconfig: s.Kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Forward(ctx, "echo-0", port)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	echo := func(msg string) error {
		conn, err := net.DialTimeout("tcp", f.Addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil {
			return fmt.Errorf("read back %q: %w (forward: %v)", msg, err, f.Err())
		}
		if string(got) != msg {
			return fmt.Errorf("got %q, want %q", got, msg)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = echo(fmt.Sprintf("hello %d through the API server", i)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := kl.Forwarded("default", "echo-0"); n != len(errs) {
		t.Errorf("the kubelet forwarded %d connections, want %d", n, len(errs))
	}

	// A port nothing listens on: that connection fails, with the kubelet's
	// reason, and the Forward goes on.
	refused, err := c.Forward(ctx, "echo-0", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	conn, err := net.Dial("tcp", refused.Addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a port nothing listens on", n)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for refused.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := refused.Err(); err == nil || !strings.Contains(err.Error(), "failed to connect") {
		t.Errorf("refused connection: Err() = %v", err)
	}
	if err := echo("still there"); err != nil {
		t.Errorf("after a refused connection on another forward: %v", err)
	}

	// The Pod stops: connections fail and say why; it runs again: they work.
	kl.StopPod("default", "echo-0")
	if err := echo("stopped"); err == nil {
		t.Error("echo through a stopped Pod")
	} else if !strings.Contains(fmt.Sprint(f.Err()), "not running") {
		t.Errorf("stopped Pod: Err() = %v", f.Err())
	}
	if err := kl.RunPod(ctx, "default", "echo-0", podIP, true); err != nil {
		t.Fatal(err)
	}
	if err := echo("back"); err != nil {
		t.Errorf("after the Pod runs again: %v", err)
	}
}
