package manifests

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

func etcdPod(t *testing.T, c *spec.Cluster, h spec.Host, extra []spec.Arg) *corev1.Pod {
	t.Helper()
	pod, err := EtcdPod(c, h, extra)
	if err != nil {
		t.Fatalf("EtcdPod: %v", err)
	}
	return pod
}

func flags(pod *corev1.Pod) []string { return pod.Spec.Containers[0].Command[1:] }

func hasFlag(pod *corev1.Pod, flag string) bool { return slices.Contains(flags(pod), flag) }

func TestOverrideDefaultArgument(t *testing.T) {
	c := guideCluster(t)
	pod := etcdPod(t, c, c.Hosts[0], []spec.Arg{{Name: "snapshot-count", Value: "5000"}})
	got := flags(pod)
	if got[len(got)-1] != "--snapshot-count=5000" {
		t.Errorf("last flag = %q, want the override --snapshot-count=5000 at the end", got[len(got)-1])
	}
	if hasFlag(pod, "--snapshot-count=10000") {
		t.Error("the default --snapshot-count=10000 is still there next to the override")
	}
	// The remaining defaults stay sorted by name.
	rest := got[:len(got)-1]
	if !slices.IsSorted(rest) {
		t.Errorf("defaults are not sorted: %q", rest)
	}
	if len(rest) != len(defaultArgs(c, kubeadmMember(c, c.Hosts[0])))-1 {
		t.Errorf("got %d defaults, want all but the overridden one", len(rest))
	}
}

func TestRepeatedExtraArgsAreAllKept(t *testing.T) {
	c := guideCluster(t)
	extra := []spec.Arg{
		{Name: "log-level", Value: "debug"},
		{Name: "snapshot-count", Value: "1"},
		{Name: "log-level", Value: "info"},
	}
	got := flags(etcdPod(t, c, c.Hosts[0], extra))
	want := []string{"--log-level=debug", "--snapshot-count=1", "--log-level=info"}
	if tail := got[len(got)-3:]; !slices.Equal(tail, want) {
		t.Errorf("tail = %q, want %q (kubeadm keeps every repeat, in order)", tail, want)
	}
}

func TestListenMetricsURLsMovesProbes(t *testing.T) {
	c := guideCluster(t)
	h := c.Hosts[0]
	for _, tc := range []struct {
		value  string
		host   string
		port   int32
		scheme corev1.URIScheme
	}{
		{"https://10.107.88.15:2390,http://127.0.0.1:2381", "10.107.88.15", 2390, corev1.URISchemeHTTPS},
		{"http://127.0.0.2", "127.0.0.2", MetricsPort, corev1.URISchemeHTTP},
		{"http://:2391", "127.0.0.1", 2391, corev1.URISchemeHTTP},
		{"http://0.0.0.0:2381", "0.0.0.0", 2381, corev1.URISchemeHTTP},
	} {
		t.Run(tc.value, func(t *testing.T) {
			// Only the last listen-metrics-urls counts, as in kubeadm.
			pod := etcdPod(t, c, h, []spec.Arg{
				{Name: "listen-metrics-urls", Value: "http://127.0.0.9:9999"},
				{Name: "listen-metrics-urls", Value: tc.value},
			})
			ctr := pod.Spec.Containers[0]
			if len(ctr.Ports) != 1 || ctr.Ports[0].Name != ProbePortName || ctr.Ports[0].ContainerPort != tc.port {
				t.Errorf("ports = %+v, want %s = %d", ctr.Ports, ProbePortName, tc.port)
			}
			for name, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe, "startup": ctr.StartupProbe} {
				g := p.HTTPGet
				if g.Host != tc.host || g.Scheme != tc.scheme || g.Port.StrVal != ProbePortName {
					t.Errorf("%s probe = %s %s port %s, want %s %s port %s", name, g.Scheme, g.Host, g.Port.String(), tc.scheme, tc.host, ProbePortName)
				}
			}
			if hasFlag(pod, "--listen-metrics-urls=http://127.0.0.1:2381") {
				t.Error("the default listen-metrics-urls was not dropped")
			}
		})
	}
}

func TestUnparsableListenMetricsURLs(t *testing.T) {
	c := guideCluster(t)
	for _, value := range []string{"127.0.0.1:2381", "http://127.0.0.1:99999", "unix:///run/etcd.sock", "http://[::1"} {
		t.Run(value, func(t *testing.T) {
			_, err := EtcdPod(c, c.Hosts[0], []spec.Arg{{Name: "listen-metrics-urls", Value: value}})
			if err == nil {
				t.Fatal("EtcdPod accepted it")
			}
			if !strings.Contains(err.Error(), "listen-metrics-urls") || !strings.Contains(err.Error(), "etcd01") {
				t.Errorf("error %q does not name the argument and the host", err)
			}
		})
	}
}

