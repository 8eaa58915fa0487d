package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/kubernetes"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// Kubelet stands in for one node's kubelet where no kubelet can run: it
// registers the Node, marks the Pods it is given Running and Ready on it,
// and serves the kubelet's port-forward endpoint (SPDY, as the API server
// speaks it to a kubelet, whatever the client spoke to the API server),
// forwarding each Pod's ports to a local address of the test's choosing,
// such as a real etcd member's.
type Kubelet struct {
	Node string
	api  kubernetes.Interface

	mu      sync.Mutex
	targets map[string]string // namespace/pod -> host
	// Forwarded counts the connections forwarded, by namespace/pod.
	forwarded map[string]int
}

// StartKubelet serves on etcdtest.Addr(addr) and registers Node name.
func StartKubelet(tb testing.TB, s *APIServer, addr int, name string) *Kubelet {
	tb.Helper()
	k := &Kubelet{Node: name, api: s.Clientset(tb), targets: map[string]string{}, forwarded: map[string]int{}}
	host := etcdtest.Addr(addr)
	l, err := tls.Listen("tcp", net.JoinHostPort(host, "0"), &tls.Config{Certificates: []tls.Certificate{selfSigned(tb, host)}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(k.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(l.Addr().String())
	p, _ := strconv.Atoi(port)

	ctx := context.Background()
	node, err := k.api.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: host}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(p)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if _, err := k.api.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		tb.Fatal(err)
	}
	return k
}

// RunPod marks the Pod (made beforehand) as running on this node, Ready
// as told, and forwards its ports to the same ports on host.
func (k *Kubelet) RunPod(ctx context.Context, namespace, pod, host string, ready bool) error {
	k.mu.Lock()
	k.targets[namespace+"/"+pod] = host
	k.mu.Unlock()
	pods := k.api.CoreV1().Pods(namespace)
	p, err := pods.Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if p.Spec.NodeName == "" {
		// What the scheduler does.
		if err := pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: namespace},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.Node},
		}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("bind %s: %w", pod, err)
		}
		if p, err = pods.Get(ctx, pod, metav1.GetOptions{}); err != nil {
			return err
		}
	}
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = host
	p.Status.StartTime = &now
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: readiness(ready), LastTransitionTime: now}}
	_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

// SetReady sets the Pod's Ready condition, as kubelet does after its
// readiness probe.
func (k *Kubelet) SetReady(ctx context.Context, namespace, pod string, ready bool) error {
	pods := k.api.CoreV1().Pods(namespace)
	p, err := pods.Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: readiness(ready), LastTransitionTime: metav1.Now()}}
	_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

func readiness(ready bool) corev1.ConditionStatus {
	if ready {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// StopPod forgets the Pod's target: its forwards are refused from now on.
func (k *Kubelet) StopPod(namespace, pod string) {
	k.mu.Lock()
	delete(k.targets, namespace+"/"+pod)
	k.mu.Unlock()
}

// Forwarded is how many connections went to the Pod.
func (k *Kubelet) Forwarded(namespace, pod string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.forwarded[namespace+"/"+pod]
}

// serve is the kubelet's /portForward/NAMESPACE/POD endpoint.
func (k *Kubelet) serve(w http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "portForward" {
		http.NotFound(w, req)
		return
	}
	key := parts[1] + "/" + parts[2]
	if _, err := httpstream.Handshake(req, w, []string{"portforward.k8s.io"}); err != nil {
		return // Handshake answered
	}
	streams := make(chan httpstream.Stream, 8)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, func(s httpstream.Stream, _ <-chan struct{}) error {
		streams <- s
		return nil
	})
	if conn == nil {
		return
	}
	defer conn.Close()
	conn.SetIdleTimeout(10 * time.Minute)
	type pair struct{ data, errs httpstream.Stream }
	pending := map[string]*pair{}
	for {
		select {
		case <-conn.CloseChan():
			return
		case s := <-streams:
			id := s.Headers().Get(corev1.PortForwardRequestIDHeader)
			p := pending[id]
			if p == nil {
				p = &pair{}
				pending[id] = p
			}
			switch s.Headers().Get(corev1.StreamType) {
			case corev1.StreamTypeData:
				p.data = s
			case corev1.StreamTypeError:
				p.errs = s
			}
			if p.data != nil && p.errs != nil {
				delete(pending, id)
				go k.forward(key, p.data, p.errs)
			}
		}
	}
}

// forward copies one connection between the streams and the Pod's port,
// telling the error stream why it could not, as kubelet does.
func (k *Kubelet) forward(key string, data, errs httpstream.Stream) {
	defer data.Close()
	defer errs.Close()
	k.mu.Lock()
	host, ok := k.targets[key]
	if ok {
		k.forwarded[key]++
	}
	k.mu.Unlock()
	port := data.Headers().Get(corev1.PortHeader)
	if !ok {
		fmt.Fprintf(errs, "pod %s is not running", key)
		return
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second)
	if err != nil {
		fmt.Fprintf(errs, "failed to connect to %s port %s: %v", key, port, err)
		return
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(c, data); done <- struct{}{} }()
	go func() { _, _ = io.Copy(data, c); done <- struct{}{} }()
	<-done
}

// selfSigned is a serving pair for host; the API server does not check a
// kubelet's certificate unless told to.
func selfSigned(tb testing.TB, host string) tls.Certificate {
	tb.Helper()
	k := key(tb)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "kubetest-kubelet"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(host)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
