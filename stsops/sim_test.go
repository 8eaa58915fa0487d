package stsops_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/kube/kubetest"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// apply creates every object of the stream, as kubectl apply -f would on
// an empty namespace.
func apply(t *testing.T, api kubernetes.Interface, stream []byte) {
	t.Helper()
	ctx := context.Background()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			_, err = api.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = api.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Secret:
			_, err = api.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.StatefulSet:
			_, err = api.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *policyv1.PodDisruptionBudget:
			_, err = api.PolicyV1().PodDisruptionBudgets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected object %T", obj)
		}
		if err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
}

// sim plays the StatefulSet controller and the kubelet where neither can
// run: it keeps Pods NAME-0 .. NAME-(replicas-1) and their claims (never
// deleting a claim, as the StatefulSet's Retain policy has it), and runs
// each Pod's etcd from the StatefulSet's own container: its command and
// args with $(VAR) expanded from the downward API and the ConfigMap read
// at the container's start, the Secret written where it is mounted, the
// claim's folder as data, each Pod on a loopback address of its own (the
// listen address 0.0.0.0 becomes it) and the members' DNS names resolving
// to those addresses through a hosts file of the member's own mount
// namespace. A Pod is Ready once etcd's /readyz says so.
type sim struct {
	t       *testing.T
	api     kubernetes.Interface
	kubelet *kubetest.Kubelet
	names   statefulset.Names
	etcd    string
	dir     string
	hosts   string

	mu    sync.Mutex
	hold  bool
	procs map[int]*etcdtest.Process
	// starts counts the Pods started, by ordinal.
	starts map[int]int
}

const firstPodAddr = 40

func podIP(i int) string { return etcdtest.Addr(firstPodAddr + i) }

