package snapshot_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/snapshot"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// TestRevisionBumpIsBounded: a bump that could wrap etcd's int64 revision
// is bad input, refused before the snapshot is read or anything written.
func TestRevisionBumpIsBounded(t *testing.T) {
	c := &spec.Cluster{Hosts: []spec.Host{{Name: "etcd01", Address: "10.0.0.1"}}}
	c.SetDefaults()
	out := t.TempDir()
	_, err := snapshot.Restore(snapshot.RestoreOptions{Cluster: c, Snapshot: filepath.Join(out, "none.db"), Out: out, RevisionBump: snapshot.MaxRevisionBump + 1})
	if !badinput.Is(err) || !strings.Contains(err.Error(), `--bump-revision "4611686018427387905": at most 4611686018427387904`) {
		t.Fatalf("got %v", err)
	}
}
