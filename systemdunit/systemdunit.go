// Package systemdunit writes etcd.service, the hardened systemd unit that
// runs an etcd member from its configuration file (package etcdconf)
// without kubelet.
package systemdunit

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/etcdconf"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Limits of the unit.
const (
	// stateRoot is where systemd makes a unit's StateDirectory=.
	stateRoot = layout.StateRoot
	// NoFile is the open file limit: etcd holds a socket per client and
	// peer connection besides its WAL and snapshot files.
	NoFile = 65536
)

// Command is the unit's ExecStart as words.
func Command() []string {
	return []string{layout.EtcdBinary, "--config-file=" + layout.EtcdConfig}
}

// StateDirs returns the folders etcd writes, relative to /var/lib as
// StateDirectory= wants them. ProtectSystem=strict makes every other
// folder read-only, so the data folder (and a separate WAL folder) must be
// one systemd makes and hands to the service's user.
func StateDirs(cfg etcdconf.Config) ([]string, error) {
	var out []string
	dirs := []struct{ flag, dir string }{{"etcd.dataDir", cfg.DataDir}}
	if w, ok := cfg.Extra["wal-dir"].(string); ok && w != "" {
		dirs = append(dirs, struct{ flag, dir string }{"extra argument wal-dir", w})
	}
	for _, d := range dirs {
		rel, ok := strings.CutPrefix(path.Clean(d.dir), stateRoot)
		if !ok || rel == "" || !path.IsAbs(d.dir) {
			return nil, fmt.Errorf("%s %q: with runtime systemd it must lie under %s, where systemd makes the service's state folders (mount a dedicated disk there)", d.flag, d.dir, stateRoot)
		}
		if strings.ContainsAny(rel, " \t\"'\\") {
			return nil, fmt.Errorf("%s %q: with runtime systemd it must not hold blanks, quotes or backslashes (StateDirectory= splits on them)", d.flag, d.dir)
		}
		if !slices.Contains(out, rel) {
			out = append(out, rel)
		}
	}
	return out, nil
}

// Unit returns etcd.service for a member. The hardening gets systemd's
// offline security review (systemd-analyze security) to about 1.2; each
// setting's comment says why etcd tolerates it.
func Unit(c *spec.Cluster, m *etcdconf.Member) ([]byte, error) {
	states, err := StateDirs(m.Config)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Written by etcd-staticpod (runtime systemd): runs etcd member %s from", m.Config.Name)
	w("# %s, the settings the static Pod would give it as flags.", layout.EtcdConfig)
	w("[Unit]")
	w("Description=etcd member %s", escape(m.Config.Name))
	w("Documentation=https://etcd.io/docs/")
	w("Wants=network-online.target")
	w("After=network-online.target")
	w("")
	w("[Service]")
	w("# etcd tells systemd it is ready (sd_notify READY=1) once its member has")
	w("# joined a quorum; the first hosts of a new cluster wait for the others,")
	w("# so starting has no time limit: systemctl enable --now etcd returns")
	w("# once enough members run.")
	w("Type=notify")
	w("TimeoutStartSec=infinity")
	w("ExecStart=%s", strings.Join(mapEscape(Command()), " "))
	w("Restart=on-failure")
	w("RestartSec=5s")
	w("LimitNOFILE=%d", NoFile)
	for _, e := range sortedEnv(c.Etcd.ExtraEnv) {
		w("Environment=%s", quote(e.Name+"="+e.Value))
	}
	w("")
	w("# A user of its own, made at start, owning only the state folders below.")
	w("DynamicUser=yes")
	w("StateDirectory=%s", strings.Join(mapEscape(states), " "))
	w("# etcd warns about a data folder others can read.")
	w("StateDirectoryMode=0700")
	w("WorkingDirectory=%s", escape(stateRoot+states[0]))
	w("UMask=0077")
	w("# The private keys stay root's (0600) on disk; systemd copies them for")
	w("# this service alone into %s.", layout.EtcdCredentialsDir)
	for _, cr := range m.Credentials {
		if strings.ContainsAny(cr.Source, " \t\"'\\") {
			return nil, fmt.Errorf("private key %q: with runtime systemd its path must not hold blanks, quotes or backslashes (LoadCredential= splits on them)", cr.Source)
		}
		w("LoadCredential=%s:%s", cr.Name, escape(cr.Source))
	}
	w("")
	w("# etcd needs no privilege: it listens on ports above 1024 and writes")
	w("# only its state folders.")
	w("CapabilityBoundingSet=")
	w("AmbientCapabilities=")
	w("NoNewPrivileges=yes")
	w("ProtectSystem=strict")
	w("ProtectHome=yes")
	w("PrivateTmp=yes")
	w("PrivateDevices=yes")
	w("PrivateUsers=yes")
	w("PrivateMounts=yes")
	w("DevicePolicy=closed")
	w("ProtectHostname=yes")
	w("ProtectClock=yes")
	w("ProtectKernelTunables=yes")
	w("ProtectKernelModules=yes")
	w("ProtectKernelLogs=yes")
	w("ProtectControlGroups=yes")
	w("# Other users' processes are hidden; /proc/self stays, which the")
	w("# metrics' process collector reads (so ProcSubset=pid is not set:")
	w("# it would hide /proc/stat, which that collector reads too).")
	w("ProtectProc=invisible")
	w("KeyringMode=private")
	w("LockPersonality=yes")
	w("# Go does not write executable memory.")
	w("MemoryDenyWriteExecute=yes")
	w("RemoveIPC=yes")
	w("RestrictNamespaces=yes")
	w("RestrictRealtime=yes")
	w("RestrictSUIDSGID=yes")
	w("# AF_UNIX carries the readiness notification; the network needs IPv4 and")
	w("# IPv6, so PrivateNetwork= and an IP allow list are impossible.")
	w("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6")
	w("SystemCallArchitectures=native")
	w("# What a service needs, without mounting, rebooting, raw I/O and the")
	w("# other privileged calls.")
	w("SystemCallFilter=@system-service")
	w("SystemCallFilter=~@privileged")
	w("SystemCallErrorNumber=EPERM")
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return []byte(b.String()), nil
}

func sortedEnv(env []spec.Arg) []spec.Arg {
	// A later variable of the same name wins, sorted by name, as the
	// static Pod's env.
	byName := map[string]string{}
	for _, e := range env {
		byName[e.Name] = e.Value
	}
	out := make([]spec.Arg, 0, len(byName))
	for n, v := range byName {
		out = append(out, spec.Arg{Name: n, Value: v})
	}
	slices.SortFunc(out, func(a, b spec.Arg) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// escape keeps systemd from expanding specifiers (%) in a value.
func escape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

func mapEscape(ws []string) []string {
	out := make([]string, len(ws))
	for i, s := range ws {
		out[i] = escape(s)
	}
	return out
}

// quote writes one Environment= assignment as a double-quoted word: systemd
// reads C escapes inside quotes, and % starts a specifier everywhere.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%")
	return `"` + r.Replace(s) + `"`
}
