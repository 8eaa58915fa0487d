package shellcmd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// words are strings a path, a URL or a value may hold, each with something
// a shell treats specially.
var words = []string{
	"", " ", "plain", "/var/lib/etcd", "a b", "it's", `"double"`, `back\slash`,
	"$HOME", "${x}", "`id`", "$(id)", "a;b", "a&&b", "a|b", "a>b", "<a", "*", "?", "[ab]",
	"~", "~root", "#comment", "!", "-n", "--flag=x", "a\nb", "a\tb", "\r", "'", "''",
	"{a,b}", "x=y", "100%", "unix:///run/containerd/containerd.sock", "root@[2001:db8::1]:/tmp/",
	"ünïcödé", "\x01",
}

// TestQuoteRoundTrips: sh -c reads every quoted word back as exactly the
// word, alone or among others.
func TestQuoteRoundTrips(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	// printf prints each argument NUL-terminated: what the shell made of it.
	script := "printf '%s\\0' " + Join(words...)
	out, err := exec.Command(sh, "-c", script).Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(words) {
		t.Fatalf("the shell read %d words, want %d: %q", len(got), len(words), got)
	}
	for i, w := range words {
		if got[i] != w {
			t.Errorf("Quote(%q) = %s, read back as %q", w, Quote(w), got[i])
		}
	}
}

func TestQuoteLeavesSafeWordsBare(t *testing.T) {
	for _, w := range []string{"/etc/kubernetes/manifests/etcd.yaml", "etcd-bundles/etcd02.tar.gz", "root@10.0.0.1", "a=b,c:d", "100%"} {
		if Quote(w) != w {
			t.Errorf("Quote(%q) = %q, want it bare", w, Quote(w))
		}
	}
	for w, want := range map[string]string{"": "''", "a b": "'a b'", "it's": `'it'\''s'`, "~": "'~'", "[x]": "'[x]'"} {
		if Quote(w) != want {
			t.Errorf("Quote(%q) = %q, want %q", w, Quote(w), want)
		}
	}
}

func FuzzQuote(f *testing.F) {
	for _, w := range words {
		f.Add(w)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		f.Skip("no sh")
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			return // no argument can hold a NUL
		}
		out, err := exec.Command(sh, "-c", "printf '%s' "+Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("Quote(%q) = %s, read back as %q (%v)", s, Quote(s), out, err)
		}
	})
}

var targets = []struct {
	address, ssh, scp, host string
}{
	{"10.107.88.15", "root@10.107.88.15", "root@10.107.88.15:/tmp/", "10.107.88.15"},
	{"2001:db8::1", "root@2001:db8::1", "root@[2001:db8::1]:/tmp/", "2001:db8::1"},
	{"::ffff:10.0.0.1", "root@::ffff:10.0.0.1", "root@[::ffff:10.0.0.1]:/tmp/", "::ffff:10.0.0.1"},
	{"[fd00::5]", "root@fd00::5", "root@[fd00::5]:/tmp/", "fd00::5"},
	{"CONTROL-PLANE", "root@CONTROL-PLANE", "root@CONTROL-PLANE:/tmp/", "CONTROL-PLANE"},
}

func TestTargets(t *testing.T) {
	for _, tc := range targets {
		if got := SSHTarget("root", tc.address); got != tc.ssh {
			t.Errorf("SSHTarget(%q) = %q, want %q", tc.address, got, tc.ssh)
		}
		if got := SCPTarget("root", tc.address, "/tmp/"); got != tc.scp {
			t.Errorf("SCPTarget(%q) = %q, want %q", tc.address, got, tc.scp)
		}
	}
	if got := SCPTarget("root", "2001:db8::1", ""); got != "root@[2001:db8::1]:" {
		t.Errorf("SCPTarget to the home folder = %q", got)
	}
}

// TestSSHReadsTarget: ssh's own parser (ssh -G prints the configuration it
// would use and connects nowhere) finds the user and the host in each
// target, after the shell has read the printed word.
func TestSSHReadsTarget(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh")
	}
	for _, tc := range targets {
		out, err := exec.Command("sh", "-c", "ssh -F /dev/null -G "+Quote(SSHTarget("root", tc.address))).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh -G: %v\n%s", err, out)
		}
		cfg := "\n" + string(out)
		if !strings.Contains(cfg, "\nuser root\n") || !strings.Contains(strings.ToLower(cfg), "\nhostname "+strings.ToLower(tc.host)+"\n") {
			t.Errorf("ssh read %q as:\n%s", SSHTarget("root", tc.address), out)
		}
	}
}

// TestSCPReadsTarget: scp, given a stand-in for ssh (-S) that records its
// arguments and fails, hands ssh the user and the whole address; no
// connection is made.
func TestSCPReadsTarget(t *testing.T) {
	if _, err := exec.LookPath("scp"); err != nil {
		t.Skip("no scp")
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "fake-ssh")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > "+Quote(record)+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "etcd 02.tar.gz")
	if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range targets {
		_ = os.Remove(record)
		cmd := "scp -S " + Quote(fake) + " " + Join(src, SCPTarget("root", tc.address, "/tmp/"))
		_ = exec.Command("sh", "-c", cmd).Run() // fails: the stand-in refuses
		b, err := os.ReadFile(record)
		if err != nil {
			t.Fatalf("%s: scp did not start ssh: %v", cmd, err)
		}
		args := strings.Split(strings.TrimSpace(string(b)), "\n")
		var user, host string
		for i, a := range args {
			switch {
			case a == "-l" && i+1 < len(args):
				user = args[i+1]
			case a == "--" && i+1 < len(args):
				host = args[i+1]
			}
		}
		if user != "root" || host != tc.host {
			t.Errorf("%s: ssh got user %q host %q, want root and %q (args %q)", cmd, user, host, tc.host, args)
		}
	}
}

// TestJoinIsOneCommand: a joined command line runs as the words given.
func TestJoinIsOneCommand(t *testing.T) {
	var out bytes.Buffer
	cmd := exec.Command("sh", "-c", Join("printf", "%s|", "a b", "$x", "it's"))
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a b|$x|it's|" {
		t.Errorf("got %q", out.String())
	}
}
