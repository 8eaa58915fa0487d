package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// loopbackHosts are the hosts of the bundles the day-2 commands are refused
// on: should a check ever let a command through, it reaches only loopback.
const loopbackHosts = "etcd01=127.0.0.251,etcd02=127.0.0.252,etcd03=127.0.0.253"

// badValue is one refused input, given as flags, as a --config document,
// or both: each must exit 2 with one error line naming the field and the
// value, and change nothing on disk.
type badValue struct {
	class string // control characters, names and images, paths, numbers
	name  string
	// flags for init; --hosts etcd01=10.0.0.1 is added when they give none.
	flags    []string
	wantFlag string
	// doc is the body of a cluster document after apiVersion and kind;
	// hosts: [etcd01] is added when it gives none.
	doc       string
	wantConfg string
}

// badValues covers every field group of the spec and every flag that
// reaches a file, a file name or a printed command.
func badValues() []badValue {
	cc := "control characters"
	ni := "names and images"
	pa := "paths"
	nu := "numbers"
	both := func(class, name, flag, value, field, yamlField, want string) badValue {
		b := badValue{class: class, name: name, flags: []string{"--" + flag, value}, wantFlag: fmt.Sprintf("--%s %q: %s", flag, value, want)}
		if yamlField != "" {
			b.doc, b.wantConfg = yamlField+"\n", fmt.Sprintf("%s %q: %s", field, value, want)
		}
		return b
	}
	ctl := func(name, flag, value, field, yamlField string) badValue {
		r := []rune(value)
		var bad rune
		for _, c := range r {
			if c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029 || c == 0x202e {
				bad = c
			}
		}
		return both(cc, name, flag, value, field, yamlField, fmt.Sprintf("contains the control character %U", bad))
	}
	// A flag's value lands in the spec field, which the error names.
	dataDir := func(name, value, want string) badValue {
		b := both(pa, name, "data-dir", value, "etcd.dataDir", "etcd: {dataDir: "+yq(value)+"}", want)
		b.wantFlag = b.wantConfg
		return b
	}
	reserved := func(name string) badValue {
		return badValue{
			class: pa, name: "reserved host name " + name,
			flags: []string{"--hosts", name + "=10.0.0.1"}, wantFlag: fmt.Sprintf("host %q: name %q is reserved", name, name),
			doc: "hosts: [{name: " + name + ", address: 10.0.0.1}]\n", wantConfg: fmt.Sprintf("host %q: name %q is reserved", name, name),
		}
	}
	return []badValue{
		// Control characters, in every field group.
		ctl("CR in kubelet path", "kubelet-path", "/usr/bin/kubelet\rExecStartPre=/bin/touch /tmp/pwned", "kubelet.path", `kubelet: {path: "/usr/bin/kubelet\rExecStartPre=/bin/touch /tmp/pwned"}`),
		ctl("LF in host name", "hosts", "etc\nd01=10.0.0.1", "hosts[0].name", ""),
		{class: cc, name: "LF in host name (config)", doc: `hosts: [{name: "etc\nd01", address: 10.0.0.1}]` + "\n", wantConfg: `hosts[0].name "etc\nd01": contains the control character U+000A`},
		{class: cc, name: "TAB in address (config)", doc: `hosts: [{name: etcd01, address: "10.0.\t0.1"}]` + "\n", wantConfg: `hosts[0].address "10.0.\t0.1": contains the control character U+0009`},
		ctl("TAB in address", "host", "etcd01=10.0.\t0.1", "", ""),
		{class: cc, name: "CR in server SAN", doc: `hosts: [{name: etcd01, address: 10.0.0.1, serverCertSANs: ["a.example\rb"]}]` + "\n", wantConfg: `hosts[0].serverCertSANs "a.example\rb": contains the control character U+000D`},
		{class: cc, name: "C1 in peer SAN", doc: `hosts: [{name: etcd01, address: 10.0.0.1, peerCertSANs: ["a.example\u0085"]}]` + "\n", wantConfg: `hosts[0].peerCertSANs "a.example\u0085": contains the control character U+0085`},
		ctl("DEL in apiserver SAN", "apiserver-cert-sans", "k8s.example\x7f", "controlPlane.apiServerCertSANs", `controlPlane: {apiServerCertSANs: ["k8s.example\x7f"]}`),
		ctl("LF in cert dir", "cert-dir", "/etc/kubernetes/pki\n", "certDir", `certDir: "/etc/kubernetes/pki\n"`),
		ctl("CR in data dir", "data-dir", "/var/lib/etcd\r", "etcd.dataDir", `etcd: {dataDir: "/var/lib/etcd\r"}`),
		ctl("ESC in control-plane cert dir", "control-plane-cert-dir", "/etc/kubernetes/\x1bpki", "controlPlane.certDir", `controlPlane: {certDir: "/etc/kubernetes/\x1bpki"}`),
		ctl("LF in runtime endpoint", "container-runtime-endpoint", "unix:///run/containerd/containerd.sock\nx", "kubelet.containerRuntimeEndpoint", `kubelet: {containerRuntimeEndpoint: "unix:///run/containerd/containerd.sock\nx"}`),
		ctl("LF in cgroup driver", "cgroup-driver", "systemd\n", "kubelet.cgroupDriver", `kubelet: {cgroupDriver: "systemd\n"}`),
		ctl("LF in kubelet config patch", "kubelet-config-patch", "/tmp/patch\n.yaml", "kubelet.configPatch", `kubelet: {configPatch: "/tmp/patch\n.yaml"}`),
		ctl("CR in image repository", "image-repository", "registry.k8s.io\r", "etcd.imageRepository", `etcd: {imageRepository: "registry.k8s.io\r"}`),
		ctl("LF in etcd version", "etcd-version", "3.6.8-0\nx", "etcd.version", `etcd: {version: "3.6.8-0\nx"}`),
		ctl("TAB in image", "image", "registry.k8s.io/etcd:3.6.8-0\t", "etcd.image", `etcd: {image: "registry.k8s.io/etcd:3.6.8-0\t"}`),
		ctl("CR in initial cluster state", "initial-cluster-state", "new\r", "etcd.initialClusterState", `etcd: {initialClusterState: "new\r"}`),
		ctl("LF in extra arg value", "extra-arg", "log-level=debug\n- --x=y", "", ""),
		{class: cc, name: "LF in extra arg value (config)", doc: `etcd: {extraArgs: [{name: log-level, value: "debug\n- --x=y"}]}` + "\n", wantConfg: `etcd.extraArgs[0].value "debug\n- --x=y": contains the control character U+000A`},
		// urfave/cli trims blanks (\r too) around a repeated flag's values, so
		// the character sits inside.
		ctl("CR in extra env value", "extra-env", "GOMAXPROCS=2\r3", "", ""),
		{class: cc, name: "CR in extra env value (config)", doc: `etcd: {extraEnv: [{name: GOMAXPROCS, value: "2\r"}]}` + "\n", wantConfg: `etcd.extraEnv[0].value "2\r": contains the control character U+000D`},
		{class: cc, name: "invalid UTF-8 in extra env value", flags: []string{"--extra-env", "A=\xff"}, wantFlag: `--extra-env "A=\xff": is not valid UTF-8`},
		ctl("C1 in kubernetes version", "kubernetes-version", "v1.36.3\u0085", "controlPlane.kubernetesVersion", `controlPlane: {kubernetesVersion: "v1.36.3\u0085"}`),
		ctl("LF in control-plane endpoint", "control-plane-endpoint", "10.0.0.9:6443\nx", "controlPlane.controlPlaneEndpoint", `controlPlane: {controlPlaneEndpoint: "10.0.0.9:6443\nx"}`),
		ctl("CR in pod subnet", "pod-subnet", "10.244.0.0/16\r", "controlPlane.podSubnet", `controlPlane: {podSubnet: "10.244.0.0/16\r"}`),
		ctl("line separator in service subnet", "service-subnet", "10.96.0.0/12\u2028", "controlPlane.serviceSubnet", `controlPlane: {serviceSubnet: "10.96.0.0/12\u2028"}`),
		ctl("bidi override in cert dir", "cert-dir", "/etc/\u202epki", "certDir", `certDir: "/etc/\u202epki"`),
		ctl("LF in encryption algorithm", "encryption-algorithm", "ECDSA-P256\n", "encryptionAlgorithm", `encryptionAlgorithm: "ECDSA-P256\n"`),
		ctl("CR in backup schedule", "backup-schedule", "daily\rExecStartPre=/bin/sh", "backup.schedule", `backup: {host: etcd01, schedule: "daily\rExecStartPre=/bin/sh"}`),
		ctl("LF in backup dir", "backup-dir", "/var/backups/etcd\nx", "backup.dir", `backup: {host: etcd01, dir: "/var/backups/etcd\nx"}`),
		ctl("CR in backup host", "backup-host", "etcd01\r", "backup.host", `backup: {host: "etcd01\r"}`),
		ctl("LF in out", "out", "bundles\nx", "", ""),
		ctl("CR in node", "node", "etcd01\r", "", ""),
		ctl("LF in config path", "config", "cluster\n.yaml", "", ""),
		ctl("CR in CA cert path", "ca-cert", "ca.crt\r", "", ""),

		// Names and image references.
		{class: ni, name: "env name with a blank", flags: []string{"--extra-env", "GO MAXPROCS=2"}, wantFlag: `etcd.extraEnv name "GO MAXPROCS": want an environment variable name`},
		{class: ni, name: "env name with a blank (config)", doc: "etcd: {extraEnv: [{name: GO MAXPROCS, value: '2'}]}\n", wantConfg: `etcd.extraEnv name "GO MAXPROCS": want an environment variable name`},
		{class: ni, name: "env name starting with a digit", doc: "etcd: {extraEnv: [{name: 1GOMAXPROCS, value: '2'}]}\n", wantConfg: `etcd.extraEnv name "1GOMAXPROCS": want an environment variable name`},
		{class: ni, name: "extra arg name upper case", flags: []string{"--extra-arg", "Log-Level=debug"}, wantFlag: `etcd.extraArgs name "Log-Level": want an etcd flag name`,
			doc: "etcd: {extraArgs: [{name: Log-Level, value: debug}]}\n", wantConfg: `etcd.extraArgs name "Log-Level": want an etcd flag name`},
		{class: ni, name: "extra arg name with underscore", doc: "etcd: {extraArgs: [{name: log_level, value: debug}]}\n", wantConfg: `etcd.extraArgs name "log_level": want an etcd flag name`},
		{class: ni, name: "etcd version with a blank", flags: []string{"--etcd-version", "3.6 8"}, wantFlag: `etcd.version "3.6 8": is not an image tag`,
			doc: "etcd: {version: 3.6 8}\n", wantConfg: `etcd.version "3.6 8": is not an image tag`},
		{class: ni, name: "etcd version with a leading dash", flags: []string{"--etcd-version=-3.6.8"}, wantFlag: `etcd.version "-3.6.8": is not an image tag`,
			doc: "etcd: {version: -3.6.8}\n", wantConfg: `etcd.version "-3.6.8": is not an image tag`},
		{class: ni, name: "image with a blank", flags: []string{"--image", "registry.k8s.io/etcd:3.6 8"}, wantFlag: `etcd.image "registry.k8s.io/etcd:3.6 8": is not an image reference`,
			doc: "etcd: {image: 'registry.k8s.io/etcd:3.6 8'}\n", wantConfg: `etcd.image "registry.k8s.io/etcd:3.6 8": is not an image reference`},
		{class: ni, name: "repository with upper case path", flags: []string{"--image-repository", "registry.k8s.io/Mirror"}, wantFlag: `etcd.imageRepository "registry.k8s.io/Mirror": is not an image repository`,
			doc: "etcd: {imageRepository: registry.k8s.io/Mirror}\n", wantConfg: `etcd.imageRepository "registry.k8s.io/Mirror": is not an image repository`},
		{class: ni, name: "kubernetes version with a command", flags: []string{"--kubernetes-version", "v1.36.3;reboot"}, wantFlag: `controlPlane.kubernetesVersion "v1.36.3;reboot": want a version`,
			doc: "controlPlane: {kubernetesVersion: v1.36.3;reboot}\n", wantConfg: `controlPlane.kubernetesVersion "v1.36.3;reboot": want a version`},

		// Paths.
		{class: pa, name: "empty out", flags: []string{"--out", ""}, wantFlag: `--out "": must not be empty`},
		{class: pa, name: "blank out", flags: []string{"--out", " "}, wantFlag: `--out " ": must not be empty`},
		{class: pa, name: "empty kubelet config patch", flags: []string{"--kubelet-config-patch", ""}, wantFlag: `--kubelet-config-patch "": must not be empty`},
		dataDir("data dir /", "/", "must not be the root folder"),
		dataDir("data dir /etc", "/etc", "is the system's configuration"),
		dataDir("data dir /etc/kubernetes", "/etc/kubernetes", "is kubeadm's folder"),
		dataDir("data dir in the manifest folder", "/etc/kubernetes/manifests/etcd", "lies inside /etc/kubernetes/manifests, kubelet's static Pod folder"),
		dataDir("data dir is the cert dir", "/etc/kubernetes/pki", "is the certificate folder (certDir)"),
		dataDir("data dir in the kubelet folder", "/var/lib/kubelet/etcd", "lies inside /var/lib/kubelet, kubelet's state folder"),
		dataDir("data dir holds the kubelet folder", "/var/lib", "holds /var/lib/kubelet, kubelet's state folder"),
		dataDir("data dir in the drop-in folder", "/etc/systemd/system/kubelet.service.d/etcd", "lies inside /etc/systemd/system/kubelet.service.d"),
		dataDir("data dir relative", "var/lib/etcd", "must be an absolute path"),
		dataDir("data dir with ..", "/var/lib/etcd/../../etc", "want a clean absolute path"),
		{class: pa, name: "data dir holds the cert dir", flags: []string{"--cert-dir", "/srv/etcd/pki", "--data-dir", "/srv/etcd"}, wantFlag: `etcd.dataDir "/srv/etcd": holds /srv/etcd/pki, the certificate folder`,
			doc: "certDir: /srv/etcd/pki\netcd: {dataDir: /srv/etcd}\n", wantConfg: `etcd.dataDir "/srv/etcd": holds /srv/etcd/pki, the certificate folder`},
		reserved("pki"),
		reserved("control-plane"),
		reserved("monitoring"),
		reserved("statefulset"),
		reserved("sha256sums"),

		// Numbers.
		{class: nu, name: "nanosecond validity", flags: []string{"--certificate-validity", "1ns"}, wantFlag: `--certificate-validity "1ns": must be at least 1h0m0s`,
			doc: "certificateValidity: 1ns\n", wantConfg: `certificateValidity "1ns": must be at least 1h0m0s`},
		{class: nu, name: "zero validity in the spec", doc: "certificateValidity: 0s\n", wantConfg: `certificateValidity "0s": must be positive`},
		{class: nu, name: "negative validity in the spec", doc: "certificateValidity: -8760h\n", wantConfg: `certificateValidity "-8760h": must be positive`},
		{class: nu, name: "CA validity under an hour", flags: []string{"--ca-certificate-validity", "59m"}, wantFlag: `--ca-certificate-validity "59m": must be at least 1h0m0s`,
			doc: "caCertificateValidity: 59m\n", wantConfg: `caCertificateValidity "59m": must be at least 1h0m0s`},
		{class: nu, name: "validity past a duration's range", flags: []string{"--certificate-validity", "2562048h"}, wantFlag: `--certificate-validity "2562048h": not a duration`,
			doc: "certificateValidity: 2562048h\n", wantConfg: `certificateValidity "2562048h": not a duration`},
		{class: nu, name: "control-plane port too big", flags: []string{"--control-plane-endpoint", "10.0.0.9:65536"}, wantFlag: `controlPlane.controlPlaneEndpoint "10.0.0.9:65536": port "65536" is not a number from 1 to 65535`,
			doc: "controlPlane: {controlPlaneEndpoint: '10.0.0.9:65536'}\n", wantConfg: `controlPlane.controlPlaneEndpoint "10.0.0.9:65536": port "65536"`},
		{class: nu, name: "backup keep zero", flags: []string{"--backup-host", "etcd01", "--backup-keep", "0"}, wantFlag: `--backup-keep "0": must be at least 1`,
			doc: "backup: {host: etcd01, keep: -1}\n", wantConfg: `backup.keep -1: must be at least 1`},
		{class: nu, name: "backup keep past an int", flags: []string{"--backup-host", "etcd01", "--backup-keep", "9223372036854775808"}, wantFlag: `--backup-keep "9223372036854775808": not a whole number`},
		{class: nu, name: "control-plane port zero", flags: []string{"--control-plane-endpoint", "k8s.example:0"}, wantFlag: `controlPlane.controlPlaneEndpoint "k8s.example:0": port "0"`},
	}
}

