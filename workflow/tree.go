// Package workflow is the engine that runs a command as an ordered tree of
// phases, as kubeadm's workflow package does: it owns the tree (paths,
// selection, --skip-phases, help), the order of a run (every check before
// any phase runs) and the run's queue of files, committed together at the
// end. What each phase does lives with the phase, not here: a runtime adds
// its phases to a tree without changing this package.
package workflow

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// FlagGroup names a set of related settings a phase reads, so that its
// command shows only the flags that matter to it. The engine does not
// interpret it.
type FlagGroup string

// Phase is one step of a workflow, or a group of steps. D is the run's
// shared data, handed to every check and run.
type Phase[D any] struct {
	Name    string
	Short   string
	Long    string
	Example string
	Flags   []FlagGroup
	// Children are the steps of a group; a group itself has no Run.
	Children []Phase[D]
	// Check runs, for every selected phase, before any phase runs, so
	// that a conflict found late leaves the disk untouched. A check's
	// error is bad input.
	Check func(D) error
	Run   func(D) error
	// RunAllChildren adds an `all` subcommand, as kubeadm's certs phase has.
	RunAllChildren bool
}

// Leaves returns p itself, or its leaf descendants in order: what running
// p means.
func (p Phase[D]) Leaves() []Phase[D] {
	if len(p.Children) == 0 {
		return []Phase[D]{p}
	}
	var out []Phase[D]
	for _, ch := range p.Children {
		out = append(out, ch.Leaves()...)
	}
	return out
}

// Tree is a workflow's top-level phases in the order they run.
type Tree[D any] []Phase[D]

// Walk calls fn for every phase, parents before their children, with the
// phase's slash path (certs/etcd-ca) and its depth (0 at the top).
func (t Tree[D]) Walk(fn func(path string, depth int, p Phase[D])) {
	var walk func(prefix string, depth int, ps []Phase[D])
	walk = func(prefix string, depth int, ps []Phase[D]) {
		for _, p := range ps {
			fn(prefix+p.Name, depth, p)
			walk(prefix+p.Name+"/", depth+1, p.Children)
		}
	}
	walk("", 0, t)
}

// Paths lists every phase's path in order.
func (t Tree[D]) Paths() []string {
	var out []string
	t.Walk(func(path string, _ int, _ Phase[D]) { out = append(out, path) })
	return out
}

// Names lists the top-level phases' names in order.
func (t Tree[D]) Names() []string {
	out := make([]string, len(t))
	for i, p := range t {
		out[i] = p.Name
	}
	return out
}

// Select returns the leaf phases in order, less those skip names by path
// (a skipped group skips its children). An unknown path is an error that
// lists the known ones.
func (t Tree[D]) Select(skip []string) ([]Phase[D], error) {
	known := map[string]bool{}
	for _, path := range t.Paths() {
		known[path] = true
	}
	for _, s := range skip {
		if !known[s] {
			return nil, fmt.Errorf("--skip-phases %q: no such phase (known: %s)", s, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		}
	}
	var keep []Phase[D]
	t.Walk(func(path string, _ int, p Phase[D]) {
		if len(p.Children) > 0 {
			return
		}
		for _, s := range skip {
			if path == s || strings.HasPrefix(path, s+"/") {
				return
			}
		}
		keep = append(keep, p)
	})
	return keep, nil
}

// InsertAfter returns the tree with ps added right after the top-level
// phase named after ("" puts them first): how a runtime contributes its own
// phases.
func (t Tree[D]) InsertAfter(after string, ps ...Phase[D]) (Tree[D], error) {
	at := 0
	if after != "" {
		i := slices.IndexFunc(t, func(p Phase[D]) bool { return p.Name == after })
		if i < 0 {
			return nil, fmt.Errorf("no phase %q to insert after (known: %s)", after, strings.Join(t.Names(), ", "))
		}
		at = i + 1
	}
	for _, p := range ps {
		if slices.ContainsFunc(t, func(q Phase[D]) bool { return q.Name == p.Name }) {
			return nil, fmt.Errorf("phase %q is there already", p.Name)
		}
	}
	return slices.Insert(slices.Clone(t), at, ps...), nil
}

// Help is the phase tree as `kubeadm init --help` prints it: one line per
// phase, children indented under their parent with a leading slash, the
// short descriptions in one column.
func (t Tree[D]) Help(command string) string {
	const gap = 2
	use := func(path string, depth int, p Phase[D]) string {
		if depth == 0 {
			return p.Name
		}
		return "/" + p.Name
	}
	width := 0
	t.Walk(func(path string, depth int, p Phase[D]) { width = max(width, len(use(path, depth, p))) })
	var b strings.Builder
	fmt.Fprintf(&b, "The %q command executes the following phases:\n```\n", command)
	t.Walk(func(path string, depth int, p Phase[D]) {
		u := use(path, depth, p)
		b.WriteString(strings.Repeat(" ", gap*depth) + u + strings.Repeat(" ", width-len(u)+gap) + p.Short + "\n")
	})
	b.WriteString("```")
	return b.String()
}
