package statefulset

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// EtcdMember is the member every Pod of the StatefulSet is: named for its
// Pod, listening on every address of the Pod (kubelet probes the Pod on
// its IP, so the metrics listener too), advertising its DNS name under the
// headless Service, its certificates picked from the Secret by its name.
func EtcdMember(c *spec.Cluster) manifests.Member {
	n := NamesOf(c)
	pod := "$(" + PodNameVar + ")"
	host := n.memberHost(pod)
	file := func(key string) string { return PKIDir + "/" + key }
	return manifests.Member{
		Name:                pod,
		ListenClientURLs:    "https://0.0.0.0:" + strconv.Itoa(spec.ClientPort),
		AdvertiseClientURLs: "https://" + host + ":" + strconv.Itoa(spec.ClientPort),
		ListenPeerURLs:      "https://0.0.0.0:" + strconv.Itoa(spec.PeerPort),
		AdvertisePeerURLs:   "https://" + host + ":" + strconv.Itoa(spec.PeerPort),
		ListenMetricsURLs:   "http://0.0.0.0:" + strconv.Itoa(manifests.MetricsPort),
		InitialCluster:      "$(" + InitialClusterVar + ")",
		InitialClusterState: "$(" + InitialClusterStateVar + ")",
		CertFile:            file(ServerCertKey(pod)),
		KeyFile:             file(ServerKeyKey(pod)),
		PeerCertFile:        file(PeerCertKey(pod)),
		PeerKeyFile:         file(PeerKeyKey(pod)),
		TrustedCAFile:       file(CACertKey),
	}
}

// EtcdArgs are the flags the StatefulSet's container gives etcd: the
// static Pod's (manifests.MemberArgs) for EtcdMember.
func EtcdArgs(c *spec.Cluster) ([]spec.Arg, error) {
	return manifests.MemberArgs(c, EtcdMember(c))
}

// Objects returns the objects in the order they are applied: Services,
// ConfigMap, Secrets, StatefulSet, PodDisruptionBudget. creds must hold a
// pair for each of the spec's replicas; only those go into the Secret.
func Objects(c *spec.Cluster, creds Credentials) ([]runtime.Object, error) {
	s := c.StatefulSet
	if s == nil {
		return nil, fmt.Errorf("runtime %q: the StatefulSet objects need runtime %s", c.Runtime, spec.RuntimeStatefulSet)
	}
	if len(creds.Members) < s.Replicas {
		return nil, fmt.Errorf("statefulset: certificates for %d members, want %d", len(creds.Members), s.Replicas)
	}
	n := NamesOf(c)
	sts, err := statefulSet(c, n)
	if err != nil {
		return nil, err
	}
	return []runtime.Object{
		headlessService(n),
		clientService(n),
		ConfigMap(c, s.Replicas, c.Etcd.ClusterState),
		membersSecret(n, creds, s.Replicas),
		tlsSecret(n, n.HealthcheckSecret(), creds.CA, creds.Healthcheck),
		tlsSecret(n, n.ClientSecret(), creds.CA, creds.Client),
		sts,
		podDisruptionBudget(n),
	}, nil
}

// Render returns the objects as one YAML stream for `kubectl apply -f`.
func Render(c *spec.Cluster, creds Credentials) ([]byte, error) {
	objs, err := Objects(c, creds)
	if err != nil {
		return nil, err
	}
	return Marshal(objs)
}

// Marshal writes objects as a YAML stream, one document each, without
// the empty status the types carry: the cluster reports status, it is not
// applied.
func Marshal(objs []runtime.Object) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		kind := o.GetObjectKind().GroupVersionKind().Kind
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", kind, err)
		}
		delete(u, "status")
		if spec, ok := u["spec"].(map[string]any); ok {
			if claims, ok := spec["volumeClaimTemplates"].([]any); ok {
				for _, c := range claims {
					if m, ok := c.(map[string]any); ok {
						delete(m, "status")
					}
				}
			}
		}
		doc, err := yaml.Marshal(u)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", kind, err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(doc)
	}
	return b.Bytes(), nil
}

func meta(n Names, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: n.Namespace, Labels: n.Labels()}
}

func servicePorts() []corev1.ServicePort {
	return []corev1.ServicePort{
		{Name: ClientPortName, Port: spec.ClientPort, TargetPort: intstr.FromString(ClientPortName), Protocol: corev1.ProtocolTCP},
		{Name: PeerPortName, Port: spec.PeerPort, TargetPort: intstr.FromString(PeerPortName), Protocol: corev1.ProtocolTCP},
	}
}

// headlessService gives each member the DNS name it advertises. Members
// must find each other before any of them is ready (a new cluster has no
// quorum yet), hence publishNotReadyAddresses.
func headlessService(n Names) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(n, n.Service()),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Ports:                    servicePorts(),
			Selector:                 n.Selector(),
		},
	}
}

// clientService balances applications over the ready members.
func clientService(n Names) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(n, n.ClientService()),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Ports:    servicePorts()[:1],
			Selector: n.Selector(),
		},
	}
}

