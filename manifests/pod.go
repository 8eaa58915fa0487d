// Package manifests builds what kubeadm v1.36.3 writes for an external HA
// etcd cluster run as kubelet static Pods: each member's etcd.yaml, the
// per-host kubeadm config the HA etcd guide feeds to kubeadm, and the
// ClusterConfiguration a control plane uses to reach that etcd cluster.
package manifests

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Names and values kubeadm v1.36 puts into the etcd static Pod.
const (
	AdvertiseClientURLsAnnotation = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
	ProbePortName                 = "probe-port"

	dataVolume  = "etcd-data"
	certsVolume = "etcd-certs"
	// systemNodeCriticalPriority is the value of the system-node-critical
	// class; kubeadm writes it because static Pods skip priority admission.
	systemNodeCriticalPriority = int32(2000001000)
	// startupWindow is kubeadm's default controlPlaneComponentHealthCheck
	// timeout, which the startup probe's failure threshold must cover.
	startupWindow = 4 * time.Minute
)

// EtcdPod returns kubeadm's etcd static Pod for host h of cluster c, with
// extraArgs merged over kubeadm's own defaults the way kubeadm merges
// etcd.local.extraArgs. Pass HostExtraArgs(c, h) to get what the HA etcd
// guide produces, or nil for kubeadm's bare single-member defaults.
func EtcdPod(c *spec.Cluster, h spec.Host, extraArgs []spec.Arg) (*corev1.Pod, error) {
	if net.ParseIP(h.Address) == nil {
		return nil, fmt.Errorf("etcd pod for host %q: address %q is not an IP address", h.Name, h.Address)
	}
	probe, err := metricsProbe(h, extraArgs)
	if err != nil {
		return nil, fmt.Errorf("etcd pod for host %q: %w", h.Name, err)
	}
	args := mergeArgs(defaultArgs(c, kubeadmMember(c, h)), extraArgs)

	hostPathType := corev1.HostPathDirectoryOrCreate
	certDir := layout.CA.Dir(c.CertDir)
	priority := systemNodeCriticalPriority
	container := EtcdContainer(c, args, probe)
	container.VolumeMounts = []corev1.VolumeMount{
		{Name: dataVolume, MountPath: c.Etcd.DataDir},
		{Name: certsVolume, MountPath: certDir},
	}
	volumes := []corev1.Volume{
		hostPathVolume(dataVolume, c.Etcd.DataDir, &hostPathType),
		hostPathVolume(certsVolume, certDir, &hostPathType),
	}
	// kubeadm keeps its volumes in a map and writes them sorted by name.
	slices.SortFunc(volumes, func(a, b corev1.Volume) int { return strings.Compare(a.Name, b.Name) })

	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      "etcd",
			Namespace: metav1.NamespaceSystem,
			Labels:    map[string]string{"component": "etcd", "tier": "control-plane"},
			// kubeadm annotates the URL it derives from the address, not an
			// advertise-client-urls extra argument.
			Annotations: map[string]string{AdvertiseClientURLsAnnotation: h.ClientURL()},
		},
		Spec: corev1.PodSpec{
			Containers:        []corev1.Container{container},
			HostNetwork:       true,
			Priority:          &priority,
			PriorityClassName: "system-node-critical",
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Volumes: volumes,
		},
	}, nil
}

// EtcdContainer is kubeadm's etcd container running etcd with args: the
// image, the command, the probe port and kubeadm's probes on it, the
// extra environment and the resource requests. Volumes are the caller's.
func EtcdContainer(c *spec.Cluster, args []spec.Arg, probe ProbeEndpoint) corev1.Container {
	return corev1.Container{
		Name:            "etcd",
		Image:           c.EtcdImage(),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         command(args),
		Ports: []corev1.ContainerPort{{
			Name:          ProbePortName,
			ContainerPort: probe.Port,
			Protocol:      corev1.ProtocolTCP,
		}},
		Env: envVars(c.Etcd.ExtraEnv),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("100Mi"),
			},
		},
		LivenessProbe:  httpProbe(probe, "/livez", 10, 8, 10),
		ReadinessProbe: httpProbe(probe, "/readyz", 0, 3, 1),
		StartupProbe:   httpProbe(probe, "/readyz", 10, int32(math.Ceil(startupWindow.Seconds()/10)), 10),
	}
}

// MarshalPod serializes a Pod the way kubeadm writes manifests: YAML with
// keys sorted, empty fields omitted and an empty "status: {}".
func MarshalPod(p *corev1.Pod) ([]byte, error) {
	if p == nil {
		return nil, errors.New("marshal pod: nil pod")
	}
	out, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("marshal pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return out, nil
}

// envVars follows kubeadm's extraEnvs handling: a later variable of the same
// name wins and the result is sorted by name, so that kubeadm fed our
// kubeadm config writes the same Pod.
func envVars(extra []spec.Arg) []corev1.EnvVar {
	if len(extra) == 0 {
		return nil
	}
	byName := make(map[string]string, len(extra))
	for _, e := range extra {
		byName[e.Name] = e.Value
	}
	env := make([]corev1.EnvVar, 0, len(byName))
	for name, value := range byName {
		env = append(env, corev1.EnvVar{Name: name, Value: value})
	}
	slices.SortFunc(env, func(a, b corev1.EnvVar) int { return strings.Compare(a.Name, b.Name) })
	return env
}

func hostPathVolume(name, hostPath string, t *corev1.HostPathType) corev1.Volume {
	return corev1.Volume{
		Name:         name,
		VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostPath, Type: t}},
	}
}

// httpProbe probes the named container port, so the probes follow the port
// a listen-metrics-urls argument chooses. Every etcd probe times out after 15s.
func httpProbe(ep ProbeEndpoint, urlPath string, initialDelay, failureThreshold, period int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Host:   ep.Host,
			Path:   urlPath,
			Port:   intstr.FromString(ProbePortName),
			Scheme: corev1.URIScheme(ep.Scheme),
		}},
		InitialDelaySeconds: initialDelay,
		TimeoutSeconds:      15,
		PeriodSeconds:       period,
		FailureThreshold:    failureThreshold,
	}
}

// listenURL is the part of an etcd listen URL the probes need; port 0 means
// none was given.
type listenURL struct {
	scheme string
	host   string
	port   int32
}

// parseURL accepts what etcd accepts for a metrics listener: an http or
// https URL with an optional host and port.
func parseURL(s string) (listenURL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return listenURL{}, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return listenURL{}, fmt.Errorf("URL %q: want an http:// or https:// URL such as http://127.0.0.1:%d", s, MetricsPort)
	}
	out := listenURL{scheme: u.Scheme, host: u.Hostname()}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > math.MaxUint16 {
			return listenURL{}, fmt.Errorf("URL %q: port %q is not between 1 and 65535", s, p)
		}
		out.port = int32(n)
	}
	return out, nil
}
