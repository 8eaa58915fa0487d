package phases

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/etcdconf"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/systemdunit"
)

// Systemd is what runtime systemd puts on a host instead of the kubelet
// settings and the static Pod.
func Systemd() Phase {
	return Phase{
		Name:  "systemd",
		Short: "With --runtime systemd: write etcd's config file and its hardened systemd unit for every host",
		Long: "Writes " + layout.EtcdConfig + " (etcd's --config-file format, the settings the static Pod would give etcd as flags, the private keys read from systemd's credentials) and " +
			layout.EtcdUnit + " (Type=notify, a dynamic user, the keys handed over with LoadCredential=, sandboxed to an exposure of about 1.2 by systemd-analyze security). " +
			"--etcd-binary puts that etcd binary at " + layout.EtcdBinary + ". With runtime static-pod it does nothing.",
		Example: "etcd-staticpod init phase systemd --config cluster.yaml --runtime systemd --etcd-binary ./etcd",
		Flags:   []FlagGroup{FlagsEtcd},
		Check: func(r *Runner) error {
			if !r.Cluster().Systemd() {
				return nil
			}
			if _, err := r.perHost("etcd config file", etcdConfigFile); err != nil {
				return err
			}
			if _, err := r.perHost("etcd unit", etcdUnit); err != nil {
				return err
			}
			_, err := r.etcdBinary()
			return err
		},
		Run: func(r *Runner) error {
			if !r.Cluster().Systemd() {
				return nil
			}
			confs, err := r.perHost("etcd config file", etcdConfigFile)
			if err != nil {
				return err
			}
			units, err := r.perHost("etcd unit", etcdUnit)
			if err != nil {
				return err
			}
			bin, err := r.etcdBinary()
			if err != nil {
				return err
			}
			for i, h := range r.Hosts() {
				if err := r.WriteFile(r.HostPath(h, layout.EtcdConfig), confs[i], layout.ModeFile, layout.ModeDir); err != nil {
					return err
				}
				if err := r.WriteFile(r.HostPath(h, layout.EtcdUnit), units[i], layout.ModeFile, layout.ModeDir); err != nil {
					return err
				}
				if bin != nil {
					if err := r.WriteFile(r.HostPath(h, layout.EtcdBinary), bin, layout.ModeExec, layout.ModeDir); err != nil {
						return err
					}
				}
				r.Logf("[systemd] Wrote %s and %s for %s", layout.EtcdConfig, layout.EtcdUnit, h.Name)
			}
			if bin != nil {
				r.Logf("[systemd] Put %s (%d MB) at %s %s", r.Cluster().EtcdBinary, len(bin)>>20, layout.EtcdBinary, r.where(r.Hosts()))
			}
			return nil
		},
	}
}

// StartCommand is what starts etcd on a host once its bundle is unpacked:
// kubelet, restarted, runs the static Pod; with runtime systemd, etcd.service
// is enabled and started. --no-block: etcd reports ready once a quorum
// runs, so a blocking start on the first host would wait for hosts not
// started yet.
func StartCommand(c *spec.Cluster) string {
	if c.Systemd() {
		return "systemctl enable --now --no-block " + layout.EtcdUnitName
	}
	return "systemctl restart kubelet"
}

// InstallEtcdLine says which etcd release to install where the unit runs
// it, when the bundles do not carry the binary (no --etcd-binary); "" when
// they do or the runtime is static-pod.
func InstallEtcdLine(c *spec.Cluster) string {
	if !c.Systemd() || c.EtcdBinary != "" {
		return ""
	}
	return fmt.Sprintf("Install etcd v%s (github.com/etcd-io/etcd/releases) at %s on the host first: the unit runs it.",
		strings.TrimSuffix(c.Etcd.Version, "-0"), layout.EtcdBinary)
}

// EtcdConfigFile is host h's etcd.conf.yml as the systemd phase writes it.
func EtcdConfigFile(c *spec.Cluster, h spec.Host) ([]byte, error) { return etcdConfigFile(c, h) }

func etcdConfigFile(c *spec.Cluster, h spec.Host) ([]byte, error) {
	m, err := etcdconf.For(c, h)
	if err != nil {
		return nil, err
	}
	return etcdconf.Marshal(m)
}

func etcdUnit(c *spec.Cluster, h spec.Host) ([]byte, error) {
	m, err := etcdconf.For(c, h)
	if err != nil {
		return nil, err
	}
	u, err := systemdunit.Unit(c, m)
	if err != nil {
		return nil, fmt.Errorf("host %q: etcd unit: %w", h.Name, err)
	}
	return u, nil
}

// etcdBinary reads the etcd binary the bundles carry, nil when none is
// given. It must be a regular executable file: a bundle whose unit runs a
// directory, a pipe or a text file fails only on the host.
func (r *Runner) etcdBinary() ([]byte, error) {
	p := r.Cluster().EtcdBinary
	if p == "" {
		return nil, nil
	}
	if b, ok := r.rendered["etcd binary"]; ok {
		return b[0], nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("etcdBinary %q: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("etcdBinary %q: not a regular file", p)
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("etcdBinary %q: %w", p, err)
	}
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return nil, fmt.Errorf("etcdBinary %q: not an ELF executable (want the etcd binary of a release, such as etcd-v3.6.8-linux-amd64/etcd)", filepath.Clean(p))
	}
	if r.rendered == nil {
		r.rendered = map[string][][]byte{}
	}
	r.rendered["etcd binary"] = [][]byte{bin}
	return bin, nil
}
