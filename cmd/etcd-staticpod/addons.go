package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// addonFlags are init's optional extras: monitoring, scheduled backups and
// the command itself in the bundles. What they set is recorded in
// OUT/cluster.yaml, so a later run with the same --out keeps them.
func addonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "monitoring", Usage: "write OUT/monitoring/: a Prometheus scrape configuration for every member's /metrics over verified TLS, alerting rules, and the client certificate etcd-monitoring-client it uses (--monitoring=false stops it)"},
		&cli.StringFlag{Name: "backup-host", Usage: "give host `NAME` systemd units (etcd-backup.service and .timer) that save a snapshot on a schedule; implies --with-cli"},
		&cli.StringFlag{Name: "backup-schedule", Usage: "when the backup runs, as systemd's OnCalendar=: daily, hourly, Mon..Fri 02:00, *-*-* 03:15:00 (default " + spec.DefaultBackupSchedule + ")"},
		&cli.StringFlag{Name: "backup-keep", Usage: "how many snapshots `N` the backup host keeps, at least 1 (default " + strconv.Itoa(spec.DefaultBackupKeep) + ")"},
		&cli.StringFlag{Name: "backup-dir", Usage: "snapshot folder `DIR` on the backup host (default " + layout.DefaultBackupDir + ")"},
		&cli.BoolFlag{Name: "with-cli", Usage: "put this binary into every host's bundle at /usr/local/bin/etcd-staticpod (0755), for the day-2 commands on the hosts"},
	}
}

// applyAddonFlags sets the spec's extras from the flags given, checking
// each flag's value in its own terms.
func applyAddonFlags(c *cli.Context, cl *spec.Cluster) error {
	if c.IsSet("monitoring") {
		cl.Monitoring = c.Bool("monitoring")
	}
	if c.IsSet("with-cli") {
		cl.InstallCLI = c.Bool("with-cli")
	}
	if c.IsSet("backup-host") {
		name := c.String("backup-host")
		if strings.TrimSpace(name) == "" {
			return badArgs(fmt.Errorf("--backup-host %q: must name a host", name))
		}
		if cl.Backup == nil {
			cl.Backup = &spec.Backup{}
		}
		cl.Backup.Host = name
	}
	for _, name := range []string{"backup-schedule", "backup-keep", "backup-dir"} {
		if c.IsSet(name) && cl.Backup == nil {
			return badArgs(fmt.Errorf("--%s %q: needs --backup-host NAME to say which host runs the backup", name, c.String(name)))
		}
	}
	if c.IsSet("backup-schedule") {
		s := c.String("backup-schedule")
		if err := spec.ValidateBackupSchedule(s); err != nil {
			return badArgs(fmt.Errorf("--backup-schedule %q: %w", s, err))
		}
		cl.Backup.Schedule = s
	}
	if c.IsSet("backup-keep") {
		s := c.String("backup-keep")
		n, err := strconv.Atoi(s)
		if err != nil {
			return badArgs(fmt.Errorf("--backup-keep %q: not a whole number", s))
		}
		if err := spec.ValidateBackupKeep(n); err != nil {
			return badArgs(fmt.Errorf("--backup-keep %q: %w", s, err))
		}
		cl.Backup.Keep = n
	}
	if c.IsSet("backup-dir") {
		d := c.String("backup-dir")
		if err := spec.ValidateBackupDir(d); err != nil {
			return badArgs(fmt.Errorf("--backup-dir %q: %w", d, err))
		}
		cl.Backup.Dir = d
	}
	return nil
}

// validateBackupHost names the flag when --backup-host names no host of
// the spec, or --backup-dir lies in the data folder: what is only known
// once the whole spec is.
func validateBackupHost(c *cli.Context, cl *spec.Cluster) error {
	if c.IsSet("backup-dir") {
		if err := cl.CheckBackupDirOutsideData(c.String("backup-dir")); err != nil {
			return badArgs(fmt.Errorf("--backup-dir %q: %w", c.String("backup-dir"), err))
		}
	}
	if !c.IsSet("backup-host") {
		return nil
	}
	name := c.String("backup-host")
	if _, ok := cl.Host(name); ok {
		return nil
	}
	names := make([]string, len(cl.Hosts))
	for i, h := range cl.Hosts {
		names[i] = h.Name
	}
	return badArgs(fmt.Errorf("--backup-host %q: no such host (hosts: %s)", name, strings.Join(names, ", ")))
}

// printAddonCommands says what the extras need once the bundles are on
// the hosts.
func printAddonCommands(w io.Writer, out string, cl *spec.Cluster) {
	if b := cl.Backup; b != nil {
		if h, ok := cl.Host(b.Host); ok {
			fmt.Fprintf(w, "Start the scheduled backups on %s once its bundle is unpacked (snapshots into %s, %s, keeping %d):\n", h.Name, b.Dir, b.Schedule, b.Keep)
			fmt.Fprintf(w, "  %s\n", shellcmd.Join("ssh", shellcmd.SSHTarget("root", h.Address), "systemctl enable --now "+layout.BackupTimerName))
		}
	}
	if cl.Monitoring {
		fmt.Fprintf(w, "For Prometheus: copy %s/%s/ (it holds a client key: keep it private) to the Prometheus server and load its %s, or merge its job into yours.\n",
			out, layout.MonitoringDir, layout.MonitoringConfig)
	}
}
