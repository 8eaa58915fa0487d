// Package phases holds the bodies of the phases that write a cluster's
// files (init's tree, certs renew's) and the Runner they share. The engine
// that selects and runs them is package workflow; the CLI derives
// `init phase ...` commands, --skip-phases and init's help from the tree.
package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/workflow"
)

// Phase is one step of a workflow of phases on a Runner.
type Phase = workflow.Phase[*Runner]

// Tree is a workflow's phases in order.
type Tree = workflow.Tree[*Runner]

// FlagGroup is a set of related settings.
type FlagGroup = workflow.FlagGroup

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

// Runner is what the phases share during a run: the queue of files (the
// engine's), the options, and the CA once loaded.
type Runner struct {
	*workflow.Queue
	opts Options
	ca   *certs.Authority
	pool *certs.KeyPool
	// keys counts the private keys the selected phases will make, as their
	// checks find, so that all of a run's keys are made at once on every
	// core.
	keys int
	// rendered holds per-host documents by kind; see perHost.
	rendered map[string][][]byte
	// caKeyGuarded is set once the CA key's mode has been seen to.
	caKeyGuarded bool
	// caEndSaid records that the run said leaves end with the CA.
	caEndSaid bool
	// renewed are the certificates the renew phases replaced.
	renewed []Renewal
	// within, when not negative, limits a renewal to the certificates
	// that are due within it (see RenewDue).
	within time.Duration
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
		opts.Out = layout.DefaultOut
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
	q := workflow.NewQueue(workflow.QueueOptions{
		Out: opts.Out, Root: opts.Root, DryRun: opts.DryRun,
		Log: opts.Log, Warn: opts.Warn, Context: opts.Context, WriteDelay: opts.WriteDelay,
	})
	return &Runner{Queue: q, opts: opts, within: -1}, nil
}

// Cluster is the spec the run works from.
func (r *Runner) Cluster() *spec.Cluster { return r.opts.Cluster }

// Run runs the phases ps (leaves, in order) with the engine: every check,
// then every phase, then one commit of the files they queued.
func (r *Runner) Run(ps []Phase) error { return workflow.Run(r, ps) }

// Before refuses to start while a host folder holds a copy of the CA key.
func (r *Runner) Before() error {
	r.keys = 0
	return r.checkNoCAKeyCopies()
}

// Ready makes, on every core, the keys the checks counted.
func (r *Runner) Ready() (func(), error) {
	if r.keys == 0 {
		return func() {}, nil
	}
	r.pool = certs.NewKeyPool(r.opts.Cluster.EncryptionAlgorithm, r.keys)
	return r.pool.Close, nil
}

// Verify refuses to write a copy of the CA's key anywhere but the CA key
// file itself.
func (r *Runner) Verify(files []workflow.File) error { return r.checkQueued(files) }

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
	return r.bundle().Host(h.Name)
}

// where says where files written for hosts go, for log lines: under the
// node's root with --root, else into the hosts' bundles.
func (r *Runner) where(hs []spec.Host) string {
	if r.opts.Root != "" {
		return "on " + hostNames(hs) + " under " + r.opts.Root
	}
	return "in the bundle of " + hostNames(hs)
}

// HostPath is a path on host h (absolute on the node) inside its root.
func (r *Runner) HostPath(h spec.Host, nodePath string) string {
	return filepath.Join(r.HostRoot(h), nodePath)
}

// CertPath is a certificate's base path (without .crt/.key) on host h.
func (r *Runner) CertPath(h spec.Host, p certs.Profile) string {
	return p.Files.Base(r.HostPath(h, r.opts.Cluster.CertDir))
}

// CAStore is the folder holding the CA certificate and key.
func (r *Runner) CAStore() string { return r.bundle().CAStore() }

// bundle is the bundle folder's layout.
func (r *Runner) bundle() layout.Bundle { return layout.Bundle(r.opts.Out) }

// Out is the bundle folder.
func (r *Runner) Out() string { return r.opts.Out }

// now is the run's clock.
func (r *Runner) now() time.Time { return r.opts.Now() }
