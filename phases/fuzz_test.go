package phases

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/etcd-staticpod/etcd-staticpod/backupunit"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/kubeletconf"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// FuzzAcceptedSpecWritesNoControlCharacter: whatever values a spec holds,
// one that validates renders no control character (other than the line
// ends the formats use themselves) into any file or file name, and the
// kubelet drop-in keeps exactly its own lines. The seeds, which run as an
// ordinary test, hold the characters that once got through.
func FuzzAcceptedSpecWritesNoControlCharacter(f *testing.F) {
	good := []string{"etcd01", "10.0.0.1", "etcd01.example", "/usr/bin/kubelet", "/var/lib/etcd", "/etc/kubernetes/pki",
		"registry.k8s.io", "3.6.8-0", "log-level", "debug", "GOMAXPROCS", "2", "v1.36.3", "10.0.0.9:6443", "unix:///run/containerd/containerd.sock",
		"daily", "/var/backups/etcd"}
	add := func(in []string) {
		f.Add(in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9], in[10], in[11], in[12], in[13], in[14], in[15], in[16])
	}
	add(good)
	for i, bad := range []string{
		"etcd\n01", "10.0.0.1\r", "a.example\u0085", "/usr/bin/kubelet\rExecStartPre=/bin/sh", "/var/lib/etcd\x00", "/etc/\u202epki",
		"registry.k8s.io\t", "3.6 8", "log-level\n", "debug\n- --x", "GO\x7fMAX", "2\u2028", "v1.36.3\x1b", "10.0.0.9:6443\r\n", "unix:///x\ny",
		"daily\nExecStartPre=/bin/sh", "/var/backups/etcd\r",
	} {
		in := append([]string(nil), good...)
		in[i] = bad
		add(in)
	}
	add([]string{"a", "fd00::1", "*.example", "/opt/my kubelet/%h$x\\\"'", "/srv/etcd", "/srv/pki", "[fd00::1]:5000/m", "_x", "x", "é", "_A", "é ü", "stable-1.36", "[fd00::9]:6443", "npipe:////./pipe/x", "Mon..Fri 02:00", "/srv/backups"})
	f.Fuzz(func(t *testing.T, name, addr, san, kubeletPath, dataDir, certDir, repo, version, argName, argValue, envName, envValue, k8sVersion, endpoint, runtime, schedule, backupDir string) {
		c := &spec.Cluster{
			Hosts:   []spec.Host{{Name: name, Address: addr, ServerCertSANs: []string{san}, PeerCertSANs: []string{san}}},
			CertDir: certDir,
			Etcd: spec.Etcd{
				ImageRepository: repo, Version: version, DataDir: dataDir,
				ExtraArgs: []spec.Arg{{Name: argName, Value: argValue}},
				ExtraEnv:  []spec.Arg{{Name: envName, Value: envValue}},
			},
			Kubelet: spec.Kubelet{Path: kubeletPath, ContainerRuntimeEndpoint: runtime},
			ControlPlane: spec.ControlPlane{
				KubernetesVersion: k8sVersion, ControlPlaneEndpoint: endpoint, APIServerCertSANs: []string{san},
			},
			Backup: &spec.Backup{Host: name, Schedule: schedule, Keep: 3, Dir: backupDir},
		}
		c.SetDefaults()
		if _, err := c.Validate(); err != nil {
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "\r") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		files := map[string][]byte{}
		add := func(path string, b []byte, err error) bool {
			if err != nil {
				// Refused while rendering: nothing is written.
				return false
			}
			files[path] = b
			return true
		}
		h := c.Hosts[0]
		recorded, err := spec.Marshal(c)
		add(layout.SpecFile, recorded, err)
		add(layout.KubeletDropIn, kubeletconf.DropIn(c, layout.KubeletConfig), nil)
		conf, err := kubeletconf.Config(c, nil)
		add(layout.KubeletConfig, conf, err)
		manifest, err := EtcdManifest(c, h)
		if !add(layout.EtcdManifest, manifest, err) {
			return
		}
		hostConfig, err := hostKubeadmConfig(c, h)
		if !add(layout.HostKubeadmConfig, hostConfig, err) {
			return
		}
		external, err := manifests.ExternalEtcdConfig(c)
		if !add(layout.KubeadmConfigFile, external, err) {
			return
		}
		add(layout.BackupServiceName, backupunit.Service(*c.Backup), nil)
		add(layout.BackupTimerName, backupunit.Timer(*c.Backup), nil)
		// The names of what the runner writes for the host.
		server, _ := certs.Leaf("etcd-server")
		for _, p := range []string{filepath.Join("out", h.Name, c.CertDir, "etcd", string(server.Files)+".crt"), filepath.Join("out", h.Name, c.Etcd.DataDir), filepath.Join("out", h.Name+".tar.gz")} {
			files["file name "+p] = []byte(p)
		}
		for path, b := range files {
			for _, r := range string(b) {
				if r != '\n' && (unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Bidi_Control)) {
					t.Fatalf("%s holds %U from an accepted spec:\n%s", path, r, b)
				}
			}
		}
		dropIn := strings.Split(strings.TrimSuffix(string(files[layout.KubeletDropIn]), "\n"), "\n")
		if len(dropIn) != 4 || dropIn[0] != "[Service]" || dropIn[1] != "ExecStart=" || !strings.HasPrefix(dropIn[2], "ExecStart=") || dropIn[3] != "Restart=always" {
			t.Fatalf("drop-in lines changed: %q", dropIn)
		}
	})
}

// TestSpecKnowsTheLayout: the names and folders spec reserves are the ones
// this package and kubeletconf write.
func TestSpecKnowsTheLayout(t *testing.T) {
	// pki holds the CA store; SHA256SUMS in lower case is the same name on
	// a case-insensitive filesystem.
	for _, name := range []string{layout.ControlPlaneDir, "pki", strings.ToLower(layout.SumsFile), layout.MonitoringDir} {
		if !slices.Contains(layout.ReservedNames(), name) {
			t.Errorf("host name %q is not reserved", name)
		}
	}
	for _, dir := range []string{layout.StaticPodDir, layout.KubeletDropInDir, filepath.Dir(layout.HostKubeadmConfig)} {
		if !slices.Contains(spec.HostSystemDirs(), dir) {
			t.Errorf("%s is not kept from the data folder", dir)
		}
	}
}
