// Package layout is where every file lives, on an etcd host and in the
// bundle folder, with its name and mode, the way kubeadm's constants package
// is for kubeadm. Other packages ask it for a path rather than spell one, so
// that moving a file, or adding a runtime's files, is a change here.
//
// Host paths are absolute paths on an etcd host; inside a bundle folder or
// under --root they sit below that host's root (OnHost). Bundle paths are
// relative to the bundle folder (Bundle).
package layout

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Modes, as kubeadm leaves them, whatever the umask.
const (
	ModeDir     os.FileMode = 0o755
	ModePrivDir os.FileMode = 0o700
	ModeFile    os.FileMode = 0o644
	ModeKey     os.FileMode = 0o600
	// ModeExec is the mode of the command the bundles carry.
	ModeExec os.FileMode = 0o755
	// ModeArchive: the archives hold private keys.
	ModeArchive os.FileMode = 0o600
	ModeSums    os.FileMode = 0o644
	// ModeSpec is the recorded spec's mode: it holds no secret.
	ModeSpec os.FileMode = 0o644
)

// Host paths kubeadm and the HA etcd guide use, the defaults of the spec's
// folders, and what this tool adds on a host.
const (
	KubernetesDir = "/etc/kubernetes"
	// StaticPodDir is where kubeadm writes the etcd manifest and kubelet looks.
	StaticPodDir = KubernetesDir + "/manifests"
	// EtcdManifest is kubeadm's etcd static Pod.
	EtcdManifest = StaticPodDir + "/etcd.yaml"
	// ParkedManifest is where a restore parks EtcdManifest while the member
	// is stopped: out of StaticPodDir, on the same filesystem.
	ParkedManifest = KubernetesDir + "/etcd.yaml.stopped"
	// HostKubeadmConfig is the guide's per-host kubeadm configuration.
	HostKubeadmConfig = KubernetesDir + "/kubeadmcfg.yaml"
	// DefaultCertDir is kubeadm's certificatesDir, on the hosts and on the
	// control-plane node.
	DefaultCertDir = KubernetesDir + "/pki"
	// DefaultDataDir is etcd's data folder.
	DefaultDataDir = "/var/lib/etcd"
	// DefaultBackupDir is where scheduled backups keep their snapshots.
	DefaultBackupDir = "/var/backups/etcd"

	// SystemdUnitDir holds the units this tool writes.
	SystemdUnitDir = "/etc/systemd/system"
	// KubeletDropInDir holds the guide's kubelet drop-in and, beside it,
	// the KubeletConfiguration it points kubelet at.
	KubeletDropInDir = SystemdUnitDir + "/kubelet.service.d"
	KubeletDropIn    = KubeletDropInDir + "/20-etcd-service-manager.conf"
	KubeletConfig    = KubeletDropInDir + "/kubelet.conf"
	// KubeletStateDir is kubelet's own state.
	KubeletStateDir = "/var/lib/kubelet"

	// BackupService and BackupTimer save snapshots on the backup host.
	BackupServiceName = "etcd-backup.service"
	BackupTimerName   = "etcd-backup.timer"
	BackupService     = SystemdUnitDir + "/" + BackupServiceName
	BackupTimer       = SystemdUnitDir + "/" + BackupTimerName
	// CLI is where the bundles put this command.
	CLI = "/usr/local/bin/etcd-staticpod"
)

// Files of the systemd runtime, which runs etcd as a systemd service
// instead of a static Pod: etcd's config file, its unit, the etcd binary
// the bundles may carry, and where systemd hands the unit its credentials
// ($CREDENTIALS_DIRECTORY, which follows from the unit's name).
const (
	EtcdConfig         = "/etc/etcd/etcd.conf.yml"
	EtcdUnitName       = "etcd.service"
	EtcdUnit           = SystemdUnitDir + "/" + EtcdUnitName
	EtcdBinary         = "/usr/local/bin/etcd"
	EtcdCredentialsDir = "/run/credentials/" + EtcdUnitName
	// StateRoot is where systemd makes a unit's StateDirectory=. With
	// DynamicUser= the folder itself is made in PrivateStateRoot (0700,
	// root's) and StateRoot holds a symbolic link to it, so that no later
	// user with a recycled ID reaches it.
	StateRoot        = "/var/lib/"
	PrivateStateRoot = StateRoot + "private/"
)

// DynamicStateDir is where the folder dir (below StateRoot, as the unit's
// StateDirectory= names it) really is when the unit has DynamicUser=:
// /var/lib/etcd is a link to /var/lib/private/etcd. dir itself when it is
// not below StateRoot.
func DynamicStateDir(dir string) string {
	rel, ok := strings.CutPrefix(filepath.Clean(dir), StateRoot)
	if !ok || rel == "" {
		return dir
	}
	return PrivateStateRoot + rel
}

// A snapshot restore writes the restored data folder beside the data
// folder, and the swap moves the old one aside, both named for the
// restore's token: /var/lib/etcd.restore-TOKEN, /var/lib/etcd.before-restore-TOKEN.
const (
	RestoreSuffix = ".restore-"
	AsideSuffix   = ".before-restore-"
)

// RestoreDir is where a restore with token writes dataDir's new data.
func RestoreDir(dataDir, token string) string { return dataDir + RestoreSuffix + token }

// AsideDir is where the swap moves the data a restore replaces.
func AsideDir(dataDir, token string) string { return dataDir + AsideSuffix + token }