// yq quotes a YAML scalar.
func yq(s string) string { return fmt.Sprintf("%q", s) }

// oneErrorLine checks stderr holds exactly one error line containing want
// (warnings aside) and no key material.
func oneErrorLine(t *testing.T, args []string, stdout, stderr string, code int, want string) {
	t.Helper()
	if code != 2 {
		t.Errorf("%q: exit %d, want 2\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(l, "warning: ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "error: ") || !strings.Contains(errLines[0], want) {
		t.Errorf("%q: stderr %q, want one error line containing %q", args, stderr, want)
	}
	if strings.Contains(stderr+stdout, "PRIVATE KEY") {
		t.Errorf("%q: key material printed", args)
	}
}

// TestRejectsBadValues is the bad-input suite's part for values: control
// characters, names and image references, paths and numbers, each from
// flags and from --config, into an output folder that exists and one that
// does not; nothing may change on disk.
func TestRejectsBadValues(t *testing.T) {
	bin := binary(t)
	var existing, before string
	// An output folder with content; made again only after a case changed it.
	setup := func(tb *testing.T) {
		existing = t.TempDir()
		if o, e, code := etcdtest.Exec(tb, bin, "init", "--hosts", "x=10.9.9.9", "--out", existing, "--encryption-algorithm", "ECDSA-P256"); code != 0 {
			tb.Fatalf("setup: %s %s", o, e)
		}
		before = treeHash(tb, existing)
	}
	setup(t)
	counts := map[string]int{}
	for _, tc := range badValues() {
		t.Run(tc.name, func(t *testing.T) {
			var runs []struct {
				args []string
				want string
			}
			if tc.flags != nil {
				flags := slices.Clone(tc.flags)
				if !slices.ContainsFunc(flags, func(f string) bool { return f == "--hosts" || f == "--host" }) {
					flags = append(flags, "--hosts", "etcd01=10.0.0.1")
				}
				runs = append(runs, struct {
					args []string
					want string
				}{flags, tc.wantFlag})
			}
			if tc.doc != "" {
				doc := "apiVersion: etcd-staticpod.io/v1alpha1\nkind: EtcdCluster\n" + tc.doc
				if !strings.Contains(tc.doc, "hosts:") {
					doc += "hosts: [{name: etcd01, address: 10.0.0.1}]\n"
				}
				path := writeFile(t, filepath.Join(t.TempDir(), "cluster.yaml"), doc)
				runs = append(runs, struct {
					args []string
					want string
				}{[]string{"--config", path}, tc.wantConfg})
			}
			for _, r := range runs {
				counts[tc.class]++
				fresh := filepath.Join(t.TempDir(), "bundles")
				for _, dir := range []string{existing, fresh} {
					args := append([]string{"init", "--out", dir}, r.args...)
					stdout, stderr, code := etcdtest.Exec(t, bin, args...)
					oneErrorLine(t, args, stdout, stderr, code, r.want)
				}
				if treeHash(t, existing) != before {
					t.Errorf("%q changed the existing output folder", r.args)
					setup(t)
				}
				if got := treeHash(t, fresh); got != "absent" {
					t.Errorf("%q created the output folder", r.args)
				}
			}
		})
	}
	t.Logf("bad-input cases run through init: %v", counts)
}

// TestRecordedSpecIsValidated: a cluster.yaml edited by hand after init is
// held to the same checks by every command that reads it.
func TestRecordedSpecIsValidated(t *testing.T) {
	bin := binary(t)
	for _, bad := range []struct{ name, edit, want string }{
		{"CR in kubelet path", "kubelet:\n  path: \"/usr/bin/kubelet\\rExecStartPre=/bin/sh\"\n", `kubelet.path "/usr/bin/kubelet\rExecStartPre=/bin/sh": contains the control character U+000D`},
		{"data dir /etc", "etcd:\n  dataDir: /etc\n", `etcd.dataDir "/etc": is the system's configuration`},
		{"image tag", "etcd:\n  version: 3.6 8\n", `etcd.version "3.6 8": is not an image tag`},
		{"zero validity", "certificateValidity: 0s\n", `certificateValidity "0s": must be positive`},
	} {
		t.Run(bad.name, func(t *testing.T) {
			out := t.TempDir()
			if o, e, code := etcdtest.Exec(t, bin, "init", "--hosts", loopbackHosts, "--out", out, "--encryption-algorithm", "ECDSA-P256"); code != 0 {
				t.Fatalf("setup: %s %s", o, e)
			}
			recorded := filepath.Join(out, "cluster.yaml")
			b, err := os.ReadFile(recorded)
			if err != nil {
				t.Fatal(err)
			}
			// The edit replaces the section of the same name.
			doc := string(b)
			key := strings.SplitN(bad.edit, ":", 2)[0] + ":"
			var kept []string
			skipping := false
			for _, l := range strings.Split(doc, "\n") {
				if strings.HasPrefix(l, key) {
					skipping = true
					continue
				}
				if skipping && (strings.HasPrefix(l, " ") || l == "") {
					continue
				}
				skipping = false
				kept = append(kept, l)
			}
			writeFile(t, recorded, strings.Join(kept, "\n")+"\n"+bad.edit)
			before := treeHash(t, out)
			snap := writeFile(t, filepath.Join(t.TempDir(), "etcd.db"), "not read")
			for _, args := range [][]string{
				{"init", "--out", out},
				{"init", "phase", "kubelet", "--out", out},
				{"certs", "renew", "all", "--out", out},
				{"certs", "check-expiration", "--out", out},
				{"member", "add", "etcd04=127.0.0.254", "--out", out},
				{"member", "remove", "etcd03", "--out", out},
				{"snapshot", "restore", snap, "--out", out},
				{"upgrade", "--etcd-version", "3.6.16-0", "--out", out},
			} {
				stdout, stderr, code := etcdtest.Exec(t, bin, args...)
				oneErrorLine(t, args, stdout, stderr, code, bad.want)
				if treeHash(t, out) != before {
					t.Fatalf("%q changed the bundle folder", args)
				}
			}
		})
	}
}

// TestRejectsBadNumbers: numeric flags of the day-2 commands are bounded by
// what their consumer takes, refused before anything is read or written.
func TestRejectsBadNumbers(t *testing.T) {
	bin := binary(t)
	out := t.TempDir()
	if o, e, code := etcdtest.Exec(t, bin, "init", "--hosts", loopbackHosts, "--out", out, "--encryption-algorithm", "ECDSA-P256"); code != 0 {
		t.Fatalf("setup: %s %s", o, e)
	}
	before := treeHash(t, out)
	snap := writeFile(t, filepath.Join(t.TempDir(), "etcd.db"), "not read")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot", "restore", snap, "--out", out, "--bump-revision", "9223372036854775807"}, `--bump-revision "9223372036854775807": want a whole number from 1 to 4611686018427387904`},
		{[]string{"snapshot", "restore", snap, "--out", out, "--bump-revision", "4611686018427387905"}, `--bump-revision "4611686018427387905"`},
		{[]string{"snapshot", "restore", snap, "--out", out, "--bump-revision", "18446744073709551616"}, `--bump-revision "18446744073709551616"`},
		{[]string{"snapshot", "restore", snap, "--out", out, "--bump-revision", "-1"}, `--bump-revision "-1"`},
		{[]string{"snapshot", "restore", snap, "--out", out, "--bump-revision", "0"}, `--bump-revision "0"`},
		{[]string{"certs", "check-expiration", "--out", out, "--within", "106752d"}, `--within "106752d"`},
		{[]string{"certs", "check-expiration", "--out", out, "--within", "-1h"}, `--within "-1h"`},
		{[]string{"health", "--bundle", filepath.Join(out, "etcd01"), "--timeout", "0s"}, `--timeout "0s"`},
		{[]string{"health", "--bundle", filepath.Join(out, "etcd01"), "--timeout", "2562048h"}, `--timeout "2562048h"`},
		{[]string{"member", "add", "etcd04=127.0.0.254", "--out", out, "--timeout", "-1s"}, `--timeout "-1s"`},
		{[]string{"member", "add", "etcd04=127.0.0.254", "--out", out, "--wait", "-1s"}, `--wait "-1s"`},
		{[]string{"member", "promote", "etcd03", "--out", out, "--request-timeout", "0s"}, `--request-timeout "0s"`},
		{[]string{"member", "promote", "etcd03", "--out", out, "--wait", "2562048h"}, `--wait "2562048h"`},
		{[]string{"upgrade", "--etcd-version", "3.6.16-0", "--out", out, "--timeout", "0s"}, `--timeout "0s"`},
		{[]string{"upgrade", "--etcd-version", "3.6.16-0", "--out", out, "--wait", "0s"}, `--wait "0s"`},
		// --timeout is each request's bound and --wait the wait's. A
		// --timeout long enough to be the wait it once named (member add,
		// member promote, upgrade), or an older name given with its new one,
		// is refused with the flag to use.
		{[]string{"member", "add", "etcd04=127.0.0.254", "--out", out, "--timeout", "10m"}, `--timeout "10m": bounds each request to etcd, at most 1m0s; give how long to wait for the member as --wait 10m`},
		{[]string{"member", "promote", "etcd03", "--out", out, "--timeout", "61s"}, `--timeout "61s": bounds each request to etcd, at most 1m0s; give how long to wait for the member as --wait 61s`},
		{[]string{"upgrade", "--etcd-version", "3.6.16-0", "--out", out, "--timeout", "5m"}, `--timeout "5m": bounds each request to etcd, at most 1m0s; give how long to wait for the member as --wait 5m`},
		{[]string{"upgrade", "--etcd-version", "3.6.16-0", "--out", out, "--timeout", "5s", "--request-timeout", "2s"}, `--request-timeout "2s": the older name of --timeout; give --timeout alone`},
		{[]string{"member", "remove", "etcd03", "--out", out, "--request-timeout", "2s", "--timeout", "2s"}, `--request-timeout "2s": the older name of --timeout; give --timeout alone`},
		{[]string{"member", "add", "etcd04=127.0.0.254", "--out", out, "--request-timeout", "soon"}, `--request-timeout "soon": not a duration such as 5s`},
		{[]string{"member", "add", "etcd04=127.0.0.254", "--out", out, "--wait", "soon"}, `--wait "soon": not a duration such as 10m`},
		{[]string{"defrag", "--bundle", filepath.Join(out, "etcd01"), "--min-free", "NaN%"}, `--min-free "NaN%": want a share from 0% to 100%`},
		{[]string{"compact", "--bundle", filepath.Join(out, "etcd01"), "--keep-revisions", "9223372036854775808"}, `--keep-revisions "9223372036854775808"`},
		{[]string{"snapshot", "save", "--dir", t.TempDir(), "--bundle", filepath.Join(out, "etcd01"), "--keep", "0"}, `--keep "0"`},
		{[]string{"init", "--out", out, "--certificate-validity", "0.5h"}, `--certificate-validity "0.5h": must be at least 1h0m0s`},
	} {
		t.Run(strings.Join(tc.args[:2], " ")+" "+tc.args[len(tc.args)-1], func(t *testing.T) {
			stdout, stderr, code := etcdtest.Exec(t, bin, tc.args...)
			oneErrorLine(t, tc.args, stdout, stderr, code, tc.want)
			if treeHash(t, out) != before {
				t.Fatalf("%q changed the bundle folder", tc.args)
			}
		})
	}
}