func TestIPv6Host(t *testing.T) {
	c := &spec.Cluster{Hosts: []spec.Host{
		{Name: "etcd01", Address: "fd00:10::15"},
		{Name: "etcd02", Address: "fd00:10::16"},
		{Name: "etcd03", Address: "fd00:10::17"},
	}}
	c.SetDefaults()
	h := c.Hosts[0]

	bare := etcdPod(t, c, h, nil)
	for _, f := range []string{
		"--advertise-client-urls=https://[fd00:10::15]:2379",
		"--listen-client-urls=https://[::1]:2379,https://[fd00:10::15]:2379",
		"--listen-metrics-urls=http://[::1]:2381",
		"--listen-peer-urls=https://[fd00:10::15]:2380",
		"--initial-advertise-peer-urls=https://[fd00:10::15]:2380",
		"--initial-cluster=etcd01=https://[fd00:10::15]:2380",
	} {
		if !hasFlag(bare, f) {
			t.Errorf("missing %s in %q", f, flags(bare))
		}
	}
	if got := bare.Annotations[AdvertiseClientURLsAnnotation]; got != "https://[fd00:10::15]:2379" {
		t.Errorf("annotation = %q", got)
	}
	for _, p := range []*corev1.Probe{bare.Spec.Containers[0].LivenessProbe, bare.Spec.Containers[0].ReadinessProbe, bare.Spec.Containers[0].StartupProbe} {
		if p.HTTPGet.Host != "::1" {
			t.Errorf("probe host = %q, want ::1", p.HTTPGet.Host)
		}
	}

	guide := etcdPod(t, c, h, HostExtraArgs(c, h))
	if want := "--initial-cluster=etcd01=https://[fd00:10::15]:2380,etcd02=https://[fd00:10::16]:2380,etcd03=https://[fd00:10::17]:2380"; !hasFlag(guide, want) {
		t.Errorf("missing %s in %q", want, flags(guide))
	}
	// An explicit IPv6 metrics URL keeps its host without brackets.
	moved := etcdPod(t, c, h, []spec.Arg{{Name: "listen-metrics-urls", Value: "https://[fd00:10::15]:2382"}})
	if g := moved.Spec.Containers[0].LivenessProbe.HTTPGet; g.Host != "fd00:10::15" || g.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("probe = %s %s, want HTTPS fd00:10::15", g.Scheme, g.Host)
	}

	c.ControlPlane.ControlPlaneEndpoint = "[fd00:10::9]:6443"
	out, err := ExternalEtcdConfig(c)
	if err != nil {
		t.Fatalf("ExternalEtcdConfig: %v", err)
	}
	if !strings.Contains(string(out), "- https://[fd00:10::16]:2379\n") {
		t.Errorf("external endpoints are not bracketed:\n%s", out)
	}
}

func TestCustomDirsAndImage(t *testing.T) {
	c := guideCluster(t)
	c.CertDir = "/srv/pki"
	c.Etcd.DataDir = "/data/etcd"
	c.Etcd.ImageRepository = "mirror.example.com:5000/k8s"
	c.Etcd.Version = "3.6.9-0"
	h := c.Hosts[1]
	pod := etcdPod(t, c, h, HostExtraArgs(c, h))
	ctr := pod.Spec.Containers[0]

	if ctr.Image != "mirror.example.com:5000/k8s/etcd:3.6.9-0" {
		t.Errorf("image = %q", ctr.Image)
	}
	for _, f := range []string{
		"--data-dir=/data/etcd",
		"--cert-file=/srv/pki/etcd/server.crt",
		"--key-file=/srv/pki/etcd/server.key",
		"--trusted-ca-file=/srv/pki/etcd/ca.crt",
		"--peer-cert-file=/srv/pki/etcd/peer.crt",
		"--peer-key-file=/srv/pki/etcd/peer.key",
		"--peer-trusted-ca-file=/srv/pki/etcd/ca.crt",
	} {
		if !hasFlag(pod, f) {
			t.Errorf("missing %s", f)
		}
	}
	wantVolumes := map[string]string{"etcd-certs": "/srv/pki/etcd", "etcd-data": "/data/etcd"}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath == nil || v.HostPath.Path != wantVolumes[v.Name] {
			t.Errorf("volume %s = %+v, want hostPath %s", v.Name, v.HostPath, wantVolumes[v.Name])
		}
	}
	for _, m := range ctr.VolumeMounts {
		if m.MountPath != wantVolumes[m.Name] {
			t.Errorf("mount %s at %s, want %s", m.Name, m.MountPath, wantVolumes[m.Name])
		}
	}

	// The kubeadm config carries every non-default so kubeadm writes the same Pod.
	c.EncryptionAlgorithm = "ECDSA-P256"
	c.CertificateValidity.Duration = 90 * 24 * time.Hour
	c.CACertificateValidity.Duration = 5 * 365 * 24 * time.Hour
	cc := clusterDocument(t, c, h)
	for field, want := range map[string]any{
		"certificatesDir":             "/srv/pki",
		"encryptionAlgorithm":         "ECDSA-P256",
		"certificateValidityPeriod":   "2160h0m0s",
		"caCertificateValidityPeriod": "43800h0m0s",
	} {
		if cc[field] != want {
			t.Errorf("ClusterConfiguration %s = %v, want %v", field, cc[field], want)
		}
	}
	local := cc["etcd"].(map[string]any)["local"].(map[string]any)
	for field, want := range map[string]any{
		"imageRepository": "mirror.example.com:5000/k8s",
		"imageTag":        "3.6.9-0",
		"dataDir":         "/data/etcd",
	} {
		if local[field] != want {
			t.Errorf("etcd.local.%s = %v, want %v", field, local[field], want)
		}
	}
}

