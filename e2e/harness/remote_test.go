package harness

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRemoteRunsPrintedLines runs ssh and scp lines against a process in a
// mount namespace of its own with a tmpfs: what they write lands there,
// not here, with the modes scp -p keeps, for IPv4 and bracketed IPv6
// targets alike.
func TestRemoteRunsPrintedLines(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	dir := filepath.Join(t.TempDir(), "host")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", `mount -t tmpfs remote-test "$0" && echo ready && exec sleep 300`, dir)
	stdout, err := target.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = target.Process.Kill(); _ = target.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("target: %q %v", line, err)
	}
	r := NewRemote(t)
	for _, addr := range []string{"192.0.2.10", "[2001:db8::10]"} {
		if err := r.Add(addr, target.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("file\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "tree", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "tree", "sub", "x"), []byte("in a folder\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(line string) string {
		t.Helper()
		out, err := r.Run(ctx, line)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	run("scp -p " + src + "/f root@192.0.2.10:" + dir + "/ && scp -rp " + src + "/tree 'root@[2001:db8::10]:" + dir + "/'")
	got := run("ssh -o BatchMode=yes root@2001:db8::10 stat -c %a " + dir + "/f " + dir + "/tree/sub '&&' cat " + dir + "/f " + dir + "/tree/sub/x")
	if want := "640\n700\nfile\nin a folder\n"; got != want {
		t.Errorf("on the host: %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); !os.IsNotExist(err) {
		t.Errorf("the copy landed in this mount namespace: %v", err)
	}
	if out, err := r.Run(ctx, "ssh root@192.0.2.99 true"); err == nil || !strings.Contains(string(out), "no such host") {
		t.Errorf("ssh to an unknown address: %v %s", err, out)
	}
}
