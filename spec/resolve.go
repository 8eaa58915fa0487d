package spec

import (
	"errors"
	"fmt"
	"os"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// Source says where a command's spec comes from. Resolve applies, in
// order: the file (Config, else the spec recorded in Out), the hosts and
// settings the command line gives over it, the defaults, Check, and
// validation.
type Source struct {
	// Config is the spec file given (--config); "" means the one recorded
	// in Out, when there is one.
	Config string
	// Out is the bundle folder (--out) whose recorded spec stands in for
	// a missing Config.
	Out string
	// Required refuses to go on without a spec file. Without it and
	// without a file, the spec is made from Hosts and Override alone, or,
	// when neither is given, there is none.
	Required bool
	// Hosts, when not nil, replace the file's hosts; a host of the same
	// name and address keeps the extra SANs the file gives it.
	Hosts []Host
	// Override applies the command line's settings over the file's,
	// before the defaults.
	Override func(*Cluster) error
	// Check looks at the defaulted spec before validation, for checks
	// whose error names a flag rather than a field.
	Check func(*Cluster) error
}

// Resolved is the spec a command works from.
type Resolved struct {
	*Cluster
	// Path is the file read: Config, or the spec recorded in Out; "" when
	// the spec comes from flags alone.
	Path string
	// Warnings are what validation found worth saying, not refusing.
	Warnings []string
}

// Resolve loads, merges, defaults and validates the spec for a command. It
// returns nil and no error when Source names no spec and Required is false.
// Every error is bad input (exit 2) and names the flag, file or field it
// is about; a spec that came from a file alone is named in validation
// errors, one that flags changed is not (the value may be a flag's).
func Resolve(src Source) (*Resolved, error) {
	path, err := src.path()
	if err != nil {
		return nil, err
	}
	if path == "" && src.Hosts == nil && src.Override == nil {
		return nil, nil
	}
	c := &Cluster{}
	if path != "" {
		if c, err = Load(path); err != nil {
			return nil, badinput.Wrap(err)
		}
	}
	merged := false
	if src.Hosts != nil {
		c.Hosts = carrySANs(src.Hosts, c)
		merged = true
	}
	if src.Override != nil {
		if err := src.Override(c); err != nil {
			return nil, badinput.Wrap(err)
		}
		merged = true
	}
	c.SetDefaults()
	if src.Check != nil {
		if err := src.Check(c); err != nil {
			return nil, badinput.Wrap(err)
		}
	}
	warnings, err := c.Validate()
	if err != nil {
		if path != "" && !merged {
			err = fmt.Errorf("cluster spec %s: %w", path, err)
		}
		return nil, badinput.Wrap(err)
	}
	return &Resolved{Cluster: c, Path: path, Warnings: warnings}, nil
}

// path is the spec file to read, "" for none.
func (src Source) path() (string, error) {
	if src.Config != "" {
		return src.Config, nil
	}
	if src.Out == "" {
		if src.Required {
			return "", badinput.Errorf("no cluster spec: give --config FILE or --out DIR, the bundle folder init wrote")
		}
		return "", nil
	}
	if fi, err := os.Stat(src.Out); err == nil && !fi.IsDir() {
		return "", badinput.Errorf("--out %q: not a folder; give the bundle folder init wrote, or --config FILE", src.Out)
	}
	recorded := layout.Bundle(src.Out).Spec()
	_, err := os.Stat(recorded)
	switch {
	case err == nil:
		return recorded, nil
	case !src.Required:
		return "", nil
	case errors.Is(err, os.ErrNotExist):
		return "", badinput.Errorf("--out %q: no %s there; give the bundle folder init wrote, or --config FILE", src.Out, layout.SpecFile)
	default:
		return "", badinput.Errorf("--out %q: %s: %v", src.Out, layout.SpecFile, safefile.Reason(err))
	}
}

// carrySANs gives each of hosts that the file's spec c has, by the same
// name and address, the extra SANs the file gives it.
func carrySANs(hosts []Host, c *Cluster) []Host {
	out := make([]Host, len(hosts))
	for i, h := range hosts {
		if old, ok := c.Host(h.Name); ok && old.Address == h.Address {
			h.ServerCertSANs, h.PeerCertSANs = old.ServerCertSANs, old.PeerCertSANs
		}
		out[i] = h
	}
	return out
}