func TestKubeadmImageDefaults(t *testing.T) {
	for _, tc := range []struct{ image, repo, tag string }{
		{"registry.k8s.io/etcd:3.6.8-0", "", ""},
		{"registry.k8s.io/etcd:3.6.9-0", "", "3.6.9-0"},
		{"mirror.local/etcd:3.6.8-0", "mirror.local", ""},
	} {
		repo, tag, err := kubeadmImage(tc.image)
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("kubeadmImage(%q) = %q, %q, %v; want %q, %q", tc.image, repo, tag, err, tc.repo, tc.tag)
		}
	}
	for _, image := range []string{"quay.io/coreos/etcd-custom:v3.6.8", "etcd:3.6.8", "registry.k8s.io/etcd", "registry.k8s.io/etcd@sha256:abcd"} {
		c := guideCluster(t)
		c.Etcd.Image = image
		if _, err := HostKubeadmConfig(c, c.Hosts[0]); err == nil || !strings.Contains(err.Error(), image) {
			t.Errorf("HostKubeadmConfig with image %q: err = %v, want one naming the image", image, err)
		}
	}
}

func TestExtraEnv(t *testing.T) {
	c := guideCluster(t)
	c.Etcd.ExtraEnv = []spec.Arg{
		{Name: "GOMAXPROCS", Value: "2"},
		{Name: "ETCD_UNSUPPORTED_ARCH", Value: "arm"},
		{Name: "GOMAXPROCS", Value: "4"},
	}
	h := c.Hosts[0]
	got := etcdPod(t, c, h, HostExtraArgs(c, h)).Spec.Containers[0].Env
	// kubeadm merges extraEnvs by name (last wins) and sorts them.
	want := []corev1.EnvVar{{Name: "ETCD_UNSUPPORTED_ARCH", Value: "arm"}, {Name: "GOMAXPROCS", Value: "4"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("env = %+v, want %+v", got, want)
	}
	local := clusterDocument(t, c, h)["etcd"].(map[string]any)["local"].(map[string]any)
	if envs, _ := local["extraEnvs"].([]any); len(envs) != 3 {
		t.Errorf("etcd.local.extraEnvs = %v, want the three given", local["extraEnvs"])
	}
	if bare := etcdPod(t, guideCluster(t), h, nil).Spec.Containers[0].Env; bare != nil {
		t.Errorf("env without extraEnv = %+v, want none", bare)
	}
}

func TestHostExtraArgsWithUserArgs(t *testing.T) {
	c := guideCluster(t)
	c.Etcd.ClusterState = "existing"
	c.Etcd.ExtraArgs = []spec.Arg{
		{Name: "snapshot-count", Value: "5000"},
		{Name: "listen-client-urls", Value: "https://10.107.88.15:2379,https://127.0.0.1:2379"},
		{Name: "log-level", Value: "warn"},
		{Name: "listen-client-urls", Value: "https://10.107.88.15:2379"},
	}
	h := c.Hosts[0]
	var got []string
	for _, a := range HostExtraArgs(c, h) {
		got = append(got, a.Name+"="+a.Value)
	}
	want := []string{
		"initial-cluster=etcd01=https://10.107.88.15:2380,etcd02=https://10.107.88.16:2380,etcd03=https://10.107.88.17:2380",
		"initial-cluster-state=existing",
		"name=etcd01",
		"listen-peer-urls=https://10.107.88.15:2380",
		"listen-client-urls=https://10.107.88.15:2379,https://127.0.0.1:2379",
		"advertise-client-urls=https://10.107.88.15:2379",
		"initial-advertise-peer-urls=https://10.107.88.15:2380",
		"snapshot-count=5000",
		"log-level=warn",
		"listen-client-urls=https://10.107.88.15:2379",
	}
	if !slices.Equal(got, want) {
		t.Errorf("HostExtraArgs =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if hasFlag(etcdPod(t, c, h, HostExtraArgs(c, h)), "--snapshot-count=10000") {
		t.Error("user snapshot-count did not replace kubeadm's default")
	}
}

func TestHostKubeadmConfigSANs(t *testing.T) {
	c := guideCluster(t)
	c.Hosts[2].ServerCertSANs = []string{"etcd03.example.com"}
	c.Hosts[2].PeerCertSANs = []string{"10.0.0.17"}
	local := clusterDocument(t, c, c.Hosts[2])["etcd"].(map[string]any)["local"].(map[string]any)
	if got := local["serverCertSANs"]; !reflect.DeepEqual(got, []any{"10.107.88.17", "etcd03.example.com"}) {
		t.Errorf("serverCertSANs = %v", got)
	}
	if got := local["peerCertSANs"]; !reflect.DeepEqual(got, []any{"10.107.88.17", "10.0.0.17"}) {
		t.Errorf("peerCertSANs = %v", got)
	}
}

func TestExternalEtcdConfigOptionalFields(t *testing.T) {
	for _, version := range []string{"v1beta4", "v1beta3"} {
		t.Run(version, func(t *testing.T) {
			c := guideCluster(t)
			c.ControlPlane.KubeadmAPIVersion = version
			c.ControlPlane.CertDir = "/srv/k8s-pki"
			c.ControlPlane.KubernetesVersion = "v1.36.3"
			c.ControlPlane.ServiceSubnet = "10.96.0.0/12"
			c.ControlPlane.APIServerCertSANs = []string{"api.example.com"}
			out, err := ExternalEtcdConfig(c)
			if err != nil {
				t.Fatalf("ExternalEtcdConfig: %v", err)
			}
			want := `apiServer:
  certSANs:
  - api.example.com
apiVersion: kubeadm.k8s.io/` + version + `
certificatesDir: /srv/k8s-pki
etcd:
  external:
    caFile: /srv/k8s-pki/etcd/ca.crt
    certFile: /srv/k8s-pki/apiserver-etcd-client.crt
    endpoints:
    - https://10.107.88.15:2379
    - https://10.107.88.16:2379
    - https://10.107.88.17:2379
    keyFile: /srv/k8s-pki/apiserver-etcd-client.key
kind: ClusterConfiguration
kubernetesVersion: v1.36.3
networking:
  serviceSubnet: 10.96.0.0/12
`
			if string(out) != want {
				t.Errorf("got:\n%s\nwant:\n%s", out, want)
			}
		})
	}
	c := guideCluster(t)
	c.ControlPlane.KubeadmAPIVersion = "v1beta2"
	if _, err := ExternalEtcdConfig(c); err == nil || !strings.Contains(err.Error(), "v1beta2") {
		t.Errorf("unknown API version: err = %v", err)
	}
}

func TestEtcdPodRejectsNonIPAddress(t *testing.T) {
	c := guideCluster(t)
	if _, err := EtcdPod(c, spec.Host{Name: "etcd09", Address: "etcd09.example.com"}, nil); err == nil {
		t.Error("EtcdPod accepted a host name as address")
	}
}

func TestMarshalPodRoundTrip(t *testing.T) {
	c := guideCluster(t)
	h := c.Hosts[0]
	pod := etcdPod(t, c, h, HostExtraArgs(c, h))
	out, err := MarshalPod(pod)
	if err != nil {
		t.Fatalf("MarshalPod: %v", err)
	}
	if !strings.HasSuffix(string(out), "status: {}\n") || strings.Contains(string(out), "creationTimestamp") {
		t.Errorf("not in kubeadm's style:\n%s", out)
	}
	var back corev1.Pod
	if err := yaml.UnmarshalStrict(out, &back); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !reflect.DeepEqual(back.Spec.Containers[0].Command, pod.Spec.Containers[0].Command) {
		t.Error("command changed in a round trip")
	}
	if _, err := MarshalPod(nil); err == nil {
		t.Error("MarshalPod(nil) returned no error")
	}
}

// clusterDocument returns the parsed ClusterConfiguration of h's kubeadm config.
func clusterDocument(t *testing.T, c *spec.Cluster, h spec.Host) map[string]any {
	t.Helper()
	out, err := HostKubeadmConfig(c, h)
	if err != nil {
		t.Fatalf("HostKubeadmConfig: %v", err)
	}
	docs := splitDocuments(out)
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want InitConfiguration and ClusterConfiguration", len(docs))
	}
	var cc map[string]any
	if err := yaml.Unmarshal(docs[1], &cc); err != nil {
		t.Fatalf("parse ClusterConfiguration: %v", err)
	}
	if cc["kind"] != "ClusterConfiguration" || cc["apiVersion"] != "kubeadm.k8s.io/v1beta4" {
		t.Fatalf("second document is %v %v", cc["apiVersion"], cc["kind"])
	}
	return cc
}
