// Package statefulset builds the objects that run etcd inside a Kubernetes
// cluster as a StatefulSet (runtime statefulset): the Services, the
// ConfigMap that tells new members whom to join, the Secrets with every
// member's certificates, the StatefulSet and its PodDisruptionBudget, as
// one YAML stream for `kubectl apply -f`. It only generates; talking to a
// cluster is another package's.
package statefulset

import (
	"strconv"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Where a member's etcd finds what the objects give it.
const (
	// PKIDir is where the Secret NAME-members is mounted.
	PKIDir = "/etc/etcd/pki"
	// PodNameVar, InitialClusterVar and InitialClusterStateVar are the
	// container's environment: the Pod's name from the downward API, the
	// other two from the ConfigMap NAME-cluster. etcd's flags name them
	// as $(VAR), which kubelet expands: the etcd image has no shell.
	PodNameVar             = "POD_NAME"
	InitialClusterVar      = "INITIAL_CLUSTER"
	InitialClusterStateVar = "INITIAL_CLUSTER_STATE"
	// The ConfigMap's keys.
	InitialClusterKey      = "initial-cluster"
	InitialClusterStateKey = "initial-cluster-state"
	// CACertKey is the CA certificate in every Secret.
	CACertKey = "ca.crt"
	// The port names of the Services and the container.
	PeerPortName   = "peer"
	ClientPortName = "client"
	// DataVolume is the volumeClaimTemplate each member's data lives on.
	DataVolume = "data"
	// PKIVolume is the Secret NAME-members as a volume.
	PKIVolume = "pki"
)

// Labels every object carries; the selector is the first two.
const (
	NameLabel      = "app.kubernetes.io/name"
	InstanceLabel  = "app.kubernetes.io/instance"
	ManagedByLabel = "app.kubernetes.io/managed-by"
	AppName        = "etcd"
	ManagedBy      = "etcd-staticpod"
)

// Names are the names of a StatefulSet's objects and members, all derived
// from the spec's statefulset block.
type Names struct {
	Namespace string
	Name      string
	Domain    string
}

// NamesOf returns the names for the defaulted spec c (runtime statefulset).
func NamesOf(c *spec.Cluster) Names {
	s := c.StatefulSet
	return Names{Namespace: s.Namespace, Name: s.Name, Domain: s.ClusterDomain}
}

// Service is the headless Service that gives each member its DNS name.
func (n Names) Service() string { return n.Name }

// ClientService is the Service applications connect to.
func (n Names) ClientService() string { return n.Name + "-client" }

// ConfigMap holds initial-cluster and initial-cluster-state.
func (n Names) ConfigMap() string { return n.Name + "-cluster" }

// MembersSecret holds the CA certificate and every member's server and
// peer certificate and key.
func (n Names) MembersSecret() string { return n.Name + "-members" }

// HealthcheckSecret holds the client certificate health checks and
// scaling use.
func (n Names) HealthcheckSecret() string { return n.Name + "-healthcheck-client" }

// ClientSecret holds the client certificate for applications.
func (n Names) ClientSecret() string { return n.Name + "-client" }

// StatefulSet is the StatefulSet's name.
func (n Names) StatefulSet() string { return n.Name }

// PodDisruptionBudget is the PodDisruptionBudget's name.
func (n Names) PodDisruptionBudget() string { return n.Name }

// Member is the name of member i: its Pod's name and etcd's --name.
func (n Names) Member(i int) string { return n.Name + "-" + strconv.Itoa(i) }

// MemberHost is member i's DNS name under the headless Service.
func (n Names) MemberHost(i int) string { return n.memberHost(n.Member(i)) }

func (n Names) memberHost(member string) string {
	return member + "." + n.Name + "." + n.Namespace + ".svc." + n.Domain
}

// PeerURL is member i's peer URL.
func (n Names) PeerURL(i int) string {
	return "https://" + n.MemberHost(i) + ":" + strconv.Itoa(spec.PeerPort)
}

// ClientURL is member i's client URL.
func (n Names) ClientURL(i int) string {
	return "https://" + n.MemberHost(i) + ":" + strconv.Itoa(spec.ClientPort)
}

// ClientServiceHost is the client Service's full DNS name.
func (n Names) ClientServiceHost() string {
	return n.ClientService() + "." + n.Namespace + ".svc." + n.Domain
}

// MemberDNSNames are the DNS names member i's server and peer certificates
// carry: its own names under the headless Service, from the Pod's name to
// the full name, the client Service's, and localhost (the certificate also
// carries the IP 127.0.0.1).
func (n Names) MemberDNSNames(i int) []string {
	m := n.Member(i)
	return []string{
		m, m + "." + n.Name, m + "." + n.Name + "." + n.Namespace, m + "." + n.Name + "." + n.Namespace + ".svc", n.MemberHost(i),
		n.ClientService(), n.ClientService() + "." + n.Namespace, n.ClientService() + "." + n.Namespace + ".svc", n.ClientServiceHost(),
		"localhost",
	}
}

// Labels are the labels of every object; Selector's are the Pods'.
func (n Names) Labels() map[string]string {
	l := n.Selector()
	l[ManagedByLabel] = ManagedBy
	return l
}

// Selector selects the members' Pods.
func (n Names) Selector() map[string]string {
	return map[string]string{NameLabel: AppName, InstanceLabel: n.Name}
}

// The keys of the Secret NAME-members for member, a member's name.
func ServerCertKey(member string) string { return member + "-server.crt" }
func ServerKeyKey(member string) string  { return member + "-server.key" }
func PeerCertKey(member string) string   { return member + "-peer.crt" }
func PeerKeyKey(member string) string    { return member + "-peer.key" }

// InitialCluster is etcd's --initial-cluster for the first members
// members: NAME-0=https://NAME-0.NAME.NS.svc.DOMAIN:2380,...
func InitialCluster(c *spec.Cluster, members int) string {
	n := NamesOf(c)
	parts := make([]string, members)
	for i := range members {
		parts[i] = n.Member(i) + "=" + n.PeerURL(i)
	}
	return strings.Join(parts, ",")
}
