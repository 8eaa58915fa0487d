package kubeletconf

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/kubeletconf")

func cluster(t *testing.T, edit func(*spec.Cluster)) *spec.Cluster {
	t.Helper()
	c := &spec.Cluster{}
	if edit != nil {
		edit(c)
	}
	c.SetDefaults()
	return c
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "testdata", "kubeletconf", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./kubeletconf -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func readPatch(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kubeletconf", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGolden(t *testing.T) {
	def, err := Config(cluster(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kubelet.conf", def)

	cg := cluster(t, func(c *spec.Cluster) {
		c.Kubelet.CgroupDriver = "cgroupfs"
		c.Kubelet.ContainerRuntimeEndpoint = "unix:///var/run/crio/crio.sock"
	})
	patched, err := Config(cg, readPatch(t, "patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kubelet-cgroupfs-patched.conf", patched)

	golden(t, filepath.Base(layout.KubeletDropIn), DropIn(cluster(t, nil), layout.KubeletConfig))
}

// decodeStrict reads kubelet.conf back the way a second, independent decoder
// would: sigs.k8s.io/yaml in strict mode into the kubelet's own type.
func decodeStrict(t *testing.T, data []byte) kubeletv1beta1.KubeletConfiguration {
	t.Helper()
	var cfg kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		t.Fatalf("strict decode: %v\n%s", err, data)
	}
	return cfg
}

func topKeys(t *testing.T, data []byte) []string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return sortStrings(keys)
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestConfigReadBack(t *testing.T) {
	for _, driver := range []string{"systemd", "cgroupfs"} {
		t.Run(driver, func(t *testing.T) {
			c := cluster(t, func(c *spec.Cluster) { c.Kubelet.CgroupDriver = driver })
			out, err := Config(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")) {
				t.Errorf("does not start with apiVersion and kind:\n%s", out)
			}
			cfg := decodeStrict(t, out)
			if cfg.APIVersion != APIVersion || cfg.Kind != Kind {
				t.Errorf("type = %s/%s", cfg.APIVersion, cfg.Kind)
			}
			if a := cfg.Authentication.Anonymous.Enabled; a == nil || *a {
				t.Errorf("authentication.anonymous.enabled = %v, want false", a)
			}
			if w := cfg.Authentication.Webhook.Enabled; w == nil || *w {
				t.Errorf("authentication.webhook.enabled = %v, want false", w)
			}
			if m := cfg.Authorization.Mode; m != kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow {
				t.Errorf("authorization.mode = %q", m)
			}
			if cfg.CgroupDriver != driver {
				t.Errorf("cgroupDriver = %q, want %q", cfg.CgroupDriver, driver)
			}
			if cfg.Address != "127.0.0.1" {
				t.Errorf("address = %q", cfg.Address)
			}
			if cfg.ContainerRuntimeEndpoint != spec.DefaultContainerRuntimeEndpoint {
				t.Errorf("containerRuntimeEndpoint = %q", cfg.ContainerRuntimeEndpoint)
			}
			if cfg.StaticPodPath != "/etc/kubernetes/manifests" {
				t.Errorf("staticPodPath = %q", cfg.StaticPodPath)
			}
			// Exactly the guide's fields, nothing else.
			want := []string{"address", "apiVersion", "authentication", "authorization", "cgroupDriver", "containerRuntimeEndpoint", "kind", "staticPodPath"}
			if got := topKeys(t, out); !reflect.DeepEqual(got, want) {
				t.Errorf("top-level fields = %v, want %v", got, want)
			}
			var m map[string]any
			if err := yaml.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			wantAuth := map[string]any{
				"anonymous": map[string]any{"enabled": false},
				"webhook":   map[string]any{"enabled": false},
			}
			if !reflect.DeepEqual(m["authentication"], wantAuth) {
				t.Errorf("authentication = %v, want %v", m["authentication"], wantAuth)
			}
			if !reflect.DeepEqual(m["authorization"], map[string]any{"mode": "AlwaysAllow"}) {
				t.Errorf("authorization = %v", m["authorization"])
			}
		})
	}
}

func TestPatch(t *testing.T) {
	c := cluster(t, nil)
	tests := []struct {
		name  string
		patch string
		check func(t *testing.T, m map[string]any, cfg kubeletv1beta1.KubeletConfiguration)
	}{
		{
			name:  "cgroup v1 host",
			patch: "failCgroupV1: false\ncgroupsPerQOS: false\nenforceNodeAllocatable: []\n",
			check: func(t *testing.T, m map[string]any, cfg kubeletv1beta1.KubeletConfiguration) {
				if cfg.FailCgroupV1 == nil || *cfg.FailCgroupV1 {
					t.Errorf("failCgroupV1 = %v", cfg.FailCgroupV1)
				}
				if cfg.CgroupsPerQOS == nil || *cfg.CgroupsPerQOS {
					t.Errorf("cgroupsPerQOS = %v", cfg.CgroupsPerQOS)
				}
				// The empty list must survive: dropped, the kubelet would
				// default it to [pods], which needs cgroupsPerQOS.
				if v, ok := m["enforceNodeAllocatable"]; !ok || !reflect.DeepEqual(v, []any{}) {
					t.Errorf("enforceNodeAllocatable = %#v (present %v), want []", v, ok)
				}
			},
		},
		{
			name:  "JSON with apiVersion and kind",
			patch: `{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration","maxPods":10}`,
			check: func(t *testing.T, m map[string]any, cfg kubeletv1beta1.KubeletConfiguration) {
				if cfg.MaxPods != 10 {
					t.Errorf("maxPods = %d", cfg.MaxPods)
				}
			},
		},
		{
			name:  "nested maps merge",
			patch: "authentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n",
			check: func(t *testing.T, m map[string]any, cfg kubeletv1beta1.KubeletConfiguration) {
				if cfg.Authentication.X509.ClientCAFile != "/etc/kubernetes/pki/ca.crt" {
					t.Errorf("x509.clientCAFile = %q", cfg.Authentication.X509.ClientCAFile)
				}
				if a := cfg.Authentication.Anonymous.Enabled; a == nil || *a {
					t.Errorf("anonymous.enabled lost in the merge: %v", a)
				}
			},
		},
		{
			name:  "scalars replace, null deletes",
			patch: "address: 0.0.0.0\nstaticPodPath: null\n",
			check: func(t *testing.T, m map[string]any, cfg kubeletv1beta1.KubeletConfiguration) {
				if cfg.Address != "0.0.0.0" {
					t.Errorf("address = %q", cfg.Address)
				}
				if _, ok := m["staticPodPath"]; ok {
					t.Errorf("staticPodPath still present")
				}
			},
		},
		{
			name:  "large integer kept exact",
			patch: "podPidsLimit: 9007199254740993\n",
			check: func(t *testing.T, m map[string]any, cfg kubeletv1beta1.KubeletConfiguration) {
				if cfg.PodPidsLimit == nil || *cfg.PodPidsLimit != 9007199254740993 {
					t.Errorf("podPidsLimit = %v", cfg.PodPidsLimit)
				}
			},
		},
		{name: "empty", patch: ""},
		{name: "only a comment", patch: "# nothing to change\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Config(c, []byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			cfg := decodeStrict(t, out)
			var m map[string]any
			if err := yaml.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, m, cfg)
			}
		})
	}
}

