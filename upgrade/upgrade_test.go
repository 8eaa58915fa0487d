package upgrade

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

func TestExpand(t *testing.T) {
	got := Expand("scp -p {manifest} root@{address}:/etc/kubernetes/manifests/etcd.yaml # {name} {other}", map[string]string{
		"name": "etcd02", "address": "10.107.88.16", "manifest": "/tmp/my bundles/etcd02/etc/kubernetes/manifests/it's.yaml",
	})
	want := `scp -p '/tmp/my bundles/etcd02/etc/kubernetes/manifests/it'\''s.yaml' root@10.107.88.16:/etc/kubernetes/manifests/etcd.yaml # etcd02 {other}`
	if got != want {
		t.Errorf("Expand:\n got %s\nwant %s", got, want)
	}
}

// TestExecTargets: the help's --exec example, expanded for IPv4, IPv6 and
// IPv4-mapped hosts, hands scp and ssh the right host. scp runs with a
// stand-in for ssh (-S) that records its arguments; ssh -G only prints the
// configuration it would use. Nothing connects anywhere.
func TestExecTargets(t *testing.T) {
	for _, tool := range []string{"sh", "scp", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "fake-ssh")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > "+record+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "my bundles", "etcd.yaml")
	if err := os.MkdirAll(filepath.Dir(manifest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, address := range []string{"10.107.88.16", "2001:db8::16", "::ffff:10.107.88.16"} {
		vars := execVars(spec.Host{Name: "etcd02", Address: address}, manifest, dir)
		_ = os.Remove(record)
		scp := Expand("scp -S "+fake+" -p {manifest} {scp-target}:/etc/kubernetes/etcd.yaml.new", vars)
		_ = exec.Command("sh", "-c", scp).Run() // the stand-in refuses
		b, err := os.ReadFile(record)
		if err != nil {
			t.Fatalf("%s: scp did not start ssh: %v", scp, err)
		}
		if args := "\n" + string(b); !strings.Contains(args, "\n-l\nroot\n") || !strings.Contains(args, "\n--\n"+address+"\n") {
			t.Errorf("%s: ssh was started with %q", scp, b)
		}
		ssh := Expand("ssh -F /dev/null -G {ssh-target} mv /etc/kubernetes/etcd.yaml.new /etc/kubernetes/manifests/etcd.yaml", vars)
		out, err := exec.Command("sh", "-c", ssh).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", ssh, err, out)
		}
		if cfg := "\n" + string(out); !strings.Contains(cfg, "\nuser root\n") || !strings.Contains(cfg, "\nhostname "+address+"\n") {
			t.Errorf("%s: ssh would connect to:\n%s", ssh, out)
		}
	}
}

// bundles writes init's output for n loopback hosts in-process and
// returns the spec it recorded.
func bundles(t *testing.T, n int) (string, *spec.Cluster) {
	t.Helper()
	hosts, err := spec.ParseHosts(etcdtest.Hosts(n))
	if err != nil {
		t.Fatal(err)
	}
	c := &spec.Cluster{Hosts: hosts, EncryptionAlgorithm: "ECDSA-P256"}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundles")
	ps, err := phases.List().Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := phases.NewRunner(phases.Options{Cluster: c, Out: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ps); err != nil {
		t.Fatal(err)
	}
	return dir, c
}

func withImage(c *spec.Cluster, version string) *spec.Cluster {
	n := *c
	n.Etcd.Version = version
	return &n
}

// TestPreflight checks a real cluster at 3.6.8 before anything is written:
// a downgrade and a skipped minor version are input errors, a host of the
// spec that is no member is refused, and a dry run plans the followers
// before the leader. The host folders are left as they were.
func TestPreflight(t *testing.T) {
	dir, current := bundles(t, 3)
	cluster := etcdtest.Run(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	manifest := func(name string) []byte {
		b, err := os.ReadFile(layout.OnHost(filepath.Join(dir, name), layout.EtcdManifest))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := map[string]string{}
	for _, m := range cluster.Members {
		before[m.Name] = string(manifest(m.Name))
	}
	opts := Options{Current: current, Out: dir, RequestTimeout: 5 * time.Second}

	for version, want := range map[string]string{
		"3.6.7-0": "member etcd01: downgrade from 3.6.8 to 3.6.7 is not supported",
		"3.8.1-0": "skips a minor version",
	} {
		o := opts
		o.Next = withImage(current, version)
		_, err := Run(ctx, o)
		if !badinput.Is(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an input error with %q", version, err, want)
		}
	}

	o := opts
	o.Next = withImage(current, "3.6.16-0")
	o.DryRun = true
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hosts) != 3 || res.Version != "3.6.16" {
		t.Fatalf("dry run: %+v", res)
	}
	for i, h := range res.Hosts {
		if h.State != Planned || h.From != "3.6.8" || h.Leader != (i == 2) {
			t.Errorf("dry run, step %d: %+v (the leader goes last)", i+1, h)
		}
	}

	o.Node = "etcd02"
	if res, err := Run(ctx, o); err != nil || len(res.Hosts) != 1 || res.Hosts[0].Name != "etcd02" {
		t.Errorf("dry run of one node: %+v, %v", res, err)
	}

	// On the node itself: its own files under --root find the cluster.
	o.Root = filepath.Join(dir, "etcd02")
	if res, err := Run(ctx, o); err != nil || len(res.Hosts) != 1 || res.Hosts[0].State != Planned {
		t.Errorf("dry run with --root: %+v, %v", res, err)
	}

	o = opts
	more := *current
	more.Hosts = append(append([]spec.Host(nil), current.Hosts...), spec.Host{Name: "etcd04", Address: etcdtest.Addr(14)})
	o.Current, o.Next = &more, withImage(&more, "3.6.16-0")
	if _, err := Run(ctx, o); err == nil || !strings.Contains(err.Error(), "host etcd04 of the cluster spec is not a member of the cluster") {
		t.Errorf("a spec host that is no member: %v", err)
	}

	for _, m := range cluster.Members {
		if string(manifest(m.Name)) != before[m.Name] {
			t.Errorf("%s's manifest changed", m.Name)
		}
	}
}
