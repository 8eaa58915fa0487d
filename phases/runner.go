// Package phases is the ordered list of what `init` does and the runner that
// executes it. Phases are data: the CLI derives `init phase ...` commands and
// --skip-phases from the list.
package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"golang.org/x/sys/unix"
)

// Phase is one step of init, or a group of steps.
type Phase struct {
	Name    string
	Short   string
	Long    string
	Example string
	// Flags names the flag groups the phase reads, so its command shows
	// only the flags that matter to it.
	Flags []FlagGroup
	// Children are the steps of a group; a group itself has no Run.
	Children []Phase
	// Check runs, for every selected phase, before any phase writes, so
	// that a conflict found late leaves the disk untouched.
	Check func(r *Runner) error
	// Keys counts the private keys Run will make, so that all of a run's
	// keys can be made at once on every core.
	Keys func(r *Runner) int
	Run  func(r *Runner) error
	// RunAllChildren adds an `all` subcommand, as kubeadm's certs phase has.
	RunAllChildren bool
}

// FlagGroup is a set of related settings.
type FlagGroup string

// Flag groups phases can ask for.
const (
	FlagsCerts        FlagGroup = "certs"
	FlagsCA           FlagGroup = "ca"
	FlagsEtcd         FlagGroup = "etcd"
	FlagsKubelet      FlagGroup = "kubelet"
	FlagsControlPlane FlagGroup = "control-plane"
)

// Options is what a run works from; the CLI fills it.
type Options struct {
	Cluster *spec.Cluster
	// Out is the bundle folder.
	Out string
	// Node, when set, limits the run to that host.
	Node string
	// Root, when set, receives the node's files instead of Out/<name>
	// (e.g. "/" on the node itself).
	Root string
	// CACert and CAKey name a CA kept outside Out/pki/etcd.
	CACert, CAKey string
	DryRun        bool
	// Log receives the progress lines of a run that succeeded: a run that
	// fails prints only its error.
	Log io.Writer
	// Warn receives warnings at once (default: Log).
	Warn io.Writer
	// CLIBinary is the binary the cli phase copies into the bundles;
	// empty means this process's own.
	CLIBinary string
	Now       func() time.Time
	// Context calls a run off (SIGINT, SIGTERM): before its files are put
	// in place the run rolls back and Run returns the context's cause; once
	// the renames have begun they finish.
	Context context.Context
	// WriteDelay holds the run with its temp files on disk, just before
	// they are put in place: tests use it to widen that window.
	WriteDelay time.Duration
}

// Runner executes phases with shared state: the CA once loaded.
type Runner struct {
	opts Options
	ca   *certs.Authority
	pool *certs.KeyPool
	// pending are the files queued and not yet written.
	pending []pendingFile
	// created lists what this run made, oldest first.
	created []string
	// rendered holds per-host documents by kind; see perHost.
	rendered map[string][][]byte
	// trees check that writes stay inside OUT or --root, by root.
	trees map[string]*safefile.Tree
	// progress holds the lines Logf printed during Run, until it succeeds.
	progress *bytes.Buffer
	// caKeyGuarded is set once the CA key's mode has been seen to.
	caKeyGuarded bool
	// caEndSaid records that the run said leaves end with the CA.
	caEndSaid bool
}

