package phases

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// unitPhase is what a runtime contributes from outside the engine: a phase
// that renders a file per host from the spec into the run's queue.
func unitPhase(refuse error) Phase {
	const path = "/etc/systemd/system/etcd.service"
	return Phase{
		Name:  "unit",
		Short: "Write the etcd systemd unit for every host",
		Check: func(r *Runner) error { return refuse },
		Run: func(r *Runner) error {
			for _, h := range r.Hosts() {
				unit := "[Service]\nExecStart=/usr/local/bin/etcd --name " + h.Name + "\n"
				if err := r.WriteFile(r.HostPath(h, path), []byte(unit), layout.ModeFile, layout.ModeDir); err != nil {
					return err
				}
				r.Logf("[unit] Wrote %s for %s", path, h.Name)
			}
			return nil
		},
	}
}

// TestRuntimeAddsPhase: a phase added to init's tree from outside runs
// between the phases it was put between, its files commit with the others
// and go into the archives, --skip-phases and the help know it, and its
// check refuses the whole run before anything is written.
func TestRuntimeAddsPhase(t *testing.T) {
	tree, err := List().InsertAfter("etcd", unitPhase(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tree.Help("init"), "\nunit                      Write the etcd systemd unit for every host\n") {
		t.Errorf("help:\n%s", tree.Help("init"))
	}
	c := guideCluster(t)
	out := t.TempDir()
	var log bytes.Buffer
	r, err := NewRunner(Options{Cluster: c, Out: out, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := tree.Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ps); err != nil {
		t.Fatal(err)
	}
	lines := log.String()
	etcd, unit, kubeadm := strings.Index(lines, "[etcd] "), strings.Index(lines, "[unit] "), strings.Index(lines, "[kubeadm-config] ")
	if !(etcd >= 0 && etcd < unit && unit < kubeadm) {
		t.Errorf("the unit phase did not run between etcd and kubeadm-config:\n%s", lines)
	}
	for _, h := range c.Hosts {
		b, err := os.ReadFile(filepath.Join(out, h.Name, "etc/systemd/system/etcd.service"))
		if err != nil || !strings.Contains(string(b), "--name "+h.Name) {
			t.Errorf("%s: %q, %v", h.Name, b, err)
		}
		checkArchive(t, filepath.Join(out, h.Name+".tar.gz"), filepath.Join(out, h.Name))
	}

	skipped, err := tree.Select([]string{"unit"})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != len(ps)-1 {
		t.Errorf("skipping unit left %d of %d phases", len(skipped), len(ps))
	}

	refused, _ := List().InsertAfter("etcd", unitPhase(errors.New("unit: the spec asks for no systemd")))
	fresh := filepath.Join(t.TempDir(), "fresh")
	r, err = NewRunner(Options{Cluster: c, Out: fresh})
	if err != nil {
		t.Fatal(err)
	}
	ps, _ = refused.Select(nil)
	if err := r.Run(ps); !badinput.Is(err) || !strings.Contains(err.Error(), "no systemd") {
		t.Errorf("got %v", err)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("a refused run made %s: %v", fresh, err)
	}
}
