package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Remote runs the ssh and scp commands the tool prints, or runs through
// --exec, against systemd hosts: an ssh and an scp on PATH that reach a
// host by its address through nsenter into its systemd's namespaces, as a
// root login on it would. There is no sshd in the hosts; what the printed
// line does on a host runs there verbatim.
type Remote struct {
	dir string
}

// sshShim runs `ssh [-options] [user@]ADDRESS WORDS...` as root's shell
// does on that host: the words joined by spaces, as ssh sends them.
const sshShim = `#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;; -*) shift ;; *) break ;; esac; done
addr=${1#*@}; shift
pid=$(cat "$(dirname "$0")/hosts/$addr" 2>/dev/null) || { echo "ssh: connect to host $addr: no such host" >&2; exit 255; }
exec nsenter -t "$pid" -a -r -w -- /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_PAGER=cat sh -c "$*"
`

// scpShim runs `scp [-p] [-r] SOURCE... [user@]ADDRESS:PATH`: a file lands
// at PATH (PATH/NAME when PATH is a folder there or ends with /), written
// through a temp file and a rename, with its mode under -p; a folder
// (-r) lands as PATH/NAME with everything in it, modes kept under -p.
const scpShim = `#!/bin/sh
keep= rec=
while [ $# -gt 0 ]; do case "$1" in -[cFiJloPS]) shift 2 ;; -*) case "$1" in *p*) keep=1 ;; esac; case "$1" in *r*) rec=1 ;; esac; shift ;; *) break ;; esac; done
eval "dest=\${$#}"
n=$(($# - 1))
remote=${dest#*@}
addr=${remote%:*}; path=${remote##*:}
case "$addr" in \[*) addr=${remote%%]*}; addr=${addr#\[}; path=${remote#*]:} ;; esac
pid=$(cat "$(dirname "$0")/hosts/$addr" 2>/dev/null) || { echo "scp: $addr: no such host" >&2; exit 255; }
on() { nsenter -t "$pid" -a -r -w -- /bin/sh -c "$@"; }
i=0
for src in "$@"; do
	i=$((i + 1)); [ $i -gt $n ] && break
	name=$(basename "$src")
	if [ -d "$src" ]; then
		[ -n "$rec" ] || { echo "scp: $src: not a regular file" >&2; exit 1; }
		tar -C "$(dirname "$src")" -cf - "$name" | on 'mkdir -p "$1" && tar -C "$1" -x${2:+p}f - --no-same-owner' scp "${path:-/root}" "$keep" || exit 1
		continue
	fi
	[ -f "$src" ] || { echo "scp: $src: no such file" >&2; exit 1; }
	mode=600; [ -n "$keep" ] && mode=$(stat -c %a "$src")
	on '
		d=${1:-/root}; [ -d "$d" ] && d=${d%/}/$2
		case "$d" in */) d=$d$2 ;; esac
		cat > "$d.scp" && chmod "$3" "$d.scp" && mv "$d.scp" "$d"' scp "$path" "$name" "$mode" < "$src" || exit 1
done
`

// NewRemote writes the ssh and scp commands into a folder of the test.
func NewRemote(t testing.TB) *Remote {
	t.Helper()
	r := &Remote{dir: filepath.Join(t.TempDir(), "remote")}
	if err := os.MkdirAll(filepath.Join(r.dir, "hosts"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"ssh": sshShim, "scp": scpShim} {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// Add makes the host whose namespaces process pid holds (a systemd host's
// PID 1) reachable at address.
func (r *Remote) Add(address string, pid int) error {
	addr := strings.TrimSuffix(strings.TrimPrefix(address, "["), "]")
	return os.WriteFile(filepath.Join(r.dir, "hosts", addr), []byte(strconv.Itoa(pid)), 0o644)
}

// Env is this process's environment with the ssh and scp first on PATH.
func (r *Remote) Env() []string {
	env := []string{"PATH=" + r.dir + string(os.PathListSeparator) + os.Getenv("PATH")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return env
}

// Run runs a printed command line through sh, as the user would paste it.
func (r *Remote) Run(ctx context.Context, line string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Env = r.Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w", line, err)
	}
	return out, nil
}
