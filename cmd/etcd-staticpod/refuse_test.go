package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// refusal is one run of the built binary that must be refused.
type refusal struct {
	name string
	args []string
	code int
	want string // in the one error line
}

// maxRSS bounds a refused run's memory: reading a special or huge input
// used to take gigabytes; the binary itself needs a few tens of megabytes.
const maxRSS = 200 << 20

// checkRefusals runs each case through the built binary, at most 30 s (a
// read that blocks on a pipe fails the case instead of hanging the suite),
// and checks its exit status, its one error line, its memory, and that dir
// is exactly as it was.
func checkRefusals(t *testing.T, dir string, cases []refusal) {
	t.Helper()
	bin := binary(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := treeHash(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("%q: still running after 30 s", tc.args)
			}
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("%q: exit %d, want %d\n%s%s", tc.args, code, tc.code, stdout.String(), stderr.String())
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if !strings.HasPrefix(l, "warning: ") && l != "" {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "error: ") || !strings.Contains(errLines[0], tc.want) {
				t.Errorf("%q: stderr %q, want one error line containing %q", tc.args, stderr.String(), tc.want)
			}
			if strings.Contains(stdout.String()+stderr.String(), "PRIVATE KEY") {
				t.Errorf("%q printed key material", tc.args)
			}
			if rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10; rss > maxRSS {
				t.Errorf("%q: %d MiB resident, want at most %d", tc.args, rss>>20, maxRSS>>20)
			}
			if treeHash(t, dir) != before {
				t.Errorf("%q changed %s", tc.args, dir)
			}
		})
	}
}

// TestSpecialInputFiles: a device, a named pipe or a huge file where the
// tool expects an input file is refused with one line, quickly and in
// little memory, by every kind of command.
func TestSpecialInputFiles(t *testing.T) {
	out := initBundle(t)
	inputs := t.TempDir()
	fifo := filepath.Join(inputs, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := writeFile(t, filepath.Join(inputs, "huge.yaml"), "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\n#"+strings.Repeat("x", 10<<20)+"\n")
	caCert := filepath.Join(out, "pki/etcd/ca.crt")
	checkRefusals(t, out, []refusal{
		{"init spec of 10 MB", []string{"init", "--out", out, "--config", huge}, 2, huge + ": larger than 1 MiB"},
		{"init spec /dev/zero", []string{"init", "--out", out, "--config", "/dev/zero"}, 2, "/dev/zero: not a regular file"},
		{"kubelet patch /dev/urandom", []string{"init", "phase", "kubelet", "--out", out, "--kubelet-config-patch", "/dev/urandom"}, 2, "/dev/urandom: not a regular file"},
		{"kubelet patch pipe", []string{"init", "phase", "kubelet", "--out", out, "--kubelet-config-patch", fifo}, 2, fifo + ": not a regular file"},
		{"init --ca-cert pipe", []string{"init", "phase", "certs", "all", "--out", out, "--ca-cert", fifo, "--ca-key", filepath.Join(out, "pki/etcd/ca.key")}, 2, fifo + ": not a regular file"},
		{"renew spec pipe", []string{"certs", "renew", "all", "--out", out, "--config", fifo}, 2, fifo + ": not a regular file"},
		{"renew --ca-key pipe", []string{"certs", "renew", "all", "--out", out, "--ca-cert", caCert, "--ca-key", fifo}, 2, fifo + ": not a regular file"},
		{"member add spec of 10 MB", []string{"member", "add", "etcd04=10.107.88.18", "--out", out, "--config", huge}, 2, huge + ": larger than 1 MiB"},
		{"health --cacert pipe", []string{"health", "--endpoints", "https://127.0.0.1:1", "--cacert", fifo}, 2, fifo + ": not a regular file"},
		{"snapshot status pipe", []string{"snapshot", "status", fifo}, 2, fifo + ": not a regular file"},
		{"snapshot status /dev/zero", []string{"snapshot", "status", "/dev/zero"}, 2, "/dev/zero: not a regular file"},
		{"snapshot restore pipe", []string{"snapshot", "restore", fifo, "--out", out}, 2, `snapshot file "` + fifo + `": not a regular file`},
		{"snapshot restore /dev/urandom", []string{"snapshot", "restore", "/dev/urandom", "--out", out}, 2, `snapshot file "/dev/urandom": not a regular file`},
		{"snapshot restore spec pipe", []string{"snapshot", "restore", filepath.Join(inputs, "none.db"), "--out", out, "--config", fifo}, 2, fifo + ": not a regular file"},
	})
}
