package etcdops_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

func TestParseManifest(t *testing.T) {
	// kubeadm's own output for the guide's etcd02.
	m, err := etcdops.ReadManifest(filepath.Join("..", "testdata", "manifests", "ha-3node", "etcd02", "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "etcd02" || !slices.Equal(m.ClientURLs, []string{"https://10.107.88.16:2379"}) ||
		!slices.Equal(m.PeerURLs, []string{"https://10.107.88.16:2380"}) || m.CertDir != "/etc/kubernetes/pki" {
		t.Errorf("manifest %+v", m)
	}

	// Without the annotation the flag is used; a custom cert dir is found.
	m, err = etcdops.ParseManifest([]byte(`apiVersion: v1
kind: Pod
spec:
  containers:
  - name: sidecar
    command: [sleep]
  - name: etcd
    command:
    - etcd
    - --name=a
    - --advertise-client-urls=https://10.0.0.1:2379, https://[fd00::1]:2379
    - --trusted-ca-file=/srv/pki/etcd/ca.crt
    - --name=b
`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "b" || !slices.Equal(m.ClientURLs, []string{"https://10.0.0.1:2379", "https://[fd00::1]:2379"}) || m.CertDir != "/srv/pki" {
		t.Errorf("manifest %+v", m)
	}

	for doc, want := range map[string]string{
		"kind: Deployment\n":                  `kind "Deployment": want Pod`,
		"kind: Pod\nspec: {containers: []}\n": "no etcd container",
		"kind: Pod\nspec: [\n":                "did not find expected",
	} {
		if _, err := etcdops.ParseManifest([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want one line with %q", doc, err, want)
		}
	}
}

func TestResolveRejects(t *testing.T) {
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(etcdtest.CLIBinary(t)), 2)
	bundle := filepath.Join(dir, "etcd01")
	if err := os.Remove(filepath.Join(dir, "etcd02/etc/kubernetes/pki/apiserver-etcd-client.key")); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	garbage := filepath.Join(empty, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(bundle, "etc/kubernetes/pki/etcd")
	for _, tc := range []struct {
		name string
		opts etcdops.Options
		flag string
		want string
	}{
		{"bad scheme", etcdops.Options{Endpoints: []string{"ftp://127.0.0.1:2379"}}, "endpoints", `--endpoints "ftp://127.0.0.1:2379": scheme "ftp": want https or http`},
		{"no port", etcdops.Options{Endpoints: []string{"https://127.0.0.1"}}, "endpoints", "want https://HOST:PORT"},
		{"bad port", etcdops.Options{Endpoints: []string{"127.0.0.1:99999"}}, "endpoints", `port "99999"`},
		{"path", etcdops.Options{Endpoints: []string{"https://127.0.0.1:2379/v3"}}, "endpoints", "no path"},
		{"empty entry", etcdops.Options{Endpoints: []string{"https://127.0.0.1:2379,"}}, "endpoints", "empty entry"},
		{"identity", etcdops.Options{Bundle: bundle, Identity: "admin"}, "identity", `--identity "admin": want one of healthcheck-client, apiserver-etcd-client`},
		{"cert alone", etcdops.Options{Bundle: bundle, Cert: filepath.Join(pki, "healthcheck-client.crt")}, "cert", "give --key with it"},
		{"key alone", etcdops.Options{Bundle: bundle, Key: filepath.Join(pki, "healthcheck-client.key")}, "key", "give --cert with it"},
		{"negative timeout", etcdops.Options{Bundle: bundle, Timeout: -time.Second}, "timeout", "must not be negative"},
		{"no bundle folder", etcdops.Options{Bundle: filepath.Join(dir, "etcd09")}, "bundle", "no such file or directory"},
		{"bundle is the CA store", etcdops.Options{Bundle: filepath.Join(dir, "pki")}, "bundle", "no etc/kubernetes/manifests/etcd.yaml"},
		{"root without a node", etcdops.Options{Root: empty}, "root", "no etc/kubernetes/manifests/etcd.yaml"},
		{"garbage CA", etcdops.Options{Bundle: bundle, CACert: garbage}, "cacert", "holds no PEM certificate"},
		{"missing CA", etcdops.Options{Endpoints: []string{"https://127.0.0.1:2379"}, CACert: filepath.Join(empty, "ca.crt")}, "cacert", "no such file"},
		{"key of another pair", etcdops.Options{Bundle: bundle, Cert: filepath.Join(pki, "healthcheck-client.crt"), Key: filepath.Join(pki, "server.key")}, "cert", "private key does not match public key"},
		{"https without certificates", etcdops.Options{Endpoints: []string{"https://127.0.0.1:2379"}, Root: empty}, "root", "no such file or directory; give --cacert, --cert and --key"},
		{"identity pair missing", etcdops.Options{Bundle: filepath.Join(dir, "etcd02"), Identity: etcdops.IdentityAPIServer}, "bundle", "apiserver-etcd-client.key: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := etcdops.Resolve(context.Background(), tc.opts)
			var oe *badinput.Error
			if !errors.As(err, &oe) || oe.What != "--"+tc.flag {
				t.Fatalf("got %v, want an error about --%s", err, tc.flag)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "PRIVATE KEY") {
				t.Errorf("got %q, want one line containing %q", msg, tc.want)
			}
		})
	}

	// Explicit endpoints and files need nothing else, and plain http needs
	// no certificates at all.
	tgt, err := etcdops.Resolve(context.Background(), etcdops.Options{
		Endpoints: []string{"https://127.0.0.1:2379,127.0.0.2:2379"}, Root: empty,
		CACert: filepath.Join(pki, "ca.crt"), Cert: filepath.Join(bundle, "etc/kubernetes/pki/apiserver-etcd-client.crt"), Key: filepath.Join(bundle, "etc/kubernetes/pki/apiserver-etcd-client.key"),
	})
	if err != nil || !slices.Equal(tgt.Endpoints, []string{"https://127.0.0.1:2379", "127.0.0.2:2379"}) || tgt.TLSConfig() == nil || tgt.Timeout != etcdops.DefaultTimeout {
		t.Errorf("explicit: %+v, %v", tgt, err)
	}
	tgt, err = etcdops.Resolve(context.Background(), etcdops.Options{Endpoints: []string{"http://127.0.0.1:2379"}, Root: empty})
	if err != nil || tgt.TLSConfig() != nil {
		t.Errorf("plain http: %+v, %v", tgt, err)
	}
}

// cluster starts n members from fresh bundles.
func cluster(t *testing.T, n int) *etcdtest.Cluster {
	t.Helper()
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(etcdtest.CLIBinary(t)), n)
	return etcdtest.Run(t, dir)
}

func resolve(t *testing.T, o etcdops.Options) *etcdops.Target {
	t.Helper()
	tgt, err := etcdops.Resolve(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return tgt
}

func TestSingleMember(t *testing.T) {
	t.Parallel()
	c := cluster(t, 1)
	m := c.Members[0]
	ctx := context.Background()
	// On the node itself: --root at the host folder, no other flag.
	tgt := resolve(t, etcdops.Options{Root: m.Bundle})
	if !slices.Equal(tgt.Endpoints, []string{m.ClientURL}) || len(tgt.Members) != 1 || tgt.MemberListErr != nil {
		t.Fatalf("target %+v", tgt)
	}
	if !strings.HasSuffix(tgt.Files.Cert, "etcd/healthcheck-client.crt") {
		t.Errorf("default identity: %s", tgt.Files.Cert)
	}
	hs := etcdops.Health(ctx, tgt)
	if len(hs) != 1 || !hs[0].Healthy || hs[0].Error != "" || hs[0].Endpoint != m.ClientURL {
		t.Errorf("health %+v", hs)
	}
	ss := etcdops.Status(ctx, tgt)
	if len(ss) != 1 || !ss[0].IsLeader || ss[0].Name != "etcd01" || ss[0].Version != "3.6.8" || ss[0].DBSize == 0 || ss[0].RaftTerm == 0 || ss[0].Error != "" {
		t.Errorf("status %+v", ss)
	}
	ms, err := etcdops.Members(ctx, tgt)
	if err != nil || len(ms) != 1 || ms[0].Name != "etcd01" || !ms[0].Started() || ms[0].IDString() != etcdops.FormatID(ss[0].MemberID) ||
		!slices.Equal(ms[0].ClientURLs, []string{m.ClientURL}) || !slices.Equal(ms[0].PeerURLs, []string{m.PeerURL}) {
		t.Errorf("members %+v, %v", ms, err)
	}

	// kube-apiserver's identity is accepted too.
	tgt = resolve(t, etcdops.Options{Bundle: m.Bundle, Identity: etcdops.IdentityAPIServer})
	if !strings.HasSuffix(tgt.Files.Cert, "pki/apiserver-etcd-client.crt") {
		t.Errorf("apiserver identity: %s", tgt.Files.Cert)
	}
	if hs := etcdops.Health(ctx, tgt); !hs[0].Healthy {
		t.Errorf("health as apiserver-etcd-client: %+v", hs)
	}

	// A client certificate from another CA is refused by the server.
	other := etcdtest.Bundles(t, etcdtest.ExecInit(etcdtest.CLIBinary(t)), 1)
	tgt = resolve(t, etcdops.Options{
		Endpoints: []string{m.ClientURL}, CACert: filepath.Join(m.Bundle, "etc/kubernetes/pki/etcd/ca.crt"),
		Cert: filepath.Join(other, "etcd01/etc/kubernetes/pki/etcd/healthcheck-client.crt"), Key: filepath.Join(other, "etcd01/etc/kubernetes/pki/etcd/healthcheck-client.key"),
		Timeout: 2 * time.Second,
	})
	// The reason is shown, not only the timeout.
	if hs := etcdops.Health(ctx, tgt); hs[0].Healthy || !strings.Contains(hs[0].Error, "TLS: remote error: tls:") {
		t.Errorf("foreign client certificate: %+v", hs)
	}
	// A CA that did not sign the server's certificate.
	tgt = resolve(t, etcdops.Options{
		Endpoints: []string{m.ClientURL}, CACert: filepath.Join(other, "etcd01/etc/kubernetes/pki/etcd/ca.crt"),
		Cert: filepath.Join(m.Bundle, "etc/kubernetes/pki/etcd/healthcheck-client.crt"), Key: filepath.Join(m.Bundle, "etc/kubernetes/pki/etcd/healthcheck-client.key"),
		Timeout: 2 * time.Second,
	})
	if ss := etcdops.Status(ctx, tgt); ss[0].Error == "" || !strings.Contains(ss[0].Error, "certificate signed by unknown authority") {
		t.Errorf("foreign CA: %+v", ss)
	}
}

func TestThreeMembers(t *testing.T) {
	t.Parallel()
	c := cluster(t, 3)
	ctx := context.Background()
	bundle := c.Member("etcd01").Bundle

	// The bundle's manifest names one member; the member list names all.
	tgt := resolve(t, etcdops.Options{Bundle: bundle})
	if !slices.Equal(tgt.Endpoints, c.Endpoints()) || len(tgt.Members) != 3 || len(tgt.Notes) != 0 {
		t.Fatalf("endpoints %v (want %v), notes %v", tgt.Endpoints, c.Endpoints(), tgt.Notes)
	}

	t.Run("health", func(t *testing.T) {
		hs := etcdops.Health(ctx, tgt)
		if len(hs) != 3 {
			t.Fatalf("health %+v", hs)
		}
		for i, h := range hs {
			if !h.Healthy || h.Error != "" || h.Endpoint != c.Members[i].ClientURL {
				t.Errorf("health %+v", h)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		ss := etcdops.Status(ctx, tgt)
		leaders, ids := 0, map[uint64]bool{}
		for _, s := range ss {
			if s.Error != "" {
				t.Errorf("%s: %s", s.Endpoint, s.Error)
			}
			if s.IsLeader {
				leaders++
			}
			ids[s.MemberID] = true
			if s.RaftTerm != ss[0].RaftTerm || s.LeaderID != ss[0].LeaderID || s.IsLearner || s.RaftIndex == 0 || s.RaftAppliedIndex == 0 {
				t.Errorf("status %+v differs from %+v", s, ss[0])
			}
		}
		if leaders != 1 || len(ids) != 3 {
			t.Errorf("%d leaders, %d member IDs", leaders, len(ids))
		}
	})

	t.Run("members", func(t *testing.T) {
		ms, err := etcdops.Members(ctx, tgt)
		if err != nil || len(ms) != 3 {
			t.Fatalf("members %+v, %v", ms, err)
		}
		for i, m := range ms {
			want := c.Members[i]
			if m.Name != want.Name || !m.Started() || m.IsLearner || !slices.Equal(m.ClientURLs, []string{want.ClientURL}) || !slices.Equal(m.PeerURLs, []string{want.PeerURL}) {
				t.Errorf("member %+v, want %s", m, want.Name)
			}
		}
	})

	t.Run("member down", func(t *testing.T) {
		c.Stop(t, "etcd03")
		defer c.Start(t, "etcd03")
		down := c.Member("etcd03").ClientURL
		tgt := resolve(t, etcdops.Options{Bundle: bundle, Timeout: 2 * time.Second})
		if len(tgt.Endpoints) != 3 {
			t.Fatalf("endpoints %v", tgt.Endpoints)
		}
		for _, h := range etcdops.Health(ctx, tgt) {
			if h.Healthy != (h.Endpoint != down) {
				t.Errorf("health %+v", h)
			}
			if h.Endpoint == down && h.Error == "" {
				t.Errorf("no reason given for %s", down)
			}
		}
		for _, s := range etcdops.Status(ctx, tgt) {
			if (s.Error != "") != (s.Endpoint == down) {
				t.Errorf("status %+v", s)
			}
		}
		if ms, err := etcdops.Members(ctx, tgt); err != nil || len(ms) != 3 {
			t.Errorf("members with one down: %+v, %v", ms, err)
		}
	})

	t.Run("own member down", func(t *testing.T) {
		c.Stop(t, "etcd01")
		defer c.Start(t, "etcd01")
		tgt := resolve(t, etcdops.Options{Bundle: bundle, Timeout: 2 * time.Second})
		if !slices.Equal(tgt.Endpoints, c.Endpoints()) || len(tgt.Members) != 3 || tgt.MemberListErr != nil {
			t.Fatalf("fallback: endpoints %v, members %d, %v", tgt.Endpoints, len(tgt.Members), tgt.MemberListErr)
		}
		if len(tgt.Notes) != 1 || !strings.Contains(tgt.Notes[0], "etcd01") || !strings.Contains(tgt.Notes[0], "found the members through etcd02, etcd03") {
			t.Errorf("notes %q", tgt.Notes)
		}
		healthy := 0
		for _, h := range etcdops.Health(ctx, tgt) {
			if h.Healthy {
				healthy++
			}
		}
		if healthy != 2 {
			t.Errorf("%d healthy, want 2", healthy)
		}
	})

	t.Run("no member answers", func(t *testing.T) {
		// A bundle folder whose manifests point at nothing: every host is
		// still checked, and reported.
		for _, name := range []string{"etcd01", "etcd02", "etcd03"} {
			c.Stop(t, name)
		}
		tgt := resolve(t, etcdops.Options{Bundle: bundle, Timeout: time.Second})
		if tgt.MemberListErr == nil || !slices.Equal(tgt.Endpoints, c.Endpoints()) {
			t.Fatalf("endpoints %v, %v", tgt.Endpoints, tgt.MemberListErr)
		}
		for _, h := range etcdops.Health(ctx, tgt) {
			if h.Healthy || !strings.Contains(h.Error, "no answer within 1s") {
				t.Errorf("health %+v", h)
			}
		}
		if _, err := etcdops.Members(ctx, tgt); err == nil {
			t.Error("members with no member up: no error")
		}

		// As the commands run it: one deadline for finding the members
		// and the checks after it. Finding that nobody can be reached
		// ends the search early, and each check still says why.
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		tgt, err := etcdops.Resolve(dctx, etcdops.Options{Bundle: bundle, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if tgt.MemberListErr == nil || !strings.Contains(tgt.MemberListErr.Error(), "connection refused") {
			t.Errorf("member list error %v, want the refusal", tgt.MemberListErr)
		}
		for _, h := range etcdops.Health(dctx, tgt) {
			if h.Healthy || !strings.Contains(h.Error, "no answer within 1s: connect: connection refused") {
				t.Errorf("health under one deadline %+v", h)
			}
		}
		if _, err := etcdops.Members(dctx, tgt); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("members under one deadline: %v, want the refusal", err)
		}
	})
}
