package spec

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults of the StatefulSet runtime.
const (
	DefaultStatefulSetNamespace = "default"
	DefaultStatefulSetName      = "etcd"
	DefaultStatefulSetReplicas  = 3
	DefaultStatefulSetStorage   = "1Gi"
	DefaultClusterDomain        = "cluster.local"
	// MaxStatefulSetNameLength keeps every derived name valid: the
	// StatefulSet labels its revisions NAME-HASH (10 characters), a label
	// value of at most 63.
	MaxStatefulSetNameLength = 52
	// MaxStatefulSetReplicas bounds the members one Secret carries and the
	// keys a run makes; etcd itself advises at most 7 voting members.
	MaxStatefulSetReplicas = 15
)

// StatefulSet is etcd run inside a Kubernetes cluster as a StatefulSet:
// its members are the Pods NAME-0 .. NAME-(Replicas-1) behind a headless
// Service NAME in Namespace.
type StatefulSet struct {
	// Namespace holds every object (default "default").
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// Name names the StatefulSet, its Services, Secrets and ConfigMap
	// (default "etcd").
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Replicas is the number of members (default 3).
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty"`
	// StorageClass is the data volumes' class; empty means the cluster's
	// default class.
	StorageClass string `yaml:"storageClass,omitempty" json:"storageClass,omitempty"`
	// StorageSize is each member's data volume, a Kubernetes quantity
	// (default 1Gi).
	StorageSize string `yaml:"storageSize,omitempty" json:"storageSize,omitempty"`
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string `yaml:"clusterDomain,omitempty" json:"clusterDomain,omitempty"`
}

// InKubernetes reports whether etcd runs as a StatefulSet inside a
// Kubernetes cluster rather than on hosts of its own.
func (c *Cluster) InKubernetes() bool { return c.Runtime == RuntimeStatefulSet }

// OnHosts reports whether etcd runs on hosts of its own (static Pods or
// systemd), which get host folders, archives and kubeadm configs.
func (c *Cluster) OnHosts() bool { return !c.InKubernetes() }

func (s *StatefulSet) setDefaults() {
	setString(&s.Namespace, DefaultStatefulSetNamespace)
	setString(&s.Name, DefaultStatefulSetName)
	setString(&s.StorageSize, DefaultStatefulSetStorage)
	setString(&s.ClusterDomain, DefaultClusterDomain)
	if s.Replicas == 0 {
		s.Replicas = DefaultStatefulSetReplicas
	}
}

func (s *StatefulSet) textFields() [][2]string {
	if s == nil {
		return nil
	}
	return [][2]string{
		{"statefulset.namespace", s.Namespace}, {"statefulset.name", s.Name},
		{"statefulset.storageClass", s.StorageClass}, {"statefulset.storageSize", s.StorageSize},
		{"statefulset.clusterDomain", s.ClusterDomain},
	}
}

// validateStatefulSet checks the runtime's block and refuses the settings
// that only make sense on hosts of etcd's own.
func (c *Cluster) validateStatefulSet() (warnings []string, err error) {
	s := c.StatefulSet
	if !c.InKubernetes() {
		if s != nil {
			return nil, fmt.Errorf("statefulset: only with runtime %s (runtime is %q)", RuntimeStatefulSet, c.Runtime)
		}
		return nil, nil
	}
	if len(c.Hosts) > 0 {
		return nil, fmt.Errorf("hosts: runtime %s takes no hosts (its members are the Pods %s-0 .. %s-%d), got %q; remove --hosts or hosts:",
			RuntimeStatefulSet, s.Name, s.Name, s.Replicas-1, c.Hosts[0].Name)
	}
	for _, o := range []struct {
		field string
		set   bool
	}{
		{"monitoring", c.Monitoring}, {"backup", c.Backup != nil}, {"installCLI", c.InstallCLI},
	} {
		if o.set {
			return nil, fmt.Errorf("%s: not available with runtime %s", o.field, RuntimeStatefulSet)
		}
	}
	if errs := validation.IsDNS1123Label(s.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("statefulset.namespace %q: not a namespace name (%s)", s.Namespace, strings.Join(errs, "; "))
	}
	// The Services carry the name: Kubernetes wants a DNS-1035 label there
	// (a letter first).
	if errs := validation.IsDNS1035Label(s.Name); len(errs) > 0 {
		return nil, fmt.Errorf("statefulset.name %q: not a DNS-1035 label, as a Service's name must be (%s)", s.Name, strings.Join(errs, "; "))
	}
	if len(s.Name) > MaxStatefulSetNameLength {
		return nil, fmt.Errorf("statefulset.name %q: longer than %d characters (the StatefulSet's revision labels add 11)", s.Name, MaxStatefulSetNameLength)
	}
	if s.Replicas < 1 || s.Replicas > MaxStatefulSetReplicas {
		return nil, fmt.Errorf("statefulset.replicas %d: want 1 to %d", s.Replicas, MaxStatefulSetReplicas)
	}
	if s.Replicas%2 == 0 {
		warnings = append(warnings, fmt.Sprintf("statefulset.replicas %d: an even number of members tolerates no more failures than %d; an odd number is recommended", s.Replicas, s.Replicas-1))
	}
	if s.StorageClass != "" {
		if errs := validation.IsDNS1123Subdomain(s.StorageClass); len(errs) > 0 {
			return nil, fmt.Errorf("statefulset.storageClass %q: not a StorageClass name (%s)", s.StorageClass, strings.Join(errs, "; "))
		}
	}
	q, err := resource.ParseQuantity(s.StorageSize)
	if err != nil {
		return nil, fmt.Errorf("statefulset.storageSize %q: not a quantity such as 1Gi or 500Mi", s.StorageSize)
	}
	if q.Sign() <= 0 {
		return nil, fmt.Errorf("statefulset.storageSize %q: must be positive", s.StorageSize)
	}
	if errs := validation.IsDNS1123Subdomain(s.ClusterDomain); len(errs) > 0 {
		return nil, fmt.Errorf("statefulset.clusterDomain %q: not a DNS domain such as %s (%s)", s.ClusterDomain, DefaultClusterDomain, strings.Join(errs, "; "))
	}
	// The longest name a certificate carries: NAME-N.NAME.NS.svc.DOMAIN.
	longest := fmt.Sprintf("%s-%d.%s.%s.svc.%s", s.Name, s.Replicas-1, s.Name, s.Namespace, s.ClusterDomain)
	if errs := validation.IsDNS1123Subdomain(longest); len(errs) > 0 {
		return nil, fmt.Errorf("statefulset.clusterDomain %q: the member name %s is not a DNS name (%s)", s.ClusterDomain, longest, strings.Join(errs, "; "))
	}
	return warnings, nil
}
