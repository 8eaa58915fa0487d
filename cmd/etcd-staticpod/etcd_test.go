package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// runCLI executes the CLI in-process as main does and returns stdout,
// stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	app := newApp(time.Now())
	var stdout, stderr bytes.Buffer
	app.Writer, app.ErrWriter = &stdout, &stderr
	err := app.Run(append([]string{"etcd-staticpod"}, args...))
	code := 0
	if err != nil {
		code = exitCode(err)
		fmt.Fprintln(&stderr, "error:", err)
	}
	if strings.Contains(stdout.String()+stderr.String(), "PRIVATE KEY") {
		t.Errorf("%v printed key material", args)
	}
	return stdout.String(), stderr.String(), code
}

// initInProcess makes bundles with our own init command.
func initInProcess(t *testing.T) etcdtest.Initializer {
	return func(args ...string) error {
		stdout, stderr, code := runCLI(t, append([]string{"init"}, args...)...)
		if code != 0 {
			return fmt.Errorf("init exited %d\n%s%s", code, stdout, stderr)
		}
		return nil
	}
}

// lastLine is the error line main prints.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestClusterCommandsRejectBadInput(t *testing.T) {
	dir := etcdtest.Bundles(t, initInProcess(t), 1)
	bundle := filepath.Join(dir, "etcd01")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"argument", []string{"health", "etcd01"}, `unexpected argument "etcd01": health takes flags only`},
		{"output", []string{"health", "--bundle", bundle, "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{"timeout not a duration", []string{"status", "--bundle", bundle, "--timeout", "5"}, `--timeout "5": not a duration such as 5s`},
		{"timeout zero", []string{"members", "--bundle", bundle, "--timeout", "0s"}, `--timeout "0s": must be positive`},
		{"bundle and root", []string{"health", "--bundle", bundle, "--root", "/"}, `--root "/": give --bundle or --root, not both`},
		{"endpoint scheme", []string{"health", "--endpoints", "ftp://127.0.0.1:2379"}, `--endpoints "ftp://127.0.0.1:2379": scheme "ftp"`},
		{"empty endpoint", []string{"health", "--endpoints", "https://127.0.0.1:2379,,https://127.0.0.2:2379", "--bundle", bundle}, `--endpoints "https://127.0.0.1:2379,,https://127.0.0.2:2379": empty entry`},
		{"no bundle folder", []string{"status", "--bundle", filepath.Join(dir, "etcd07")}, `--bundle "` + filepath.Join(dir, "etcd07") + `": stat`},
		{"identity", []string{"members", "--bundle", bundle, "--identity", "admin"}, `--identity "admin": want one of healthcheck-client, apiserver-etcd-client`},
		{"cert without key", []string{"health", "--bundle", bundle, "--cert", filepath.Join(bundle, "etc/kubernetes/pki/apiserver-etcd-client.crt")}, "give --key with it"},
		{"key as CA", []string{"health", "--bundle", bundle, "--cacert", filepath.Join(bundle, "etc/kubernetes/pki/etcd/server.key")}, "holds no PEM certificate"},
		{"root without manifest", []string{"health", "--root", t.TempDir()}, "no etc/kubernetes/manifests/etcd.yaml"},
		{"empty bundle", []string{"health", "--bundle", ""}, `--bundle "": must not be empty`},
		{"unknown flag", []string{"health", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tc.args...)
			if code != exitBadInput {
				t.Errorf("exit %d, want %d", code, exitBadInput)
			}
			if stdout != "" {
				t.Errorf("printed %q", stdout)
			}
			if last := lastLine(stderr); !strings.Contains(last, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tc.want)
			}
		})
	}
}

