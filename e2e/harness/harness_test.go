package harness

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// testPod is the shape of kubeadm's etcd Pod, reduced to what the harness reads.
func testPod() *corev1.Pod {
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	probe := func(path string, delay, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Host: "127.0.0.1", Path: path, Port: intstr.FromString("probe-port"), Scheme: corev1.URISchemeHTTP,
			}},
			InitialDelaySeconds: delay, PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 15,
		}
	}
	return &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "etcd",
			Command: []string{"etcd", "--cert-file=/etc/kubernetes/pki/etcd/server.crt", "--data-dir=/var/lib/etcd",
				"--listen-metrics-urls=http://127.0.0.1:2381", "--name=etcd01"},
			Ports:          []corev1.ContainerPort{{Name: "probe-port", ContainerPort: 2381}},
			StartupProbe:   probe("/readyz", 10, 10, 24),
			ReadinessProbe: probe("/readyz", 0, 1, 3),
			LivenessProbe:  probe("/livez", 10, 10, 8),
			VolumeMounts: []corev1.VolumeMount{
				{Name: "etcd-data", MountPath: "/var/lib/etcd"},
				{Name: "etcd-certs", MountPath: "/etc/kubernetes/pki/etcd"},
			},
		}},
		Volumes: []corev1.Volume{
			{Name: "etcd-certs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/kubernetes/pki/etcd", Type: &dirOrCreate}}},
			{Name: "etcd-data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/etcd", Type: &dirOrCreate}}},
		},
	}}
}

func testPlan(t *testing.T) (*podPlan, string) {
	root := t.TempDir()
	p, err := planPod(testPod(), "/opt/etcd", func(p string) string { return filepath.Join(root, p) })
	if err != nil {
		t.Fatal(err)
	}
	return p, root
}

func TestPlanKeepsTheCommandAndMapsVolumes(t *testing.T) {
	p, root := testPlan(t)
	want := append([]string{"/opt/etcd"}, testPod().Spec.Containers[0].Command[1:]...)
	if !slices.Equal(p.argv, want) {
		t.Errorf("argv %q, want %q", p.argv, want)
	}
	for _, e := range p.env {
		if strings.HasPrefix(e, "ETCD_") {
			t.Errorf("the test's environment leaks into etcd: %s", e)
		}
	}
	wantBinds := []bind{
		{source: filepath.Join(root, "/var/lib/etcd"), target: "/var/lib/etcd"},
		{source: filepath.Join(root, "/etc/kubernetes/pki/etcd"), target: "/etc/kubernetes/pki/etcd"},
	}
	if !slices.Equal(p.binds, wantBinds) {
		t.Errorf("binds %+v, want %+v", p.binds, wantBinds)
	}
}

func TestLoopbackRewrite(t *testing.T) {
	p, root := testPlan(t)
	if err := p.rewriteForLoopback("127.9.9.11"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/opt/etcd",
		"--cert-file=" + filepath.Join(root, "/etc/kubernetes/pki/etcd") + "/server.crt",
		"--data-dir=" + filepath.Join(root, "/var/lib/etcd"),
		"--listen-metrics-urls=http://127.9.9.11:2381",
		"--name=etcd01",
	}
	if !slices.Equal(p.argv, want) {
		t.Errorf("argv %q, want %q", p.argv, want)
	}
}

func TestMountScriptOverlaysMissingParents(t *testing.T) {
	p, _ := testPlan(t)
	p.binds = append(p.binds, bind{source: "/src/it's", target: "/nonexistent-e2e-dir/x/y"})
	if _, err := p.mountScript("/stage"); err == nil || !strings.Contains(err.Error(), "top-level") {
		t.Fatalf("a mount path under a missing top-level folder: err %v", err)
	}
	p.binds = p.binds[:2]
	script, err := p.mountScript("/stage")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"mount -t tmpfs -o mode=0700 e2e-stage /stage",
		"mount --bind " + shellcmd.Quote(p.binds[1].source) + " /etc/kubernetes/pki/etcd",
		`exec "$@"`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if len(p.missing) > 0 && !strings.Contains(script, "mount -t overlay") {
		t.Errorf("missing mount paths %v but no overlay:\n%s", p.missing, script)
	}
}

func TestResolveProbe(t *testing.T) {
	c := testPod().Spec.Containers[0]
	p, err := resolveProbe(Startup, c.StartupProbe, c, "10.0.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.url != "http://127.0.0.1:2381/readyz" || p.timeout != 15*time.Second || p.budget != 250*time.Second {
		t.Errorf("startup probe %+v", p)
	}
	p, err = resolveProbe(Liveness, c.LivenessProbe, c, "10.0.0.1", "127.9.9.11")
	if err != nil {
		t.Fatal(err)
	}
	if p.url != "http://127.9.9.11:2381/livez" {
		t.Errorf("loopback liveness probe %s", p.url)
	}
	c.StartupProbe.HTTPGet.Port = intstr.FromString("nope")
	if _, err := resolveProbe(Startup, c.StartupProbe, c, "10.0.0.1", ""); err == nil {
		t.Error("an unknown port name resolved")
	}
}