// ConfigMap is the ConfigMap for the first members members in state
// (new, or existing once the cluster runs).
func ConfigMap(c *spec.Cluster, members int, state string) *corev1.ConfigMap {
	n := NamesOf(c)
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(n, n.ConfigMap()),
		Data: map[string]string{
			InitialClusterKey:      InitialCluster(c, members),
			InitialClusterStateKey: state,
		},
	}
}

// MembersSecretData is the Secret NAME-members' data: the CA certificate
// and each member's pairs under keys that start with the member's name,
// so that etcd's flags pick its own with $(POD_NAME).
func MembersSecretData(n Names, creds Credentials, members int) map[string][]byte {
	data := map[string][]byte{CACertKey: creds.CA}
	for i := range members {
		m, mc := n.Member(i), creds.Members[i]
		data[ServerCertKey(m)] = mc.Server.Cert
		data[ServerKeyKey(m)] = mc.Server.Key
		data[PeerCertKey(m)] = mc.Peer.Cert
		data[PeerKeyKey(m)] = mc.Peer.Key
	}
	return data
}

func membersSecret(n Names, creds Credentials, members int) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta(n, n.MembersSecret()),
		Type:       corev1.SecretTypeOpaque,
		Data:       MembersSecretData(n, creds, members),
	}
}

func tlsSecret(n Names, name string, ca []byte, p Pair) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: meta(n, name),
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			CACertKey:               ca,
			corev1.TLSCertKey:       p.Cert,
			corev1.TLSPrivateKeyKey: p.Key,
		},
	}
}

// reservedEnv are the variables the container's flags use; an extraEnv of
// the same name would change them.
var reservedEnv = []string{PodNameVar, InitialClusterVar, InitialClusterStateVar}

func statefulSet(c *spec.Cluster, n Names) (*appsv1.StatefulSet, error) {
	s := c.StatefulSet
	for _, e := range c.Etcd.ExtraEnv {
		if slices.Contains(reservedEnv, e.Name) {
			return nil, fmt.Errorf("etcd.extraEnv %q: the StatefulSet's container sets it itself", e.Name)
		}
	}
	args, err := EtcdArgs(c)
	if err != nil {
		return nil, err
	}
	probe, err := manifests.MetricsProbe(args)
	if err != nil {
		return nil, err
	}
	// kubelet probes a Pod on its IP: a metrics listener bound to one
	// address (loopback) would fail every probe.
	if ip := net.ParseIP(probe.Host); probe.Host != "" && (ip == nil || !ip.IsUnspecified()) {
		return nil, fmt.Errorf("etcd.extraArgs listen-metrics-urls: host %q: kubelet probes the Pod on its IP; listen on 0.0.0.0", probe.Host)
	}
	probe.Host = ""

	container := manifests.EtcdContainer(c, args, probe)
	container.Ports = append([]corev1.ContainerPort{
		{Name: ClientPortName, ContainerPort: spec.ClientPort, Protocol: corev1.ProtocolTCP},
		{Name: PeerPortName, ContainerPort: spec.PeerPort, Protocol: corev1.ProtocolTCP},
	}, container.Ports...)
	fromConfigMap := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: n.ConfigMap()}, Key: key,
		}}}
	}
	// $(VAR) expands only variables defined before the use, in order.
	container.Env = append([]corev1.EnvVar{
		{Name: PodNameVar, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		fromConfigMap(InitialClusterVar, InitialClusterKey),
		fromConfigMap(InitialClusterStateVar, InitialClusterStateKey),
	}, container.Env...)
	container.VolumeMounts = []corev1.VolumeMount{
		{Name: DataVolume, MountPath: c.Etcd.DataDir},
		{Name: PKIVolume, MountPath: PKIDir, ReadOnly: true},
	}
	no := false
	container.SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}

	keyMode := int32(0o400)
	replicas := int32(s.Replicas)
	claim := corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: DataVolume, Labels: n.Selector()},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(s.StorageSize),
			}},
		},
	}
	if s.StorageClass != "" {
		claim.Spec.StorageClassName = &s.StorageClass
	}
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: meta(n, n.StatefulSet()),
		Spec: appsv1.StatefulSetSpec{
			ServiceName: n.Service(),
			Replicas:    &replicas,
			// A new cluster's members wait for each other: started one at
			// a time, the first would never become ready.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: n.Selector()},
			// Scaling in keeps the data: a member removed by mistake can
			// come back with it, and the volume goes only on request.
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: n.Labels()},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{container},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: n.Selector()},
								TopologyKey:   corev1.LabelHostname,
							},
						}},
					}},
					SecurityContext: &corev1.PodSecurityContext{
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					// etcd needs no Kubernetes API.
					AutomountServiceAccountToken: &no,
					Volumes: []corev1.Volume{{
						Name: PKIVolume,
						VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: n.MembersSecret(), DefaultMode: &keyMode,
						}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{claim},
		},
	}, nil
}

// podDisruptionBudget lets a drain take one member at a time: quorum
// holds for three members and more.
func podDisruptionBudget(n Names) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: meta(n, n.PodDisruptionBudget()),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &one,
			Selector:       &metav1.LabelSelector{MatchLabels: n.Selector()},
		},
	}
}