func startSim(t *testing.T, api kubernetes.Interface, kl *kubetest.Kubelet, names statefulset.Names) *sim {
	s := &sim{t: t, api: api, kubelet: kl, names: names, etcd: etcdtest.EtcdBinary(t), dir: t.TempDir(), procs: map[int]*etcdtest.Process{}, starts: map[int]int{}}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for i := range 16 {
		fmt.Fprintf(&hosts, "%s %s\n", podIP(i), names.MemberHost(i))
	}
	s.hosts = filepath.Join(s.dir, "hosts")
	if err := os.WriteFile(s.hosts, []byte(hosts.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last string
		for ctx.Err() == nil {
			if err := s.sync(ctx); err != nil && ctx.Err() == nil && err.Error() != last {
				last = err.Error()
				t.Logf("sim: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.procs {
			_ = p.Kill(context.Background())
		}
	})
	return s
}

func (s *sim) ns() string { return s.names.Namespace }

// sync brings the Pods in line with the replicas once.
func (s *sim) sync(ctx context.Context) error {
	sts, err := s.api.AppsV1().StatefulSets(s.ns()).Get(ctx, s.names.StatefulSet(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	replicas := int(*sts.Spec.Replicas)
	s.mu.Lock()
	var running []int
	for i := range s.procs {
		running = append(running, i)
	}
	s.mu.Unlock()
	for _, i := range running {
		if i >= replicas {
			if err := s.stop(ctx, i); err != nil {
				return err
			}
		}
	}
	// What kube-controller-manager's pvc-protection controller does: a
	// claim being deleted goes once no Pod uses it.
	claims, err := s.api.CoreV1().PersistentVolumeClaims(s.ns()).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, c := range claims.Items {
		if c.DeletionTimestamp == nil || len(c.Finalizers) == 0 {
			continue
		}
		if _, err := s.api.CoreV1().Pods(s.ns()).Get(ctx, strings.TrimPrefix(c.Name, statefulset.DataVolume+"-"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			continue
		}
		c.Finalizers = nil
		if _, err := s.api.CoreV1().PersistentVolumeClaims(s.ns()).Update(ctx, &c, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	for i := range replicas {
		s.mu.Lock()
		_, ok := s.procs[i]
		hold := s.hold
		s.mu.Unlock()
		if !ok && !hold {
			if err := s.start(ctx, sts, i); err != nil {
				return fmt.Errorf("start %s: %w", s.names.Member(i), err)
			}
		}
	}
	return nil
}

// start makes Pod i (and its claim when there is none) and runs its etcd.
func (s *sim) start(ctx context.Context, sts *appsv1.StatefulSet, i int) error {
	name := s.names.Member(i)
	claim := statefulset.DataVolume + "-" + name
	pvc := sts.Spec.VolumeClaimTemplates[0].DeepCopy()
	pvc.Name, pvc.Namespace = claim, s.ns()
	got, err := s.api.CoreV1().PersistentVolumeClaims(s.ns()).Create(ctx, pvc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = s.api.CoreV1().PersistentVolumeClaims(s.ns()).Get(ctx, claim, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	// The claim's UID names its volume: a claim made anew has no data.
	dataDir := filepath.Join(s.dir, "volumes", string(got.UID))
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns(), Labels: sts.Spec.Template.Labels},
		Spec:       *sts.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.Hostname, pod.Spec.Subdomain = name, sts.Spec.ServiceName
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: statefulset.DataVolume, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
	}})
	if _, err := s.api.CoreV1().Pods(s.ns()).Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	cm, err := s.api.CoreV1().ConfigMaps(s.ns()).Get(ctx, s.names.ConfigMap(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	sec, err := s.api.CoreV1().Secrets(s.ns()).Get(ctx, s.names.MembersSecret(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	podDir := filepath.Join(s.dir, "pods", fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
	pki := filepath.Join(podDir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	for k, v := range sec.Data {
		if err := os.WriteFile(filepath.Join(pki, k), v, 0o400); err != nil {
			return err
		}
	}
	c := sts.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = name // metadata.name
		case e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil:
			env[e.Name] = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
		default:
			env[e.Name] = e.Value
		}
	}
	var args []string
	for _, a := range append(c.Command[1:], c.Args...) {
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		for _, m := range c.VolumeMounts {
			dst := pki
			if m.Name == statefulset.DataVolume {
				dst = dataDir
			}
			a = strings.ReplaceAll(a, m.MountPath, dst)
		}
		args = append(args, strings.ReplaceAll(a, "0.0.0.0", podIP(i)))
	}
	if c.Command[0] != "etcd" {
		return fmt.Errorf("the container runs %q, not etcd", c.Command[0])
	}
	log, err := os.Create(filepath.Join(podDir, "etcd.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /etc/hosts && exec "$@"`, s.hosts, s.etcd}, args...)...)
	p, err := etcdtest.StartProcess(cmd, log)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[i] = p
	s.starts[i]++
	s.mu.Unlock()
	if err := s.kubelet.RunPod(ctx, s.ns(), name, podIP(i), false); err != nil {
		return err
	}
	go s.probe(name, i, p)
	return nil
}

// probe marks the Pod Ready once etcd's /readyz answers ok, as the
// StatefulSet's readiness probe does.
func (s *sim) probe(name string, i int, p *etcdtest.Process) {
	for !p.Exited() {
		resp, err := http.Get("http://" + podIP(i) + ":2381/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				_ = s.kubelet.SetReady(context.Background(), s.ns(), name, true)
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop ends Pod i's etcd as kubelet does and deletes the Pod.
func (s *sim) stop(ctx context.Context, i int) error {
	s.mu.Lock()
	p := s.procs[i]
	delete(s.procs, i)
	s.mu.Unlock()
	name := s.names.Member(i)
	s.kubelet.StopPod(s.ns(), name)
	if p != nil {
		if err := p.Stop(ctx, 10*time.Second); err != nil {
			return err
		}
	}
	err := s.api.CoreV1().Pods(s.ns()).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Hold stops (true) or resumes starting Pods, as a node out of room would.
func (s *sim) Hold(hold bool) {
	s.mu.Lock()
	s.hold = hold
	s.mu.Unlock()
}

// Starts is how often Pod i was started.
func (s *sim) Starts(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts[i]
}
