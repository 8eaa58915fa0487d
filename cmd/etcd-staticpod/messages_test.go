package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// TestOneLineMessages runs the built binary on mistakes each of which once
// printed something misleading or many lines: each is now exit 2, one line
// on stderr naming what is wrong, nothing on stdout, nothing written.
func TestOneLineMessages(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "a-file"), "x")
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	gen := []string{"--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"out is a file", append([]string{"init", "--out", file}, gen...), `--out "` + file + `": not a folder`},
		{"out is a file, one phase", append([]string{"init", "phase", "certs", "etcd-server", "--out", file}, gen...), `--out "` + file + `": not a folder`},
		{"out through a file", append([]string{"init", "--out", filepath.Join(file, "bundles")}, gen...), `--out "` + filepath.Join(file, "bundles") + `": ` + file + " is not a folder"},
		{"root is a file", []string{"init", "phase", "kubelet", "--node", "etcd01", "--root", file, "--hosts", threeHosts}, `--root "` + file + `": not a folder`},
		{"renew into a file", []string{"certs", "renew", "--out", file, "--hosts", threeHosts, "all"}, `--out "` + file + `": not a folder`},
		{"unknown command", []string{"bogus"}, `unknown command "bogus": see etcd-staticpod --help`},
		{"unknown member command", []string{"member", "bogus"}, `unknown command "bogus": see etcd-staticpod member --help`},
		{"unknown certs command", []string{"certs", "bogus"}, `unknown command "bogus": see etcd-staticpod certs --help`},
		{"unknown snapshot command", []string{"snapshot", "bogus"}, `unknown command "bogus": see etcd-staticpod snapshot --help`},
		{"unknown phase", []string{"init", "phase", "bogus"}, `unknown command "bogus": see etcd-staticpod init phase --help`},
		{"unknown certs phase", []string{"init", "phase", "certs", "bogus"}, `unexpected argument "bogus"`},
		{"init with an argument", []string{"init", "etcd01"}, `unexpected argument "etcd01": init takes flags only`},
		{"unknown help topic", []string{"help", "bogus"}, "No help topic for 'bogus'"},
		{"unknown global flag", []string{"--bogus"}, "flag provided but not defined: -bogus"},
		{"bad flag value of a bool", append([]string{"init", "--dry-run=maybe", "--out", filepath.Join(dir, "b")}, gen...), `invalid boolean value "maybe" for -dry-run`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := treeHash(t, dir)
			stdout, stderr, code := etcdtest.Exec(t, bin, tc.args...)
			assertOneLine(t, tc.args, stdout, stderr, code, tc.want)
			for _, s := range []string{"USAGE:", "NAME:", "Incorrect Usage"} {
				if strings.Contains(stdout+stderr, s) {
					t.Errorf("%q printed the help", tc.args)
				}
			}
			if treeHash(t, dir) != before {
				t.Errorf("%q changed %s", tc.args, dir)
			}
		})
	}

	// A symlinked --out is refused where it would be written through, and
	// the line says so and names both ends.
	args := append([]string{"init", "--out", link}, gen...)
	stdout, stderr, code := etcdtest.Exec(t, bin, args...)
	if code != 0 {
		assertOneLine(t, args, stdout, stderr, code, link+" is a symlink (to "+real+"), not a folder")
		if entries, _ := os.ReadDir(real); len(entries) != 0 {
			t.Errorf("a refused run wrote through the symlink: %v", entries)
		}
	}
}

// TestRenewFlagsAnywhere: certs renew takes its flags before or after the
// certificate's name, like the member and snapshot commands.
func TestRenewFlagsAnywhere(t *testing.T) {
	bin := binary(t)
	out := initBundle(t)
	for _, args := range [][]string{
		{"certs", "renew", "--out", out, "--node", "etcd02", "-o", "json", "etcd-peer", "--dry-run"},
		{"certs", "renew", "etcd-peer", "--out", out, "--node", "etcd02", "--dry-run", "-o", "json"},
		{"certs", "renew", "--out", out, "-o", "json", "etcd-peer", "--node=etcd02", "--dry-run"},
	} {
		stdout, stderr, code := etcdtest.Exec(t, bin, args...)
		var rows []renewalRow
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 {
			t.Fatalf("%q: exit %d, %v\n%s%s", args, code, err, stdout, stderr)
		}
		if len(rows) != 1 || rows[0].Name != "etcd-peer" || rows[0].Host != "etcd02" || rows[0].NewSerial != "" {
			t.Errorf("%q renewed %+v, want etcd02's etcd-peer as a dry run", args, rows)
		}
	}
	args := []string{"certs", "renew", "--out", out, "etcd-peer", "--no-such-flag"}
	stdout, stderr, code := etcdtest.Exec(t, bin, args...)
	assertOneLine(t, args, stdout, stderr, code, "flag provided but not defined: -no-such-flag")
}