func TestClusterCommands(t *testing.T) {
	c := etcdtest.Run(t, etcdtest.Bundles(t, initInProcess(t), 3))
	bundle := c.Member("etcd01").Bundle
	endpoints := c.Endpoints()

	t.Run("health table", func(t *testing.T) {
		// Where --timeout never named a wait, a long one is no mistake.
		stdout, stderr, code := runCLI(t, "health", "--bundle", bundle, "--timeout", "90s")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ENDPOINT") {
			t.Fatalf("table:\n%s", stdout)
		}
		for i, l := range lines[1:] {
			if f := strings.Fields(l); f[0] != endpoints[i] || f[1] != "healthy" {
				t.Errorf("row %q", l)
			}
		}
	})

	t.Run("health json", func(t *testing.T) {
		stdout, _, code := runCLI(t, "health", "--bundle", bundle, "-o", "json")
		var rows []map[string]any
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 || len(rows) != 3 {
			t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
		}
		for i, r := range rows {
			keys := make([]string, 0, len(r))
			for k := range r {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, []string{"endpoint", "error", "healthy", "took"}) || r["endpoint"] != endpoints[i] || r["healthy"] != true || r["error"] != "" || r["took"] == "" {
				t.Errorf("row %v", r)
			}
		}
	})

	t.Run("health yaml on the node", func(t *testing.T) {
		// --root at a host folder is what the node itself sees at /.
		stdout, _, code := runCLI(t, "health", "--root", c.Member("etcd03").Bundle, "-o", "yaml", "--identity", "apiserver-etcd-client")
		var rows []healthRow
		if err := yaml.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 || len(rows) != 3 || !rows[2].Healthy {
			t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
		}
	})

	t.Run("status", func(t *testing.T) {
		stdout, _, code := runCLI(t, "status", "--bundle", bundle, "-o", "json")
		var rows []statusRow
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 || len(rows) != 3 {
			t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
		}
		leaders := 0
		for i, r := range rows {
			if r.IsLeader {
				leaders++
				if r.Leader != r.ID {
					t.Errorf("leader %s says its leader is %s", r.ID, r.Leader)
				}
			}
			if r.Name != c.Members[i].Name || r.RaftTerm != rows[0].RaftTerm || r.Leader != rows[0].Leader || r.Version != "3.6.8" || r.DBSize == 0 || r.Error != "" {
				t.Errorf("row %+v", r)
			}
		}
		if leaders != 1 {
			t.Errorf("%d leaders", leaders)
		}
		stdout, _, code = runCLI(t, "status", "--bundle", bundle)
		if code != 0 || !strings.Contains(stdout, "RAFT TERM") || strings.Count(stdout, " true ") < 1 || !strings.Contains(stdout, "etcd02") {
			t.Errorf("table exit %d:\n%s", code, stdout)
		}
	})

	t.Run("members", func(t *testing.T) {
		stdout, _, code := runCLI(t, "members", "--bundle", bundle, "-o", "json")
		var rows []memberRow
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 || len(rows) != 3 {
			t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
		}
		for i, r := range rows {
			m := c.Members[i]
			if r.Name != m.Name || !r.Started || r.IsLearner || len(r.ID) == 0 || !slices.Equal(r.ClientURLs, []string{m.ClientURL}) || !slices.Equal(r.PeerURLs, []string{m.PeerURL}) {
				t.Errorf("row %+v, want %s", r, m.Name)
			}
		}
		stdout, _, code = runCLI(t, "members", "--bundle", bundle)
		if code != 0 || strings.Count(stdout, "started") != 3 {
			t.Errorf("table exit %d:\n%s", code, stdout)
		}
	})

	t.Run("given endpoints and files", func(t *testing.T) {
		pki := filepath.Join(bundle, "etc/kubernetes/pki")
		stdout, stderr, code := runCLI(t, "health", "--endpoints", endpoints[1], "--cacert", filepath.Join(pki, "etcd/ca.crt"),
			"--cert", filepath.Join(pki, "apiserver-etcd-client.crt"), "--key", filepath.Join(pki, "apiserver-etcd-client.key"), "--root", t.TempDir())
		if code != 0 || strings.Count(stdout, "healthy") != 1 {
			t.Errorf("exit %d:\n%s%s", code, stdout, stderr)
		}
	})

	t.Run("member down", func(t *testing.T) {
		c.Stop(t, "etcd02")
		defer c.Start(t, "etcd02")
		down := c.Member("etcd02").ClientURL
		stdout, stderr, code := runCLI(t, "health", "--bundle", bundle, "--timeout", "2s")
		if code != exitFailure {
			t.Errorf("exit %d, want %d", code, exitFailure)
		}
		if want := "error: unhealthy: " + down + " (1 of 3 endpoints)"; lastLine(stderr) != want {
			t.Errorf("stderr %q, want %q", stderr, want)
		}
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
			f := strings.Fields(l)
			if (f[1] == "healthy") == (f[0] == down) {
				t.Errorf("row %q", l)
			}
		}
		stdout, _, code = runCLI(t, "health", "--bundle", bundle, "--timeout", "2s", "-o", "json")
		var rows []healthRow
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != exitFailure || len(rows) != 3 {
			t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
		}
		for _, r := range rows {
			if r.Healthy == (r.Endpoint == down) || (r.Error == "") != r.Healthy {
				t.Errorf("row %+v", r)
			}
		}
		_, stderr, code = runCLI(t, "status", "--bundle", bundle, "--timeout", "2s")
		if code != exitFailure || !strings.Contains(lastLine(stderr), "no status from "+down) {
			t.Errorf("status: exit %d, %s", code, stderr)
		}
		if _, stderr, code := runCLI(t, "members", "--bundle", bundle, "--timeout", "2s"); code != 0 {
			t.Errorf("members with a quorum: exit %d, %s", code, stderr)
		}
	})

	t.Run("bundle's own member down", func(t *testing.T) {
		c.Stop(t, "etcd01")
		defer c.Start(t, "etcd01")
		stdout, stderr, code := runCLI(t, "health", "--bundle", bundle, "--timeout", "2s", "-o", "json")
		var rows []healthRow
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != exitFailure || len(rows) != 3 {
			t.Fatalf("exit %d, %v:\n%s%s", code, err, stdout, stderr)
		}
		if healthy := rows[1].Healthy && rows[2].Healthy && !rows[0].Healthy; !healthy {
			t.Errorf("rows %+v", rows)
		}
		if !strings.HasPrefix(stderr, "note: etcd01 ("+endpoints[0]+") gave no member list") || !strings.Contains(stderr, "found the members through etcd02, etcd03") {
			t.Errorf("stderr %q", stderr)
		}
	})
}

func TestPrinters(t *testing.T) {
	if got := humanBytes(999); got != "999 B" {
		t.Error(got)
	}
	if got := humanBytes(20480); got != "20 kB" {
		t.Error(got)
	}
	if got := humanBytes(2_100_000); got != "2.1 MB" {
		t.Error(got)
	}
	// Empty results are empty lists, never null.
	var buf bytes.Buffer
	p := newPrinter("json", &buf)
	if err := p.Members(nil); err != nil || strings.TrimSpace(buf.String()) != "[]" {
		t.Errorf("%q %v", buf.String(), err)
	}
	buf.Reset()
	if err := p.Status([]etcdops.EndpointStatus{{Endpoint: "https://127.0.0.1:1", Error: "refused"}}); err != nil || !strings.Contains(buf.String(), `"errors": []`) {
		t.Errorf("%q %v", buf.String(), err)
	}
	if err := badArgs(errors.New("x")); exitCode(err) != 2 {
		t.Errorf("exit code %d", exitCode(err))
	}
}
