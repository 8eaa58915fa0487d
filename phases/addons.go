package phases

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	redo := fmt.Sprintf("`etcd-staticpod certs renew %s` makes a new one (or remove %s.crt and %s.key and run init --monitoring again)", p.Name, base, base)
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
		var keyPEM []byte // stays nil for a key already on disk
		if state == leafKeyOnly {
			onDisk, err := r.ReadFile(base + layout.KeyExt)
			if err != nil {
				return err
			}
			if key, err = certs.ParseKey(onDisk); err != nil {
				return fmt.Errorf("%s.key: %w", base, err)
			}
		} else {
			if key, err = r.pool.Key(r.Cluster().EncryptionAlgorithm); err != nil {
				return fmt.Errorf("generate %s key: %w", p.Name, err)
			}
			if keyPEM, err = certs.EncodeKey(key); err != nil {
				return err
			}
		}
		if _, err := r.writeMonitoringClient(ca, key, keyPEM); err != nil {
			return err
		}
		r.Logf("[monitoring] Generated %s in %s", p.Name, filepath.Dir(base))
	} else {
		r.Logf("[monitoring] Using the existing %s certificate and key", p.Name)
	}
	if err := r.writeScrapeConfig(); err != nil {
		return err
	}
	if err := write(layout.MonitoringRules, monitoring.Rules(), layout.ModeFile); err != nil {
		return err
	}
	r.Logf("[monitoring] Wrote %s (job %q, %d members over verified TLS) and %s", r.monitoringPath(layout.MonitoringConfig), monitoring.Job, len(r.Cluster().Hosts), r.monitoringPath(layout.MonitoringRules))
	return nil
}

// writeMonitoringClient signs the monitoring client certificate for key
// and queues it, after keyPEM when that is not nil (a new key goes first,
// as a host's does).
func (r *Runner) writeMonitoringClient(ca *certs.Authority, key crypto.Signer, keyPEM []byte) (*x509.Certificate, error) {
	p := certs.MonitoringClient()
	if keyPEM != nil {
		if err := r.WriteFile(r.monitoringPath(string(p.Files)+layout.KeyExt), keyPEM, layout.ModeKey, layout.ModePrivDir); err != nil {
			return nil, err
		}
	}
	cert, err := ca.Issue(certs.Request{Profile: p, Validity: r.Cluster().CertificateValidity.Duration}, key.Public(), r.now())
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", p.Name, err)
	}
	if err := r.WriteFile(r.monitoringPath(string(p.Files)+layout.CertExt), certs.EncodeCert(cert), layout.ModeFile, layout.ModePrivDir); err != nil {
		return nil, err
	}
	return cert, nil
}

// writeScrapeConfig queues OUT/monitoring/prometheus.yml with one target
// per host of the run's spec. init and the commands that change the host
// list write it here alone.
func (r *Runner) writeScrapeConfig() error {
	cfg, err := monitoring.Marshal(monitoring.ScrapeConfigFor(r.Cluster()))
	if err != nil {
		return err
	}
	return r.WriteFile(r.monitoringPath(layout.MonitoringConfig), cfg, layout.ModeFile, layout.ModePrivDir)
}

// hasMonitoring reports whether OUT/monitoring is there: init --monitoring
// made it at some point, so its files are kept in step.
func (r *Runner) hasMonitoring() bool {
	fi, err := os.Stat(r.bundle().Monitoring())
	return err == nil && fi.IsDir()
}