// HostLockDir is the folder a run with --root locks on the node (it holds
// the files a run writes there).
const HostLockDir = KubernetesDir

// OnHost is nodePath (absolute on the host) below root, the folder that
// stands for the host's filesystem root: a host folder of the bundles, or
// --root.
func OnHost(root, nodePath string) string { return filepath.Join(root, nodePath) }

// Rel is a host path as it is spelled inside a host folder or an archive:
// "etc/kubernetes/manifests/etcd.yaml".
func Rel(nodePath string) string { return strings.TrimPrefix(filepath.Clean(nodePath), "/") }

// Names in the bundle folder and beside written files.
const (
	// DefaultOut is the bundle folder when --out is not given.
	DefaultOut = "etcd-bundles"
	// SpecFile records the spec the bundles were made from.
	SpecFile = "cluster.yaml"
	// CAStoreDir holds the CA certificate and key; it stays on the machine
	// that made them.
	CAStoreDir = "pki/etcd"
	// ControlPlaneDir is the first control-plane node's root: the CA
	// certificate and kube-apiserver's client pair.
	ControlPlaneDir = "control-plane"
	// KubeadmConfigFile is the external-etcd ClusterConfiguration for
	// `kubeadm init --config` on the first control-plane node.
	KubeadmConfigFile = "kubeadm-config.yaml"
	// MonitoringDir holds Prometheus' configuration, rules and client
	// certificate; it stays off the hosts.
	MonitoringDir = "monitoring"
	// StatefulSetDir holds the StatefulSet runtime's objects.
	StatefulSetDir = "statefulset"
	// SumsFile lists the archives' SHA-256 sums.
	SumsFile = "SHA256SUMS"
	// ArchiveExt ends a host folder's archive: NAME.tar.gz.
	ArchiveExt = ".tar.gz"
	// LockFile is the lock a run holds in the folder it writes (the bundle
	// folder, HostLockDir on a node). It is not a temp file and never
	// belongs in an archive.
	LockFile = ".etcd-staticpod.lock"
)

// Files of MonitoringDir. The scrape configuration names the others by
// these relative names, which Prometheus resolves against its own folder.
const (
	MonitoringConfig = "prometheus.yml"
	MonitoringRules  = "etcd-alerts.yml"
	MonitoringCA     = "ca.crt"
)

// Files of StatefulSetDir: the objects, one YAML stream for `kubectl apply
// -f` (it holds every member's private keys, so it is 0600), and the client
// bundle an application needs, in its own folder so that `kubectl apply -f
// statefulset/` finds only the stream.
const (
	StatefulSetManifest  = StatefulSetDir + "/etcd.yaml"
	StatefulSetClientDir = StatefulSetDir + "/client"
	StatefulSetClientCA  = "ca.crt"
)

// ReservedNames are the names the bundle folder uses at its top level, or
// keeps for folders to come, in lower case (SHA256SUMS clashes with a host
// "sha256sums" on a case-insensitive filesystem). Other top-level entries
// (cluster.yaml, NAME.tar.gz, the lock file) hold a dot, which a host name,
// a DNS label, cannot.
func ReservedNames() []string {
	top, _, _ := strings.Cut(CAStoreDir, "/")
	names := []string{ControlPlaneDir, MonitoringDir, top, strings.ToLower(SumsFile), StatefulSetDir}
	slices.Sort(names)
	return names
}

// Bundle is a bundle folder (--out): the CA store, one folder per host that
// mirrors its filesystem root, their archives, and what the control plane
// and monitoring need.
type Bundle string

// Spec is the recorded spec.
func (b Bundle) Spec() string { return filepath.Join(string(b), SpecFile) }

// CAStore is the folder of the CA's certificate and key.
func (b Bundle) CAStore() string { return filepath.Join(string(b), CAStoreDir) }

// CACert and CAKey are the CA store's files.
func (b Bundle) CACert() string { return filepath.Join(string(b), CAStoreDir, CAStoreCert) }

// CAKey is the CA's key, which never leaves the CA store.
func (b Bundle) CAKey() string { return filepath.Join(string(b), CAStoreDir, CAStoreKey) }

// Host is the folder that stands for host name's filesystem root.
func (b Bundle) Host(name string) string { return filepath.Join(string(b), name) }

// Archive is the archive of a top-level folder (a host's, the control
// plane's).
func (b Bundle) Archive(name string) string { return filepath.Join(string(b), name+ArchiveExt) }

// ControlPlane is the first control-plane node's root.
func (b Bundle) ControlPlane() string { return filepath.Join(string(b), ControlPlaneDir) }

// KubeadmConfig is the external-etcd kubeadm configuration.
func (b Bundle) KubeadmConfig() string { return filepath.Join(string(b), KubeadmConfigFile) }

// Monitoring is Prometheus' folder.
func (b Bundle) Monitoring() string { return filepath.Join(string(b), MonitoringDir) }

// StatefulSetManifest is the StatefulSet runtime's object stream.
func (b Bundle) StatefulSetManifest() string { return filepath.Join(string(b), StatefulSetManifest) }

// StatefulSetClient is the folder of the applications' client bundle.
func (b Bundle) StatefulSetClient() string { return filepath.Join(string(b), StatefulSetClientDir) }

// Sums is the archives' checksum list.
func (b Bundle) Sums() string { return filepath.Join(string(b), SumsFile) }
