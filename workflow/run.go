package workflow

import (
	"bytes"
	"fmt"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
)

// Data is what a run shares among its phases. It embeds *Queue, which
// holds the run's files, and adds what the whole run needs around the
// phases.
type Data interface {
	queue() *Queue
	// Before runs ahead of every check; its error refuses the run as bad
	// input, as a check's does.
	Before() error
	// Ready runs once every selected phase's check has passed, before the
	// first phase runs; done runs when the run ends.
	Ready() (done func(), err error)
	// Verify runs on the queued files just before they are committed.
	Verify(files []File) error
}

// Run checks every phase, runs them in order, then commits the queue. A
// failure at any point leaves the disk as it was: nothing is written before
// the commit, and what the commit made is removed. The run's progress lines
// are printed once it has succeeded.
func Run[D Data](d D, ps []Phase[D]) error {
	q := d.queue()
	q.progress = &bytes.Buffer{}
	defer func() { q.progress = nil }()
	if err := run(d, q, ps); err != nil {
		return err
	}
	_, err := q.opts.Log.Write(q.progress.Bytes())
	return err
}

func run[D Data](d D, q *Queue, ps []Phase[D]) error {
	if err := q.checkDestination(); err != nil {
		return err
	}
	if err := d.Before(); err != nil {
		return badinput.Wrap(err)
	}
	for _, p := range ps {
		if p.Check != nil {
			// A check refuses before anything is written: the spec, the
			// flags and the files already there do not fit together.
			if err := p.Check(d); err != nil {
				return badinput.Wrap(err)
			}
		}
	}
	done, err := d.Ready()
	if err != nil {
		return err
	}
	defer done()
	for _, p := range ps {
		if p.Run == nil {
			continue
		}
		if err := q.interrupted(); err != nil {
			q.rollback()
			return err
		}
		if err := p.Run(d); err != nil {
			q.rollback()
			return fmt.Errorf("phase %s: %w", p.Name, err)
		}
	}
	if err := d.Verify(q.pending); err != nil {
		q.rollback()
		return err
	}
	if err := q.commit(); err != nil {
		q.rollback()
		return err
	}
	return nil
}
