package manifests_test

import (
	"slices"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestPeerURLs: the peer URLs derived from the spec are the ones the
// rendered manifest gives etcd, with and without extra args over them.
func TestPeerURLs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []spec.Arg
		want  []string
	}{
		{"guide", nil, []string{"https://10.0.0.2:2380"}},
		{"overridden", []spec.Arg{{Name: "initial-advertise-peer-urls", Value: "https://10.1.0.2:2380,https://[fd00::2]:2380"}},
			[]string{"https://10.1.0.2:2380", "https://[fd00::2]:2380"}},
		{"repeated: etcd takes the last", []spec.Arg{
			{Name: "initial-advertise-peer-urls", Value: "https://10.1.0.2:2380"},
			{Name: "initial-advertise-peer-urls", Value: "https://10.2.0.2:2380"},
		}, []string{"https://10.2.0.2:2380"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &spec.Cluster{Hosts: []spec.Host{{Name: "etcd01", Address: "10.0.0.1"}, {Name: "etcd02", Address: "10.0.0.2"}}}
			c.Etcd.ExtraArgs = tc.extra
			c.SetDefaults()
			h := c.Hosts[1]
			got := manifests.PeerURLs(c, h)
			if !slices.Equal(got, tc.want) {
				t.Errorf("PeerURLs = %v, want %v", got, tc.want)
			}
			pod, err := manifests.EtcdPod(c, h, manifests.HostExtraArgs(c, h))
			if err != nil {
				t.Fatal(err)
			}
			b, err := manifests.MarshalPod(pod)
			if err != nil {
				t.Fatal(err)
			}
			m, err := etcdops.ParseManifest(b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.PeerURLs, got) {
				t.Errorf("the manifest advertises %v, PeerURLs says %v", m.PeerURLs, got)
			}
		})
	}
}
