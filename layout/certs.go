package layout

import "path/filepath"

// CertFiles names a certificate's pair of files below a certificate folder
// (kubeadm's certificatesDir): its base name, without .crt or .key. The
// certificate table (certs.Profile) takes its files from here.
type CertFiles string

// The pairs kubeadm writes for an external etcd, and Prometheus' own.
const (
	CA                  CertFiles = "etcd/ca"
	Server              CertFiles = "etcd/server"
	Peer                CertFiles = "etcd/peer"
	HealthcheckClient   CertFiles = "etcd/healthcheck-client"
	APIServerEtcdClient CertFiles = "apiserver-etcd-client"
	// MonitoringClient lives in MonitoringDir, not in a certificate folder.
	MonitoringClient CertFiles = "etcd-monitoring-client"
	// ApplicationClient lives in StatefulSetClientDir.
	ApplicationClient CertFiles = "client"
)

// File name endings of a pair.
const (
	CertExt = ".crt"
	KeyExt  = ".key"
)

// The CA store holds the CA pair by its own names.
const (
	CAStoreCert = "ca" + CertExt
	CAStoreKey  = "ca" + KeyExt
)

// Base is the pair's path below dir, without an ending.
func (f CertFiles) Base(dir string) string { return filepath.Join(dir, string(f)) }

// Cert is the certificate's path below dir.
func (f CertFiles) Cert(dir string) string { return f.Base(dir) + CertExt }

// Key is the key's path below dir.
func (f CertFiles) Key(dir string) string { return f.Base(dir) + KeyExt }

// Dir is the folder below dir that holds the pair: dir/etcd for the
// etcd pairs, which kubeadm mounts into the etcd Pod.
func (f CertFiles) Dir(dir string) string { return filepath.Dir(f.Base(dir)) }

// IsCAKeyName reports whether a file name is the CA key's own, which no
// host folder may hold.
func IsCAKeyName(name string) bool { return name == CAStoreKey }

// DirOf is the certificate folder of file, a path to this pair's certificate
// or key (or to another file in the pair's folder), judged by its folders
// alone: "/etc/kubernetes/pki" for CA and "/etc/kubernetes/pki/etcd/ca.crt".
// It is false when file does not lie in such a folder.
func (f CertFiles) DirOf(file string) (string, bool) {
	dir := filepath.Dir(file)
	for sub := filepath.Dir(string(f)); sub != "."; sub = filepath.Dir(sub) {
		if filepath.Base(dir) != filepath.Base(sub) {
			return "", false
		}
		dir = filepath.Dir(dir)
	}
	return dir, true
}
