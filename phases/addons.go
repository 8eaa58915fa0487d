package phases

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/backupunit"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/monitoring"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// FlagsAddons are the optional extras: monitoring, scheduled backups and
// the command itself in the bundles.
const FlagsAddons FlagGroup = "addons"

func monitoringPhase() Phase {
	p := certs.MonitoringClient()
	return Phase{
		Name:  "monitoring",
		Short: "With --monitoring: write OUT/monitoring/, a Prometheus scrape configuration, alerting rules and their client certificate",
		Long: "Writes OUT/" + layout.MonitoringDir + "/ (0700): " + layout.MonitoringConfig + ", which scrapes every member's https://ADDRESS:2379/metrics verifying its server certificate against the etcd CA (" +
			layout.MonitoringCA + "), with the client certificate " + p.Name + " (" + string(p.Files) + layout.CertExt + " and " + layout.KeyExt + ",  made here, signed by the etcd CA, never copied to a host); and " +
			layout.MonitoringRules + ", the alerting rules. Without --monitoring (or monitoring: true in the spec) it does nothing. " +
			"An existing client certificate that still matches is kept.",
		Example: "etcd-staticpod init phase monitoring --monitoring",
		Flags:   []FlagGroup{FlagsAddons},
		Check: func(r *Runner) error {
			if !r.monitoringWanted() {
				return nil
			}
			st, err := r.inspectMonitoringClient()
			if st == leafMissing && err == nil {
				r.keys++
			}
			return err
		},
		Run: func(r *Runner) error { return r.runMonitoring() },
	}
}

func (r *Runner) monitoringWanted() bool { return r.Cluster().Monitoring && !r.NodeMode() }

// monitoringPath is a file of OUT/monitoring.
func (r *Runner) monitoringPath(name string) string {
	return filepath.Join(r.bundle().Monitoring(), name)
}

// inspectMonitoringClient judges an existing monitoring client certificate
// as inspectLeaf judges a host's.
func (r *Runner) inspectMonitoringClient() (leafState, error) {
	p := certs.MonitoringClient()
	base := p.Files.Base(r.bundle().Monitoring())
	certPEM, certErr := r.ReadFile(base + layout.CertExt)
	keyPEM, keyErr := r.ReadFile(base + layout.KeyExt)
	redo := fmt.Sprintf("remove %s.crt and %s.key and run init --monitoring again for a new one", base, base)
	switch {
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		return leafMissing, nil
	case errors.Is(certErr, os.ErrNotExist) && keyErr == nil:
		// A run interrupted between the key and its certificate.
		if _, err := certs.ParseKey(keyPEM); err != nil {
			return 0, fmt.Errorf("%s.key: %w; %s", base, err, redo)
		}
		return leafKeyOnly, nil
	case certErr != nil || keyErr != nil:
		return 0, fmt.Errorf("%s: %w; %s", p.Name, errors.Join(certErr, keyErr), redo)
	}
	cert, err := certs.ParseCert(certPEM)
	if err != nil {
		return 0, fmt.Errorf("%s.crt: %w; %s", base, err, redo)
	}
	key, err := certs.ParseKey(keyPEM)
	if err != nil {
		return 0, fmt.Errorf("%s.key: %w; %s", base, err, redo)
	}
	ca, err := r.authority(false)
	if err != nil {
		return 0, fmt.Errorf("cannot check the existing %s.crt: %w", base, err)
	}
	c := r.Cluster()
	req := certs.Request{Profile: p, Validity: c.CertificateValidity.Duration}
	if diffs := certs.Differences(cert, key, ca, req, c.EncryptionAlgorithm, r.now()); len(diffs) > 0 {
		return 0, fmt.Errorf("existing %s certificate %s.crt does not match the spec: %s; %s", p.Name, base, strings.Join(diffs, "; "), redo)
	}
	return leafValid, nil
}