// TestLeavesEndWithTheirCA: a leaf asked to outlive its CA ends with it,
// with a warning, whether the CA is given or made with a shorter life.
func TestLeavesEndWithTheirCA(t *testing.T) {
	bin := binary(t)
	caCert, caKey := writeCA(t, t.TempDir(), time.Now(), 2*time.Hour)
	ca := etcdtest.ReadCert(t, caCert)
	for name, args := range map[string][]string{
		"given CA": {"--ca-cert", caCert, "--ca-key", caKey},
		"new CA":   {"--ca-certificate-validity", "2h", "--certificate-validity", "3h"},
	} {
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			stdout, stderr, code := etcdtest.Exec(t, bin, append([]string{"init", "phase", "certs", "all", "--out", out, "--hosts", threeHosts, "--encryption-algorithm", "ECDSA-P256"}, args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s %s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "new certificates end with the CA") {
				t.Errorf("no warning:\n%s", stdout)
			}
			caNotAfter := ca.NotAfter
			if name == "new CA" {
				caNotAfter = etcdtest.ReadCert(t, filepath.Join(out, "pki/etcd/ca.crt")).NotAfter
			}
			leaf := etcdtest.ReadCert(t, filepath.Join(out, "etcd02/etc/kubernetes/pki/etcd/server.crt"))
			if !leaf.NotAfter.Equal(caNotAfter) {
				t.Errorf("leaf ends %s, CA %s", leaf.NotAfter, caNotAfter)
			}
			if name == "new CA" && !strings.Contains(stderr, "warning: certificateValidity 3h0m0s is longer than caCertificateValidity 2h0m0s") {
				t.Errorf("no spec warning: %s", stderr)
			}
		})
	}
}