// NewRunner checks the options that every phase relies on.
func NewRunner(opts Options) (*Runner, error) {
	if opts.Cluster == nil {
		return nil, errors.New("no cluster spec")
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Warn == nil {
		opts.Warn = opts.Log
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Context == nil {
		opts.Context = context.Background()
	}
	if opts.Out == "" {
		opts.Out = "etcd-bundles"
	}
	if opts.Root != "" && opts.Node == "" {
		return nil, fmt.Errorf("--root %q needs --node to say which host this is", opts.Root)
	}
	if opts.Node != "" {
		if _, ok := opts.Cluster.Host(opts.Node); !ok {
			return nil, fmt.Errorf("--node %q: no such host in the cluster spec", opts.Node)
		}
	}
	if (opts.CACert == "") != (opts.CAKey == "") {
		return nil, fmt.Errorf("--ca-cert %q and --ca-key %q: give both or neither", opts.CACert, opts.CAKey)
	}
	return &Runner{opts: opts}, nil
}

// Cluster is the spec the run works from.
func (r *Runner) Cluster() *spec.Cluster { return r.opts.Cluster }

// Selected returns the leaf phases of list in order, by slash path, minus
// those skipped (a skipped group skips its children).
func Selected(list []Phase, skip []string) ([]string, map[string]Phase, error) {
	all := map[string]Phase{}
	var order []string
	var walk func(prefix string, ps []Phase)
	walk = func(prefix string, ps []Phase) {
		for _, p := range ps {
			path := prefix + p.Name
			all[path] = p
			if len(p.Children) == 0 {
				order = append(order, path)
			}
			walk(path+"/", p.Children)
		}
	}
	walk("", list)
	for _, s := range skip {
		if _, ok := all[s]; !ok {
			return nil, nil, fmt.Errorf("--skip-phases %q: no such phase (known: %s)", s, strings.Join(slices.Sorted(maps.Keys(all)), ", "))
		}
	}
	var keep []string
	for _, path := range order {
		skipped := false
		for _, s := range skip {
			if path == s || strings.HasPrefix(path, s+"/") {
				skipped = true
			}
		}
		if !skipped {
			keep = append(keep, path)
		}
	}
	return keep, all, nil
}

// Run checks every phase, then runs them in order. Its progress lines are
// printed once the run has succeeded.
func (r *Runner) Run(ps []Phase) error {
	r.progress = &bytes.Buffer{}
	defer func() { r.progress = nil }()
	if err := r.run(ps); err != nil {
		return err
	}
	_, err := r.opts.Log.Write(r.progress.Bytes())
	return err
}

func (r *Runner) run(ps []Phase) error {
	if err := r.checkDestination(); err != nil {
		return err
	}
	// A copy of the CA key where a host's files go is a local file in the
	// way: refused as bad input.
	if err := r.checkNoCAKeyCopies(); err != nil {
		return badinput.Wrap(err)
	}
	keys := 0
	for _, p := range ps {
		if p.Check != nil {
			// A check refuses before anything is written: the spec, the
			// flags and the files already there do not fit together.
			if err := p.Check(r); err != nil {
				return badinput.Wrap(err)
			}
		}
		if p.Keys != nil {
			keys += p.Keys(r)
		}
	}
	if keys > 0 {
		r.pool = certs.NewKeyPool(r.opts.Cluster.EncryptionAlgorithm, keys)
		defer r.pool.Close()
	}
	// Files are queued across phases and written together, so a run that
	// fails before the end has written nothing, and one pair of syncs
	// covers them all. Phases that pack earlier phases' output read it
	// through staged.
	for _, p := range ps {
		if p.Run == nil {
			continue
		}
		if err := r.interrupted(); err != nil {
			r.pending = nil
			r.rollback()
			return err
		}
		if err := p.Run(r); err != nil {
			r.pending = nil
			r.rollback()
			return fmt.Errorf("phase %s: %w", p.Name, err)
		}
	}
	if err := r.flush(); err != nil {
		r.rollback()
		return err
	}
	return nil
}

// interrupted is the error of a run called off, nil while it is not.
func (r *Runner) interrupted() error {
	if r.opts.Context.Err() == nil {
		return nil
	}
	return fmt.Errorf("%w: stopped before putting any file in place; what the run had made is removed", context.Cause(r.opts.Context))
}

// queued returns the data last queued for path.
func (r *Runner) queued(path string) ([]byte, bool) {
	for i := len(r.pending) - 1; i >= 0; i-- {
		if r.pending[i].Path == path {
			return r.pending[i].Data, true
		}
	}
	return nil, false
}

// readFile reads what a phase sees at path: the data queued for it, or the
// file on disk.
func (r *Runner) readFile(path string) ([]byte, error) {
	if b, ok := r.queued(path); ok {
		return b, nil
	}
	return safefile.Read(path)
}

// Hosts are the hosts this run writes for.
func (r *Runner) Hosts() []spec.Host {
	if r.opts.Node != "" {
		h, _ := r.opts.Cluster.Host(r.opts.Node)
		return []spec.Host{h}
	}
	return r.opts.Cluster.Hosts
}

// NodeMode reports whether the run writes one node's files in place.
func (r *Runner) NodeMode() bool { return r.opts.Node != "" }

// HostRoot is the folder that stands for a host's filesystem root.
func (r *Runner) HostRoot(h spec.Host) string {
	if r.opts.Root != "" {
		return r.opts.Root
	}
	return filepath.Join(r.opts.Out, h.Name)
}

// HostPath is a path on host h (absolute on the node) inside its root.
func (r *Runner) HostPath(h spec.Host, nodePath string) string {
	return filepath.Join(r.HostRoot(h), nodePath)
}

// CertPath is a certificate's base path (without .crt/.key) on host h.
func (r *Runner) CertPath(h spec.Host, p certs.Profile) string {
	return r.HostPath(h, filepath.Join(r.opts.Cluster.CertDir, p.BaseName))
}

// CAStore is the folder holding the CA certificate and key.
func (r *Runner) CAStore() string { return filepath.Join(r.opts.Out, "pki", "etcd") }

// Out is the bundle folder.
func (r *Runner) Out() string { return r.opts.Out }

// Logf prints a progress line.
func (r *Runner) Logf(format string, args ...any) {
	w := r.opts.Log
	if r.progress != nil {
		w = r.progress
	}
	fmt.Fprintf(w, format+"\n", args...)
}

// Warnf prints a warning line at once.
func (r *Runner) Warnf(format string, args ...any) {
	fmt.Fprintf(r.opts.Warn, "warning: "+format+"\n", args...)
}

// checkDestination refuses, before any check reads what is there, a
// destination that cannot hold the run's files: a path through a file, or
// a folder this process cannot write.
func (r *Runner) checkDestination() error {
	if r.opts.Root != "" {
		return CheckDestination("--root", r.opts.Root, r.opts.DryRun)
	}
	return CheckDestination("--out", r.opts.Out, r.opts.DryRun)
}

// CheckDestination refuses, as bad input given as flag, a folder dir that
// cannot hold a run's files: a path through a file, or (unless dryRun) a
// folder this process cannot write or create.
func CheckDestination(flag, dir string, dryRun bool) error {
	existing := dir
	for {
		fi, err := os.Stat(existing)
		if err == nil {
			if !fi.IsDir() {
				if existing == dir {
					return badinput.New(flag, dir, "not a folder")
				}
				return badinput.New(flag, dir, "%s is not a folder", existing)
			}
			break
		}
		if errors.Is(err, syscall.ENOTDIR) {
			// Some parent is a file: name it.
			for p := filepath.Dir(existing); p != filepath.Dir(p); p = filepath.Dir(p) {
				if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
					return badinput.New(flag, dir, "%s is not a folder", p)
				}
			}
			return badinput.New(flag, dir, "a parent is not a folder")
		}
		if !errors.Is(err, os.ErrNotExist) {
			return badinput.New(flag, dir, "%v", unwrapPath(err))
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	if dryRun {
		return nil
	}
	// access(2) answers for the filesystem too: EROFS on a read-only mount.
	if err := unix.Access(existing, unix.W_OK); err != nil {
		if existing == dir {
			return badinput.New(flag, dir, "cannot write here: %v", err)
		}
		return badinput.New(flag, dir, "cannot create it in %s: %v", existing, err)
	}
	return nil
}

// unwrapPath drops the operation and path an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Dir modes as kubeadm leaves them.
const (
	modeDir     = 0o755
	modePrivDir = 0o700
	modeFile    = 0o644
	modeKey     = 0o600
)

// WriteFile queues one output file (or, with --dry-run, says it would write
// it). Queued files are written together, atomically and in order, at the
// end of the run. Missing parents are created 0755 and the file's own folder
// with dirMode.
func (r *Runner) WriteFile(path string, data []byte, mode, dirMode os.FileMode) error {
	if err := r.checkBeneath(filepath.Dir(path)); err != nil {
		return err
	}
	if r.opts.DryRun {
		r.Logf("[dry-run] would write %s (%04o, %d bytes)", path, mode, len(data))
		return nil
	}
	r.pending = append(r.pending, pendingFile{File: atomicfile.File{Path: path, Data: data, Mode: mode}, dirMode: dirMode})
	return nil
}

type pendingFile struct {
	atomicfile.File
	dirMode os.FileMode
}

// flush writes the queued files, noting what did not exist before so that
// a failed run can take it back.
func (r *Runner) flush() error {
	if err := r.checkQueued(); err != nil {
		return err
	}
	plan, err := r.planDirs()
	if err != nil {
		return err
	}
	for _, dir := range plan.order {
		mode := plan.mode[dir]
		if err := os.Mkdir(dir, mode); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		r.created = append(r.created, dir)
		// The exact mode, whatever the umask.
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	files := make([]atomicfile.File, 0, len(r.pending))
	paths := make([]string, 0, len(r.pending))
	for _, f := range r.pending {
		if plan.isNew(f.Path) || !exists(f.Path) {
			r.created = append(r.created, f.Path)
		}
		files = append(files, f.File)
		paths = append(paths, f.Path)
	}
	r.pending = nil
	// Temp files a killed run left beside ours; the caller holds the lock,
	// so no running writer owns them.
	removed, err := atomicfile.RemoveTempsOf(paths)
	if err != nil {
		return err
	}
	for _, p := range removed {
		r.Logf("[cleanup] Removed %s, left by an interrupted run", p)
	}
	staged, err := atomicfile.Stage(files)
	if err != nil {
		return err
	}
	if r.opts.WriteDelay > 0 {
		t := time.NewTimer(r.opts.WriteDelay)
		select {
		case <-t.C:
		case <-r.opts.Context.Done():
			t.Stop()
		}
	}
	// The last moment to call the run off with every target as it was.
	if err := r.interrupted(); err != nil {
		staged.Discard()
		return err
	}
	return staged.Commit()
}

func (r *Runner) mkdirs(path string, mode os.FileMode) error {
	created, err := atomicfile.MkdirAll(path, mode)
	r.created = append(r.created, created...)
	return err
}

// Track records a path a phase is about to create by other means than
// WriteFile, so that a failed run removes it too.
func (r *Runner) Track(path string) {
	if !exists(path) {
		r.created = append(r.created, path)
	}
}

// rollback removes, newest first, every file and folder this run created.
// Files it replaced stay replaced: each is a complete new version.
func (r *Runner) rollback() {
	for i := len(r.created) - 1; i >= 0; i-- {
		_ = os.Remove(r.created[i])
	}
	r.created = nil
}

// MkdirAll creates a folder (or, with --dry-run, says it would).
func (r *Runner) MkdirAll(path string, mode os.FileMode) error {
	if err := r.checkBeneath(path); err != nil {
		return err
	}
	if r.opts.DryRun {
		if _, err := os.Stat(path); err != nil {
			r.Logf("[dry-run] would create folder %s (%04o)", path, mode)
		}
		return nil
	}
	if err := r.mkdirs(filepath.Dir(path), modeDir); err != nil {
		return err
	}
	return r.mkdirs(path, mode)
}

// checkBeneath refuses a folder to write into that a symbolic link takes
// out of the tree it belongs to: --root for a node's files, else OUT. A
// link that stays inside the tree is followed as usual.
func (r *Runner) checkBeneath(dir string) error {
	root := r.opts.Out
	if r.opts.Root != "" && inside(r.opts.Root, dir) {
		root = r.opts.Root
	}
	if !inside(root, dir) {
		return nil // not a folder of ours, such as where --ca-cert is: never written
	}
	if r.trees == nil {
		r.trees = map[string]*safefile.Tree{}
	}
	t := r.trees[root]
	if t == nil {
		t = safefile.NewTree(root)
		r.trees[root] = t
	}
	return t.Check(dir)
}

// inside reports whether path lies lexically in root or is root.
func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// now is the run's clock.
func (r *Runner) now() time.Time { return r.opts.Now() }
