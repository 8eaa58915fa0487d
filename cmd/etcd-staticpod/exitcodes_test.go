package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
)

// assertOneLine checks a refusal: exit 2, nothing on stdout, exactly one
// line on stderr, an error containing want.
func assertOneLine(t *testing.T, args []string, stdout, stderr string, code int, want string) {
	t.Helper()
	if code != exitBadInput || stdout != "" || strings.Count(stderr, "\n") != 1 ||
		!strings.HasPrefix(stderr, "error: ") || !strings.Contains(stderr, want) {
		t.Errorf("%q:\nexit %d, want %d\nstdout %q, want nothing\nstderr %q, want one line containing %q",
			args, code, exitBadInput, stdout, stderr, want)
	}
}

// TestBadInputEveryCommand gives every command the same four kinds of bad
// input, against a running cluster made from our own bundle: an unknown
// host, a bad flag value, a missing (or unwanted) argument and an unknown
// flag. Each is exit 2 with one line on stderr, nothing on stdout, and
// nothing changed on disk.
func TestBadInputEveryCommand(t *testing.T) {
	bin := binary(t)
	dir := etcdtest.Bundles(t, etcdtest.ExecInit(bin), 1)
	etcdtest.Run(t, dir)
	bundle, unknown := filepath.Join(dir, "etcd01"), filepath.Join(dir, "etcd09")
	fresh := filepath.Join(t.TempDir(), "none")
	snap := filepath.Join(t.TempDir(), "etcd.db")

	type kinds struct{ host, value, arg []string }
	type command struct {
		args []string // the command with what makes it otherwise valid
		kinds
		want kinds // what the error line must contain
	}
	generating := func(args ...string) command {
		return command{
			args: append(args, "--out", dir),
			kinds: kinds{
				host:  []string{"--node", "etcd09"},
				value: []string{"--hosts", "etcd01=not-an-ip"},
				arg:   []string{"--out", fresh},
			},
			want: kinds{
				host:  []string{`--node "etcd09": no such host`},
				value: []string{`host "etcd01": address "not-an-ip" is not an IPv4 or IPv6 address`},
				arg:   []string{"at least one host is required"},
			},
		}
	}
	cluster := func(args ...string) command {
		return command{
			args:  args,
			kinds: kinds{host: []string{"--bundle", unknown}, value: []string{"--bundle", bundle, "--timeout", "soon"}, arg: []string{"--bundle", bundle, "etcd01"}},
			want:  kinds{host: []string{`--bundle "` + unknown + `"`}, value: []string{`--timeout "soon"`}, arg: []string{`unexpected argument "etcd01"`}},
		}
	}
	var cmds []command
	cmds = append(cmds, generating("init"))
	phases.List().Walk(func(path string, _ int, p phases.Phase) {
		cmd := append([]string{"init", "phase"}, strings.Split(path, "/")...)
		cmds = append(cmds, generating(cmd...))
		if p.RunAllChildren {
			cmds = append(cmds, generating(append(cmd, "all")...))
		}
	})
	cmds = append(cmds,
		cluster("health"), cluster("status"), cluster("members"),
		cluster("defrag"), cluster("alarm", "list"), cluster("alarm", "disarm"), cluster("compact"),
		command{[]string{"move-leader", "--bundle", bundle},
			kinds{[]string{"etcd09"}, []string{"etcd01", "--timeout", "soon"}, nil},
			kinds{[]string{`member "etcd09": not in the member list`}, []string{`--timeout "soon"`}, []string{"NAME: missing"}}},
		command{[]string{"member", "list"},
			kinds{[]string{"--bundle", unknown}, []string{"--bundle", bundle, "--timeout", "soon"}, []string{"--bundle", bundle, "etcd01"}},
			kinds{[]string{`--bundle "` + unknown + `"`}, []string{`--timeout "soon"`}, []string{`unexpected argument "etcd01"`}}},
		command{[]string{"member", "add", "--out", dir},
			kinds{[]string{"ETCD.4=127.0.0.94"}, []string{"etcd04=127.0.0.94", "--timeout", "soon"}, nil},
			kinds{[]string{`name "ETCD.4" is not a DNS-1123 label`}, []string{`--timeout "soon"`}, []string{"NAME=ADDRESS: missing"}}},
		command{[]string{"member", "promote", "--out", dir},
			kinds{[]string{"etcd09"}, []string{"etcd01", "--timeout", "soon"}, nil},
			kinds{[]string{"member promote etcd09: no such host"}, []string{`--timeout "soon"`}, []string{"NAME: missing"}}},
		command{[]string{"member", "remove", "--out", dir},
			kinds{[]string{"etcd09"}, []string{"etcd01", "--timeout", "soon"}, nil},
			kinds{[]string{"member remove etcd09: no such host"}, []string{`--timeout "soon"`}, []string{"NAME: missing"}}},
		command{[]string{"snapshot", "save"},
			kinds{[]string{snap, "--bundle", unknown}, []string{snap, "--bundle", bundle, "--timeout", "soon"}, []string{"--bundle", bundle}},
			kinds{[]string{`--bundle "` + unknown + `"`}, []string{`--timeout "soon"`}, []string{"FILE: missing"}}},
		command{[]string{"snapshot", "status"},
			kinds{[]string{filepath.Join(dir, "etcd09.db")}, []string{snap, "-o", "xml"}, nil},
			kinds{[]string{`FILE "` + filepath.Join(dir, "etcd09.db") + `": no such file`}, []string{`--output "xml"`}, []string{"FILE: missing"}}},
		command{[]string{"snapshot", "restore", "--out", dir},
			kinds{[]string{snap, "--node", "etcd09"}, []string{snap, "--bump-revision", "x"}, nil},
			kinds{[]string{`--node "etcd09": no such host`}, []string{`--bump-revision "x"`}, []string{"FILE: missing"}}},
		command{[]string{"certs", "check-expiration"},
			kinds{[]string{"--out", unknown}, []string{"--out", dir, "--within", "soon"}, []string{"--out", dir, "etcd01"}},
			kinds{[]string{`--out "` + unknown + `": no such folder`}, []string{`--within "soon"`}, []string{`unexpected argument "etcd01"`}}},
		command{[]string{"certs", "renew", "--out", dir},
			kinds{[]string{"all", "--node", "etcd09"}, []string{"all", "-o", "xml"}, nil},
			kinds{[]string{`--node "etcd09": no such host`}, []string{`--output "xml"`}, []string{"name the certificate to renew"}}},
		command{[]string{"upgrade", "--out", dir},
			kinds{[]string{"--etcd-version", "3.6.16-0", "--node", "etcd09"}, []string{"--etcd-version", "3.6.16-0", "--timeout", "soon"}, nil},
			kinds{[]string{`--node "etcd09": no such host`}, []string{`--timeout "soon"`}, []string{"--etcd-version: give the version"}}},
	)

	before := etcdtest.Tree(t, dir)
	cases := 0
	for _, c := range cmds {
		name := strings.Join(c.args, " ")
		if i := strings.Index(name, " --"); i > 0 {
			name = name[:i]
		}
		t.Run(name, func(t *testing.T) {
			run := func(extra []string, want string) {
				args := append(append([]string{}, c.args...), extra...)
				stdout, stderr, code := etcdtest.Exec(t, bin, args...)
				assertOneLine(t, args, stdout, stderr, code, want)
				cases++
			}
			run(c.host, c.want.host[0])
			run(c.value, c.want.value[0])
			run(c.arg, c.want.arg[0])
			// An unknown flag, and one after the argument where there is one.
			run(append(append([]string{}, c.value[:len(c.value)-2]...), "--no-such-flag"), "flag provided but not defined: -no-such-flag")
		})
	}
	t.Logf("%d commands, %d refusals", len(cmds), cases)
	if diff := etcdtest.DiffTree(before, etcdtest.Tree(t, dir)); len(diff) > 0 {
		t.Errorf("bad input changed the bundle folder: %v", diff)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Errorf("bad input created %s", fresh)
	}
	if _, err := os.Stat("etcd-bundles"); err == nil {
		t.Error("bad input created ./etcd-bundles")
	}
}