func TestPatchErrors(t *testing.T) {
	c := cluster(t, nil)
	tests := []struct {
		name, patch, want string
	}{
		{"unknown field", "cgroupDrvier: systemd\n", `kubelet config patch: unknown field "cgroupDrvier"`},
		{"unknown nested field", "authentication:\n  anonymus:\n    enabled: true\n", `unknown field "authentication.anonymus"`},
		{"wrong case", "CgroupDriver: cgroupfs\n", `unknown field "CgroupDriver"`},
		{"bad YAML", "failCgroupV1: false\n  cgroupsPerQOS: [\n", "kubelet config patch: "},
		{"duplicate key", "maxPods: 10\nmaxPods: 20\n", `"maxPods" already set`},
		{"wrong type", "cgroupsPerQOS: maybe\n", "cgroupsPerQOS"},
		{"not a mapping", "- failCgroupV1: false\n", "want a mapping (a partial KubeletConfiguration), got a list"},
		{"wrong apiVersion", "apiVersion: kubelet.config.k8s.io/v1\n", `apiVersion "kubelet.config.k8s.io/v1": want "kubelet.config.k8s.io/v1beta1"`},
		{"wrong kind", "kind: KubeProxyConfiguration\n", `kind "KubeProxyConfiguration": want "KubeletConfiguration"`},
		{"apiVersion deleted", "apiVersion: null\n", `kubelet config after patch: apiVersion "": want`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Config(c, []byte(tt.patch))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			t.Log(msg)
		})
	}
}

func TestConfigNeedsDefaults(t *testing.T) {
	if _, err := Config(&spec.Cluster{}, nil); err == nil {
		t.Fatal("no error for a cluster without defaults")
	}
}

func TestConfigDoesNotModifyPatchOrBase(t *testing.T) {
	c := cluster(t, nil)
	a, err := Config(c, []byte("address: 0.0.0.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Config(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) || !bytes.Contains(b, []byte("address: 127.0.0.1\n")) {
		t.Errorf("patched and unpatched output mixed up:\n%s\n%s", a, b)
	}
}

func TestDropIn(t *testing.T) {
	c := cluster(t, nil)
	want := "[Service]\n" +
		"ExecStart=\n" +
		"ExecStart=/usr/bin/kubelet --config=/etc/systemd/system/kubelet.service.d/kubelet.conf\n" +
		"Restart=always\n"
	if got := string(DropIn(c, layout.KubeletConfig)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	odd := cluster(t, func(c *spec.Cluster) { c.Kubelet.Path = "/opt/kube let/bin/kubelet" })
	got := string(DropIn(odd, "/etc/kubelet/100%$HOME.conf"))
	line := "ExecStart=\"/opt/kube let/bin/kubelet\" --config=/etc/kubelet/100%%$$HOME.conf\n"
	if !strings.Contains(got, line) {
		t.Errorf("got\n%s\nwant a line\n%s", got, line)
	}
}

func TestPaths(t *testing.T) {
	if layout.KubeletConfig != "/etc/systemd/system/kubelet.service.d/kubelet.conf" {
		t.Errorf("KubeletConfig = %s", layout.KubeletConfig)
	}
	if layout.KubeletDropIn != "/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf" {
		t.Errorf("KubeletDropIn = %s", layout.KubeletDropIn)
	}
}
