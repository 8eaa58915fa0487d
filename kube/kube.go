// Package kube talks to a Kubernetes cluster's API for the commands that run
// etcd as a StatefulSet: it finds the kubeconfig as kubectl does, reads and
// updates Secrets, ConfigMaps and StatefulSets with optimistic concurrency
// (an update that lost a race on resourceVersion is made again on the fresh
// object), waits for Pods, and forwards a local port to a Pod's port as
// kubectl port-forward does.
package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
)

// DefaultTimeout bounds each request to the API server.
const DefaultTimeout = 30 * time.Second

// Options say which cluster and namespace to talk to. The fields mirror
// kubectl's flags of the same names, and errors about them name the flags.
type Options struct {
	// Kubeconfig is --kubeconfig; "" means $KUBECONFIG, else ~/.kube/config
	// (clientcmd's loading rules, as kubectl).
	Kubeconfig string
	// Context is --context; "" means the kubeconfig's current context.
	Context string
	// Namespace is --namespace; "" means the context's namespace, else
	// "default".
	Namespace string
	// Timeout bounds each request; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Client is a connection to one namespace of a cluster.
type Client struct {
	// Namespace is the namespace every call works in.
	Namespace string
	// Host is the API server's URL, for messages.
	Host string
	// Clientset is the typed API.
	Clientset kubernetes.Interface

	config  *rest.Config
	timeout time.Duration
}

// Connect loads the kubeconfig and makes a client. A kubeconfig that cannot
// be loaded, or names no cluster, is bad input naming --kubeconfig (or
// --context).
func Connect(o Options) (*Client, error) {
	if o.Timeout < 0 {
		return nil, badinput.New("--timeout", o.Timeout.String(), "must not be negative")
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	overrides.Context.Namespace = o.Namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		flag, value := "--kubeconfig", o.Kubeconfig
		if value == "" {
			value = rules.GetDefaultFilename()
		}
		if o.Context != "" {
			if raw, rerr := cc.RawConfig(); rerr == nil && raw.Contexts[o.Context] == nil {
				flag, value = "--context", o.Context
			}
		}
		return nil, badinput.New(flag, value, "%v", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, badinput.New("--namespace", o.Namespace, "%v", err)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "etcd-staticpod"
	api := rest.CopyConfig(cfg)
	api.Timeout = timeout
	cs, err := kubernetes.NewForConfig(api)
	if err != nil {
		return nil, badinput.New("--kubeconfig", o.Kubeconfig, "%v", err)
	}
	return &Client{Namespace: ns, Host: cfg.Host, Clientset: cs, config: cfg, timeout: timeout}, nil
}

// Timeout is the bound on each request.
func (c *Client) Timeout() time.Duration { return c.timeout }

// request is the context of one request: ctx, ended after the timeout.
func (c *Client) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// IsNotFound reports the API's 404 for an object, however wrapped.
func IsNotFound(err error) bool { return apierrors.IsNotFound(err) }

// get reads one object of the namespace within one request's time, its
// error naming the kind and the object.
func get[T any](ctx context.Context, c *Client, kind, name string, read func(context.Context, string, metav1.GetOptions) (T, error)) (T, error) {
	ctx, cancel := c.request(ctx)
	defer cancel()
	o, err := read(ctx, name, metav1.GetOptions{})
	if err != nil {
		var none T
		return none, c.wrap(kind, name, "read", err)
	}
	return o, nil
}

// Secret reads a Secret of the namespace.
func (c *Client) Secret(ctx context.Context, name string) (*corev1.Secret, error) {
	return get(ctx, c, "Secret", name, c.Clientset.CoreV1().Secrets(c.Namespace).Get)
}

// ConfigMap reads a ConfigMap of the namespace.
func (c *Client) ConfigMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	return get(ctx, c, "ConfigMap", name, c.Clientset.CoreV1().ConfigMaps(c.Namespace).Get)
}

// StatefulSet reads a StatefulSet of the namespace.
func (c *Client) StatefulSet(ctx context.Context, name string) (*appsv1.StatefulSet, error) {
	return get(ctx, c, "StatefulSet", name, c.Clientset.AppsV1().StatefulSets(c.Namespace).Get)
}

// Pod reads a Pod of the namespace.
func (c *Client) Pod(ctx context.Context, name string) (*corev1.Pod, error) {
	return get(ctx, c, "Pod", name, c.Clientset.CoreV1().Pods(c.Namespace).Get)
}

// PersistentVolumeClaim reads a claim of the namespace.
func (c *Client) PersistentVolumeClaim(ctx context.Context, name string) (*corev1.PersistentVolumeClaim, error) {
	return get(ctx, c, "PersistentVolumeClaim", name, c.Clientset.CoreV1().PersistentVolumeClaims(c.Namespace).Get)
}

// DeletePersistentVolumeClaim deletes a claim; one that is gone already is
// success.
func (c *Client) DeletePersistentVolumeClaim(ctx context.Context, name string) error {
	ctx, cancel := c.request(ctx)
	defer cancel()
	err := c.Clientset.CoreV1().PersistentVolumeClaims(c.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return c.wrap("PersistentVolumeClaim", name, "delete", err)
	}
	return nil
}

// Mutation changes an object in place and reports whether it changed
// anything; an unchanged object is not written.
type Mutation[T any] func(T) (changed bool, err error)

// UpdateSecret applies mutate to the Secret and writes it, reading it
// again and reapplying mutate whenever the write lost a race with another
// writer (a resourceVersion conflict). It returns the object as stored.
func (c *Client) UpdateSecret(ctx context.Context, name string, mutate Mutation[*corev1.Secret]) (*corev1.Secret, error) {
	api := c.Clientset.CoreV1().Secrets(c.Namespace)
	return update(ctx, c, "Secret", name, api.Get, api.Update, mutate)
}

// UpdateConfigMap is UpdateSecret for a ConfigMap.
func (c *Client) UpdateConfigMap(ctx context.Context, name string, mutate Mutation[*corev1.ConfigMap]) (*corev1.ConfigMap, error) {
	api := c.Clientset.CoreV1().ConfigMaps(c.Namespace)
	return update(ctx, c, "ConfigMap", name, api.Get, api.Update, mutate)
}

// UpdateStatefulSet is UpdateSecret for a StatefulSet.
func (c *Client) UpdateStatefulSet(ctx context.Context, name string, mutate Mutation[*appsv1.StatefulSet]) (*appsv1.StatefulSet, error) {
	api := c.Clientset.AppsV1().StatefulSets(c.Namespace)
	return update(ctx, c, "StatefulSet", name, api.Get, api.Update, mutate)
}

// ScaleStatefulSet sets the StatefulSet's replicas, keeping the rest of
// the object as another writer may have changed it.
func (c *Client) ScaleStatefulSet(ctx context.Context, name string, replicas int32) (*appsv1.StatefulSet, error) {
	return c.UpdateStatefulSet(ctx, name, func(s *appsv1.StatefulSet) (bool, error) {
		if s.Spec.Replicas != nil && *s.Spec.Replicas == replicas {
			return false, nil
		}
		s.Spec.Replicas = &replicas
		return true, nil
	})
}

// update is the read-mutate-write loop of every Update method: a conflict
// means someone else wrote the object since it was read, so the write is
// made again on the fresh object, within client-go's DefaultBackoff.
func update[T any](ctx context.Context, c *Client, kind, name string,
	get func(context.Context, string, metav1.GetOptions) (T, error),
	put func(context.Context, T, metav1.UpdateOptions) (T, error),
	mutate Mutation[T]) (T, error) {
	var out T
	attempts := 0
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		attempts++
		rctx, cancel := c.request(ctx)
		defer cancel()
		obj, err := get(rctx, name, metav1.GetOptions{})
		if err != nil {
			return c.wrap(kind, name, "read", err)
		}
		changed, err := mutate(obj)
		if err != nil {
			return err
		}
		if !changed {
			out = obj
			return nil
		}
		// The object carries the resourceVersion it was read at: the API
		// server refuses the write with a conflict if it moved since.
		got, err := put(rctx, obj, metav1.UpdateOptions{FieldManager: "etcd-staticpod"})
		if err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return c.wrap(kind, name, "update", err)
		}
		out = got
		return nil
	})
	if apierrors.IsConflict(err) {
		return out, fmt.Errorf("update %s %s/%s: %d attempts, each lost to another writer: %w", kind, c.Namespace, name, attempts, err)
	}
	return out, err
}

// wrap names the object and the API server in an error.
func (c *Client) wrap(kind, name, verb string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s %s/%s at %s: no answer within %v", verb, kind, c.Namespace, name, c.Host, c.timeout)
	}
	return fmt.Errorf("%s %s %s/%s at %s: %w", verb, kind, c.Namespace, name, c.Host, err)
}

// PodReady reports whether the Pod runs and its Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	if p == nil || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPodGone waits until the Pod no longer exists, polling every
// interval, until ctx ends.
func (c *Client) WaitPodGone(ctx context.Context, name string, interval time.Duration) error {
	for {
		_, err := c.Pod(ctx, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("Pod %s/%s still there when the wait ended: %w", c.Namespace, name, err)
			}
			return fmt.Errorf("Pod %s/%s still there when the wait ended", c.Namespace, name)
		case <-time.After(interval):
		}
	}
}
