package statefulset

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcd-staticpod/etcd-staticpod/kube/kubetest"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestObjectsAcceptedByAPIServer: a real kube-apiserver accepts every
// object of the stream, first in a server-side dry run (validation and
// admission), then for real, with strict field validation; what it stores
// is what was built.
func TestObjectsAcceptedByAPIServer(t *testing.T) {
	s := kubetest.StartAPIServer(t, 11, 12)
	cs := s.Clientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := stsCluster(t, func(c *spec.Cluster) { c.StatefulSet.Replicas = 5 })
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(c, issueAll(t, c, 5))
	if err != nil {
		t.Fatal(err)
	}
	for _, dryRun := range [][]string{{metav1.DryRunAll}, nil} {
		opts := metav1.CreateOptions{DryRun: dryRun, FieldValidation: "Strict"}
		for _, o := range objs {
			var err error
			switch o := o.(type) {
			case *corev1.Service:
				_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
			case *corev1.ConfigMap:
				_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts)
			case *corev1.Secret:
				_, err = cs.CoreV1().Secrets(o.Namespace).Create(ctx, o, opts)
			case *appsv1.StatefulSet:
				_, err = cs.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, opts)
			case *policyv1.PodDisruptionBudget:
				_, err = cs.PolicyV1().PodDisruptionBudgets(o.Namespace).Create(ctx, o, opts)
			default:
				t.Fatalf("unexpected object %T", o)
			}
			if err != nil {
				t.Errorf("dry run %v: %s %s: %v", dryRun != nil, o.GetObjectKind().GroupVersionKind().Kind, name(o), err)
			}
		}
	}
	stored, err := cs.AppsV1().StatefulSets("apps").Get(ctx, "etcd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	built := objs[6].(*appsv1.StatefulSet)
	got, want := stored.Spec.Template.Spec.Containers[0].Command, built.Spec.Template.Spec.Containers[0].Command
	if len(got) != len(want) || *stored.Spec.Replicas != 5 || stored.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("stored StatefulSet: replicas %d, policy %s, command %q", *stored.Spec.Replicas, stored.Spec.PodManagementPolicy, got)
	}
	secret, err := cs.CoreV1().Secrets("apps").Get(ctx, "etcd-members", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(secret.Data) != 1+4*5 {
		t.Errorf("Secret etcd-members holds %d keys, want %d", len(secret.Data), 1+4*5)
	}
}
