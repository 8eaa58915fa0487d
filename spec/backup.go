package spec

import (
	"fmt"
	"path"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/calendar"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// Defaults of scheduled backups.
const (
	DefaultBackupSchedule = "daily"
	DefaultBackupKeep     = 7
)

// Backup is a snapshot saved on one host on a schedule, by systemd.
type Backup struct {
	// Host is the host whose bundle gets the units.
	Host string `yaml:"host" json:"host"`
	// Schedule is the timer's OnCalendar= (systemd.time(7)), e.g. daily.
	Schedule string `yaml:"schedule,omitempty" json:"schedule,omitempty"`
	// Keep is how many snapshots stay in Dir; older ones are removed.
	Keep int `yaml:"keep,omitempty" json:"keep,omitempty"`
	// Dir is the folder on the host the snapshots go to.
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
}

func (b *Backup) setDefaults() {
	setString(&b.Schedule, DefaultBackupSchedule)
	setString(&b.Dir, layout.DefaultBackupDir)
	if b.Keep == 0 {
		b.Keep = DefaultBackupKeep
	}
}

// ShipsCLI reports whether the bundles carry this command.
func (c *Cluster) ShipsCLI() bool { return c.InstallCLI || c.Backup != nil }

func (c *Cluster) validateBackup() error {
	b := c.Backup
	if b == nil {
		return nil
	}
	if _, ok := c.Host(b.Host); !ok {
		names := make([]string, len(c.Hosts))
		for i, h := range c.Hosts {
			names[i] = h.Name
		}
		return fmt.Errorf("backup.host %q: no such host (hosts: %s)", b.Host, strings.Join(names, ", "))
	}
	if err := ValidateBackupSchedule(b.Schedule); err != nil {
		return fmt.Errorf("backup.schedule %q: %w", b.Schedule, err)
	}
	if err := ValidateBackupKeep(b.Keep); err != nil {
		return fmt.Errorf("backup.keep %d: %w", b.Keep, err)
	}
	if err := ValidateBackupDir(b.Dir); err != nil {
		return fmt.Errorf("backup.dir %q: %w", b.Dir, err)
	}
	if err := c.CheckBackupDirOutsideData(b.Dir); err != nil {
		return fmt.Errorf("backup.dir %q: %w", b.Dir, err)
	}
	return nil
}

// CheckBackupDirOutsideData refuses a snapshot folder in or beside the etcd
// data folder, which the archives leave out.
func (c *Cluster) CheckBackupDirOutsideData(dir string) error {
	if d := c.Etcd.DataDir; dir == d || strings.HasPrefix(dir, d+"/") || strings.HasPrefix(dir, d+".") {
		return fmt.Errorf("must be outside the etcd data folder %s", d)
	}
	return nil
}

// ValidateBackupSchedule checks a systemd calendar expression.
func ValidateBackupSchedule(s string) error {
	if err := calendar.Check(s); err != nil {
		return fmt.Errorf("not a systemd OnCalendar= expression such as daily, Mon..Fri 02:00 or *-*-* 03:15:00 (%v)", err)
	}
	return nil
}

// ValidateBackupKeep checks how many snapshots to keep.
func ValidateBackupKeep(n int) error {
	if n < 1 {
		return fmt.Errorf("must be at least 1")
	}
	return nil
}

// ValidateBackupDir checks the snapshot folder on the host: absolute, and
// plain enough to stand in a unit file's command line unquoted.
func ValidateBackupDir(d string) error {
	if !strings.HasPrefix(d, "/") || path.Clean(d) != d || d == "/" {
		return fmt.Errorf("must be an absolute, clean path below /")
	}
	if strings.ContainsAny(d, " \t\n\"'\\$%;") {
		return fmt.Errorf("must not hold spaces, quotes, backslashes, $, %% or ;")
	}
	return nil
}