func (r *Runner) runMonitoring() error {
	if !r.monitoringWanted() {
		return nil
	}
	p := certs.MonitoringClient()
	base := p.Files.Base(r.bundle().Monitoring())
	state, err := r.inspectMonitoringClient()
	if err != nil {
		return err
	}
	ca, err := r.authority(false)
	if err != nil {
		return err
	}
	write := func(name string, data []byte, mode os.FileMode) error {
		return r.WriteFile(r.monitoringPath(name), data, mode, layout.ModePrivDir)
	}
	if err := write(layout.MonitoringCA, certs.EncodeCert(ca.Cert), layout.ModeFile); err != nil {
		return err
	}
	if state != leafValid {
		if ca, err = r.authority(true); err != nil {
			return err
		}
		var key crypto.Signer
		if state == leafKeyOnly {
			keyPEM, err := r.ReadFile(base + layout.KeyExt)
			if err != nil {
				return err
			}
			if key, err = certs.ParseKey(keyPEM); err != nil {
				return fmt.Errorf("%s.key: %w", base, err)
			}
		} else {
			if key, err = r.pool.Key(r.Cluster().EncryptionAlgorithm); err != nil {
				return fmt.Errorf("generate %s key: %w", p.Name, err)
			}
			keyPEM, err := certs.EncodeKey(key)
			if err != nil {
				return err
			}
			// The key first, as for the hosts' certificates.
			if err := write(string(p.Files)+layout.KeyExt, keyPEM, layout.ModeKey); err != nil {
				return err
			}
		}
		cert, err := ca.Issue(certs.Request{Profile: p, Validity: r.Cluster().CertificateValidity.Duration}, key.Public(), r.now())
		if err != nil {
			return fmt.Errorf("sign %s: %w", p.Name, err)
		}
		if err := write(string(p.Files)+layout.CertExt, certs.EncodeCert(cert), layout.ModeFile); err != nil {
			return err
		}
		r.Logf("[monitoring] Generated %s in %s", p.Name, filepath.Dir(base))
	} else {
		r.Logf("[monitoring] Using the existing %s certificate and key", p.Name)
	}
	cfg, err := monitoring.Marshal(monitoring.ScrapeConfigFor(r.Cluster()))
	if err != nil {
		return err
	}
	if err := write(layout.MonitoringConfig, cfg, layout.ModeFile); err != nil {
		return err
	}
	if err := write(layout.MonitoringRules, monitoring.Rules(), layout.ModeFile); err != nil {
		return err
	}
	r.Logf("[monitoring] Wrote %s (job %q, %d members over verified TLS) and %s", r.monitoringPath(layout.MonitoringConfig), monitoring.Job, len(r.Cluster().Hosts), r.monitoringPath(layout.MonitoringRules))
	return nil
}

func backupPhase() Phase {
	return Phase{
		Name:  "backup",
		Short: "With --backup-host: write the systemd units that save a snapshot on that host on a schedule",
		Long: "Writes " + layout.BackupService + " and " + layout.BackupTimerName + " into the backup host's bundle, and creates the snapshot folder (0700). " +
			"The service runs `" + layout.CLI + " snapshot save --dir DIR --keep N` on that host; the timer starts it on --backup-schedule (systemd OnCalendar=). " +
			"Without --backup-host (or backup: in the spec) it does nothing.",
		Example: "etcd-staticpod init phase backup --backup-host etcd01 --backup-schedule '*-*-* 03:15:00' --backup-keep 14",
		Flags:   []FlagGroup{FlagsAddons},
		Run: func(r *Runner) error {
			b := r.Cluster().Backup
			if b == nil {
				return nil
			}
			for _, h := range r.Hosts() {
				if h.Name != b.Host {
					continue
				}
				if err := r.WriteFile(r.HostPath(h, layout.BackupService), backupunit.Service(*b), layout.ModeFile, layout.ModeDir); err != nil {
					return err
				}
				if err := r.WriteFile(r.HostPath(h, layout.BackupTimer), backupunit.Timer(*b), layout.ModeFile, layout.ModeDir); err != nil {
					return err
				}
				if err := r.MkdirAll(r.HostPath(h, b.Dir), layout.ModePrivDir); err != nil {
					return err
				}
				r.Logf("[backup] Wrote %s and %s for %s: a snapshot into %s on %q, keeping %d", layout.BackupServiceName, layout.BackupTimerName, h.Name, b.Dir, b.Schedule, b.Keep)
			}
			return nil
		},
	}
}

func cliPhase() Phase {
	return Phase{
		Name:  "cli",
		Short: "With --with-cli or --backup-host: put this command into every host's bundle at " + layout.CLI,
		Long: "Copies the running etcd-staticpod binary to " + layout.CLI + " (0755) in every host's bundle, so that the day-2 commands run on the hosts. " +
			"Without --with-cli or --backup-host (or installCLI/backup in the spec) it does nothing.",
		Example: "etcd-staticpod init phase cli --with-cli",
		Flags:   []FlagGroup{FlagsAddons},
		Run: func(r *Runner) error {
			if !r.Cluster().ShipsCLI() {
				return nil
			}
			self := r.opts.CLIBinary
			if self == "" {
				var err error
				if self, err = os.Executable(); err != nil {
					return fmt.Errorf("find this command's binary to put into the bundles: %w", err)
				}
			}
			bin, err := os.ReadFile(self)
			if err != nil {
				return fmt.Errorf("read this command's binary: %w", err)
			}
			for _, h := range r.Hosts() {
				if err := r.WriteFile(r.HostPath(h, layout.CLI), bin, layout.ModeExec, layout.ModeDir); err != nil {
					return err
				}
			}
			r.Logf("[cli] Put %s (%d MB) at %s %s", self, len(bin)>>20, layout.CLI, r.where(r.Hosts()))
			return nil
		},
	}
}

func hostNames(hs []spec.Host) string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return strings.Join(names, ", ")
}
