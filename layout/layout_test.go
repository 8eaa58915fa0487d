package layout

import (
	"path/filepath"
	"slices"
	"testing"
)

// TestBundlePaths: the bundle folder's paths are the ones the README
// documents and earlier releases wrote; a change here breaks existing
// bundles.
func TestBundlePaths(t *testing.T) {
	b := Bundle("out")
	for _, tc := range []struct{ got, want string }{
		{b.Spec(), "out/cluster.yaml"},
		{b.CAStore(), "out/pki/etcd"},
		{b.CACert(), "out/pki/etcd/ca.crt"},
		{b.CAKey(), "out/pki/etcd/ca.key"},
		{b.Host("etcd01"), "out/etcd01"},
		{b.Archive("etcd01"), "out/etcd01.tar.gz"},
		{b.ControlPlane(), "out/control-plane"},
		{b.KubeadmConfig(), "out/kubeadm-config.yaml"},
		{b.Monitoring(), "out/monitoring"},
		{b.Sums(), "out/SHA256SUMS"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

// TestHostPaths: the files on an etcd host are where kubeadm and the HA
// etcd guide put them.
func TestHostPaths(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{EtcdManifest, "/etc/kubernetes/manifests/etcd.yaml"},
		{ParkedManifest, "/etc/kubernetes/etcd.yaml.stopped"},
		{HostKubeadmConfig, "/etc/kubernetes/kubeadmcfg.yaml"},
		{DefaultCertDir, "/etc/kubernetes/pki"},
		{DefaultDataDir, "/var/lib/etcd"},
		{KubeletConfig, "/etc/systemd/system/kubelet.service.d/kubelet.conf"},
		{KubeletDropIn, "/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf"},
		{BackupService, "/etc/systemd/system/etcd-backup.service"},
		{BackupTimer, "/etc/systemd/system/etcd-backup.timer"},
		{CLI, "/usr/local/bin/etcd-staticpod"},
		{EtcdUnit, "/etc/systemd/system/etcd.service"},
		{OnHost("out/etcd01", EtcdManifest), "out/etcd01/etc/kubernetes/manifests/etcd.yaml"},
		{OnHost("/", EtcdManifest), "/etc/kubernetes/manifests/etcd.yaml"},
		{Rel(EtcdManifest), "etc/kubernetes/manifests/etcd.yaml"},
		{RestoreDir("/var/lib/etcd", "t1"), "/var/lib/etcd.restore-t1"},
		{AsideDir("/var/lib/etcd", "t1"), "/var/lib/etcd.before-restore-t1"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

// TestCertFiles: each pair's files below a certificate folder, as kubeadm
// names them, and the folder found back from any of them.
func TestCertFiles(t *testing.T) {
	dir := "/etc/kubernetes/pki"
	for _, tc := range []struct {
		f         CertFiles
		cert, key string
	}{
		{CA, dir + "/etcd/ca.crt", dir + "/etcd/ca.key"},
		{Server, dir + "/etcd/server.crt", dir + "/etcd/server.key"},
		{Peer, dir + "/etcd/peer.crt", dir + "/etcd/peer.key"},
		{HealthcheckClient, dir + "/etcd/healthcheck-client.crt", dir + "/etcd/healthcheck-client.key"},
		{APIServerEtcdClient, dir + "/apiserver-etcd-client.crt", dir + "/apiserver-etcd-client.key"},
	} {
		if got := tc.f.Cert(dir); got != tc.cert {
			t.Errorf("%s.Cert = %s, want %s", tc.f, got, tc.cert)
		}
		if got := tc.f.Key(dir); got != tc.key {
			t.Errorf("%s.Key = %s, want %s", tc.f, got, tc.key)
		}
		if got, want := tc.f.Dir(dir), filepath.Dir(tc.cert); got != want {
			t.Errorf("%s.Dir = %s, want %s", tc.f, got, want)
		}
		for _, file := range []string{tc.cert, tc.key} {
			if got, ok := tc.f.DirOf(file); !ok || got != dir {
				t.Errorf("%s.DirOf(%s) = %s, %v; want %s", tc.f, file, got, ok, dir)
			}
		}
	}
	// A CA file outside an etcd folder names no certificate folder.
	if got, ok := CA.DirOf("/srv/ca.crt"); ok {
		t.Errorf("DirOf(/srv/ca.crt) = %s, want none", got)
	}
	if !IsCAKeyName("ca.key") || IsCAKeyName("server.key") {
		t.Error("IsCAKeyName does not tell the CA key from a host key")
	}
}

// TestReservedNames: every top-level folder the bundle uses or keeps is
// reserved, in lower case, and no file name with a dot is.
func TestReservedNames(t *testing.T) {
	want := []string{"control-plane", "monitoring", "pki", "sha256sums", "statefulset"}
	if got := ReservedNames(); !slices.Equal(got, want) {
		t.Errorf("ReservedNames() = %v, want %v", got, want)
	}
}