// MonitoringTargets is the phase that writes OUT/monitoring/prometheus.yml
// again from the run's spec when that folder exists, so that the scrape
// targets follow a changed host list (member add and remove run it with
// Record, in the same batch). Without the folder it creates nothing.
func MonitoringTargets() Phase {
	return Phase{
		Name:  "monitoring-targets",
		Short: "Write OUT/" + layout.MonitoringDir + "/" + layout.MonitoringConfig + " again for the spec's hosts, when OUT/" + layout.MonitoringDir + " exists",
		Run: func(r *Runner) error {
			if r.NodeMode() || !r.hasMonitoring() {
				return nil
			}
			if err := r.writeScrapeConfig(); err != nil {
				return err
			}
			r.Logf("[monitoring] Wrote %s: job %q scrapes %d members (%s); copy it to the Prometheus server and reload Prometheus", r.monitoringPath(layout.MonitoringConfig), monitoring.Job, len(r.Cluster().Hosts), hostNames(r.Cluster().Hosts))
			return nil
		},
	}
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

// monitoringRenewPhase is certs renew's phase for the monitoring client
// certificate: a new key and certificate in OUT/monitoring, under the rules
// of the hosts' (the CA in use, the spec's certificateValidity, the key
// first, 0600). prometheus.yml and the rules stay as they are. A --node run
// and a bundle folder without OUT/monitoring have none to renew.
func monitoringRenewPhase() Phase {
	p := certs.MonitoringClient()
	return Phase{
		Name:  p.Name,
		Short: "Renew " + p.Short + ", in OUT/" + layout.MonitoringDir + " (without --node)",
		Check: func(r *Runner) error {
			if r.NodeMode() || !r.hasMonitoring() {
				return nil
			}
			if !r.opts.DryRun && r.due(p.Files.Cert(r.bundle().Monitoring())) {
				r.keys++
			}
			ca, err := r.checkCAKey()
			if err != nil {
				return err
			}
			// Prometheus verifies the members with this copy: one of another
			// CA says the folder is another cluster's.
			path := r.monitoringPath(layout.MonitoringCA)
			have, err := r.ReadFile(path)
			if err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			if !certs.SameCert(have, certs.EncodeCert(ca.Cert)) {
				certPath, _ := r.caPaths()
				return fmt.Errorf("%s is not the CA certificate %s; OUT/%s belongs to another cluster", path, certPath, layout.MonitoringDir)
			}
			return nil
		},
		Run: func(r *Runner) error {
			if r.NodeMode() && r.opts.Root == "" && r.hasMonitoring() {
				r.Logf("[renew] Not renewing %s in %s in a --node run: `etcd-staticpod certs renew %s` renews it", p.Name, r.bundle().Monitoring(), p.Name)
			}
			if r.NodeMode() || !r.hasMonitoring() {
				return nil
			}
			if path := p.Files.Cert(r.bundle().Monitoring()); !r.due(path) {
				r.keep(p.Name, layout.MonitoringDir, path)
				return nil
			}
			rn, err := r.renewMonitoringClient()
			if err != nil {
				return err
			}
			r.renewed = append(r.renewed, rn)
			return nil
		},
	}
}

// renewMonitoringClient queues a new monitoring key, then its certificate.
func (r *Runner) renewMonitoringClient() (Renewal, error) {
	p := certs.MonitoringClient()
	c := r.Cluster()
	ca, err := r.authority(true)
	if err != nil {
		return Renewal{}, err
	}
	rn := r.startRenewal(ca, p.Name, layout.MonitoringDir, p.Files.Cert(r.bundle().Monitoring()))
	if r.opts.DryRun {
		r.Logf("[dry-run] would renew %s in %s (key and certificate), valid until %s", p.Name, r.bundle().Monitoring(), rn.NotAfter.Format(time.RFC3339))
		return rn, nil
	}
	key, err := r.pool.Key(c.EncryptionAlgorithm)
	if err != nil {
		return rn, fmt.Errorf("generate %s key: %w", p.Name, err)
	}
	keyPEM, err := certs.EncodeKey(key)
	if err != nil {
		return rn, err
	}
	if rn.New, err = r.writeMonitoringClient(ca, key, keyPEM); err != nil {
		return rn, err
	}
	rn.NotAfter = rn.New.NotAfter
	r.Logf("[renew] Renewed %s in %s: valid until %s", p.Name, r.bundle().Monitoring(), rn.NotAfter.Format(time.RFC3339))
	return rn, nil
}
