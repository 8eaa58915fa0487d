package manifests

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// testdata holds kubeadm v1.36.3's own output; see its README.md.
const testdata = "../testdata/manifests"

// guideCluster is the input of the HA etcd guide the reference was made with.
func guideCluster(t *testing.T) *spec.Cluster {
	t.Helper()
	c := &spec.Cluster{Hosts: []spec.Host{
		{Name: "etcd01", Address: "10.107.88.15"},
		{Name: "etcd02", Address: "10.107.88.16"},
		{Name: "etcd03", Address: "10.107.88.17"},
	}}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatalf("guide cluster: %v", err)
	}
	return c
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatalf("read golden file: %v", err)
	}
	return data
}

// splitDocuments cuts a YAML stream at "---" lines and drops empty documents
// (kubeadmcfg.yaml starts with "---").
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []string
	flush := func() {
		doc := strings.Join(cur, "\n")
		if strings.TrimSpace(doc) != "" {
			docs = append(docs, []byte(doc))
		}
		cur = nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}

// assertSameYAML compares two YAML streams document by document as parsed
// data, so quoting, key order and indentation do not matter.
func assertSameYAML(t *testing.T, got, want []byte) {
	t.Helper()
	gotDocs, wantDocs := splitDocuments(got), splitDocuments(want)
	if len(gotDocs) != len(wantDocs) {
		t.Fatalf("got %d YAML documents, want %d\n--- got:\n%s", len(gotDocs), len(wantDocs), got)
	}
	for i := range wantDocs {
		var g, w any
		if err := yaml.Unmarshal(gotDocs[i], &g); err != nil {
			t.Fatalf("document %d of our output does not parse: %v\n%s", i+1, err, gotDocs[i])
		}
		if err := yaml.Unmarshal(wantDocs[i], &w); err != nil {
			t.Fatalf("golden document %d does not parse: %v", i+1, err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("document %d differs from kubeadm's (- kubeadm, + ours):\n%s", i+1, lineDiff(normalize(t, w), normalize(t, g)))
		}
	}
}

// normalize re-serializes parsed YAML so both sides print alike.
func normalize(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatalf("marshal for diff: %v", err)
	}
	return string(out)
}

// lineDiff shows, line by line, how a and b differ (- a, + b).
func lineDiff(a, b string) string {
	return cmp.Diff(strings.Split(a, "\n"), strings.Split(b, "\n"))
}

func marshalPod(t *testing.T, c *spec.Cluster, h spec.Host, extra []spec.Arg) []byte {
	t.Helper()
	pod, err := EtcdPod(c, h, extra)
	if err != nil {
		t.Fatalf("EtcdPod: %v", err)
	}
	out, err := MarshalPod(pod)
	if err != nil {
		t.Fatalf("MarshalPod: %v", err)
	}
	return out
}

func TestGuideEtcdPods(t *testing.T) {
	c := guideCluster(t)
	for _, h := range c.Hosts {
		t.Run(h.Name, func(t *testing.T) {
			got := marshalPod(t, c, h, HostExtraArgs(c, h))
			want := readGolden(t, filepath.Join("ha-3node", h.Name, "etcd.yaml"))
			assertSameYAML(t, got, want)
			// Same serializer as kubeadm, so the bytes match too.
			if !bytes.Equal(got, want) {
				t.Errorf("parsed YAML matches but the bytes differ from kubeadm's:\n%s", lineDiff(string(want), string(got)))
			}
		})
	}
}

func TestGuideKubeadmConfigs(t *testing.T) {
	c := guideCluster(t)
	for _, h := range c.Hosts {
		t.Run(h.Name, func(t *testing.T) {
			got, err := HostKubeadmConfig(c, h)
			if err != nil {
				t.Fatalf("HostKubeadmConfig: %v", err)
			}
			assertSameYAML(t, got, readGolden(t, filepath.Join("ha-3node", h.Name, "kubeadmcfg.yaml")))
		})
	}
}

// With no extraArgs we must write exactly kubeadm's own defaults for a
// single-member cluster.
func TestNoExtraArgs(t *testing.T) {
	c := &spec.Cluster{Hosts: []spec.Host{{Name: "etcd01", Address: "10.107.88.15"}}}
	c.SetDefaults()
	got := marshalPod(t, c, c.Hosts[0], nil)
	want := readGolden(t, "ipv4-defaults/etcd-no-extraargs.yaml")
	assertSameYAML(t, got, want)
	if !bytes.Equal(got, want) {
		t.Errorf("parsed YAML matches but the bytes differ from kubeadm's:\n%s", lineDiff(string(want), string(got)))
	}
}

func TestExternalEtcdConfig(t *testing.T) {
	for _, version := range []string{"v1beta4", "v1beta3"} {
		t.Run(version, func(t *testing.T) {
			c := guideCluster(t)
			c.ControlPlane.KubeadmAPIVersion = version
			c.ControlPlane.ControlPlaneEndpoint = "10.107.88.9:6443"
			c.ControlPlane.PodSubnet = "10.244.0.0/16"
			got, err := ExternalEtcdConfig(c)
			if err != nil {
				t.Fatalf("ExternalEtcdConfig: %v", err)
			}
			assertSameYAML(t, got, readGolden(t, "external-etcd/cluster-config-"+version+".yaml"))
		})
	}
}