func TestAddressing(t *testing.T) {
	for in, want := range map[string]string{"10.107.88.0/24": "10.107.88.254", "fd00:e2e::/64": "fd00:e2e::ffff:ffff:ffff:fffe"} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
	if pid, ok := ownerPID(NamePrefix + "123-abcdef-hub"); !ok || pid != 123 {
		t.Errorf("ownerPID: %d %v", pid, ok)
	}
	if _, ok := ownerPID("other-123-x"); ok {
		t.Error("ownerPID claims a foreign namespace")
	}
}

func TestEtcdByImageTag(t *testing.T) {
	v, err := parseEtcdVersion("etcd Version: 3.6.16\nGit SHA: Not provided\nGo Version: go1.26.8\n")
	if err != nil || v != "3.6.16" {
		t.Fatalf("parseEtcdVersion: %q %v", v, err)
	}
	if _, err := parseEtcdVersion("etcdctl version: 3.6.8\n"); err == nil {
		t.Error("parseEtcdVersion accepted etcdctl's output")
	}
	tools := Tools{EtcdByTag: map[string]string{"3.6.8-0": "/bin/etcd-a", "3.6.16-0": "/bin/etcd-b"}}
	for image, want := range map[string]string{
		"registry.k8s.io/etcd:3.6.8-0":         "/bin/etcd-a",
		"mirror.example:5000/etcd:3.6.16-0":    "/bin/etcd-b",
		"mirror.example:5000/k8s/etcd:3.6.8-0": "/bin/etcd-a",
	} {
		if got, err := tools.EtcdFor(image); err != nil || got != want {
			t.Errorf("EtcdFor(%s) = %q, %v; want %s", image, got, err, want)
		}
	}
	for _, image := range []string{"registry.k8s.io/etcd:3.5.21-0", "mirror.example:5000/etcd", "registry.k8s.io/etcd@sha256:00"} {
		if got, err := tools.EtcdFor(image); err == nil {
			t.Errorf("EtcdFor(%s) = %s, want an error", image, got)
		} else {
			t.Logf("%s: %v", image, err)
		}
	}
}

func TestNextHost(t *testing.T) {
	l := &Lab{mode: ModeLoopback, loopbackNet: [3]byte{127, 9, 9}, hosts: map[string]*hostNet{}}
	hosts := l.Hosts(t, 3, IPv4)
	if got := l.NextHost(t, "etcd04"); got != (Host{"etcd04", "127.9.9.14"}) {
		t.Errorf("NextHost after %v = %v", hosts, got)
	}
	if got := l.NextHost(t, "etcd05"); got.Address != "127.9.9.15" {
		t.Errorf("second NextHost = %v", got)
	}
	empty := &Lab{mode: ModeNamespace, hosts: map[string]*hostNet{}}
	if got := empty.NextHost(t, "etcd01"); got.Address != "10.107.88.15" {
		t.Errorf("NextHost of an empty lab = %v", got)
	}
}

func TestDataDir(t *testing.T) {
	p, root := testPlan(t)
	m := &Member{run: &runSpec{plan: p}}
	if got, want := m.DataDir(), filepath.Join(root, "/var/lib/etcd"); got != want {
		t.Errorf("DataDir = %s, want %s", got, want)
	}
	i := slices.Index(p.container.Command, "--data-dir=/var/lib/etcd")
	p.container.Command[i] = "--data-dir=/var/lib/etcd/member-data"
	if got, want := m.DataDir(), filepath.Join(root, "/var/lib/etcd/member-data"); got != want {
		t.Errorf("DataDir below the mount = %s, want %s", got, want)
	}
}

// TestExpand: kubelet's $(VAR) rules for command, args and env values.
func TestExpand(t *testing.T) {
	vars := map[string]string{"POD_NAME": "etcd-1", "EMPTY": ""}
	for in, want := range map[string]string{
		"--name=$(POD_NAME)":                   "--name=etcd-1",
		"https://$(POD_NAME).etcd:2380":        "https://etcd-1.etcd:2380",
		"$(UNKNOWN) stays":                     "$(UNKNOWN) stays",
		"$$(POD_NAME) is escaped":              "$(POD_NAME) is escaped",
		"a$(EMPTY)b":                           "ab",
		"unclosed $(POD_NAME":                  "unclosed $(POD_NAME",
		"$ alone, and at the end $":            "$ alone, and at the end $",
		"$(POD_NAME)-server.crt $(POD_NAME).x": "etcd-1-server.crt etcd-1.x",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}
