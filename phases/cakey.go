package phases

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/workflow"
)

// CAKeyCopyError is a copy of the CA's private key found where it could
// leave the machine: in a host folder, control-plane/, a file about to be
// written there, or an archive being packed. Bad input: the command exits 2.
type CAKeyCopyError struct {
	Path  string
	Store string
}

func (e *CAKeyCopyError) Error() string {
	return fmt.Sprintf("%s is a copy of the etcd CA's private key; remove it: the CA key stays in %s and never goes into a host folder", e.Path, e.Store)
}

// Unwrap marks the refusal as bad input.
func (e *CAKeyCopyError) Unwrap() error {
	return &badinput.Error{Err: errors.New("a copy of the CA key")}
}

func (r *Runner) caKeyCopy(path string) error {
	_, keyPath := r.caPaths()
	return &CAKeyCopyError{Path: path, Store: filepath.Dir(keyPath)}
}

// caKeyFinder recognises the CA's private key by its public key; nil while
// there is no readable CA (a new one is made later, or the phases report
// why the one named cannot be used).
func (r *Runner) caKeyFinder() *certs.KeyFinder {
	ca, err := r.authority(false)
	if err != nil {
		return nil
	}
	return certs.NewKeyFinder(ca.Cert.PublicKey)
}

// notCAKey refuses a host key, read from path, that is the CA's key.
func (r *Runner) notCAKey(path string, key crypto.Signer) error {
	if f := r.caKeyFinder(); f != nil && f.IsKey(key) {
		return r.caKeyCopy(path)
	}
	return nil
}

// checkNoCAKeyCopies refuses to start while a host folder this run writes,
// or control-plane/, holds the CA's private key under any name: those
// folders are copied to other machines. Files are recognised by content,
// and only those holding a PEM private key block are parsed. A node's own
// root (--root) is not walked; its keys are checked one by one as they are
// read.
func (r *Runner) checkNoCAKeyCopies() error {
	if r.opts.Root != "" {
		return nil
	}
	f := r.caKeyFinder()
	if f == nil {
		return nil
	}
	var dirs []string
	for _, h := range r.Hosts() {
		dirs = append(dirs, r.bundle().Host(h.Name))
	}
	if !r.NodeMode() {
		dirs = append(dirs, r.bundle().ControlPlane())
	}
	for _, dir := range dirs {
		// etcd data never ships and may be large: not read.
		tree, _ := r.withoutEtcdData(os.DirFS(dir))
		err := fs.WalkDir(tree, ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				if name == "." && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipAll
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil // links and special files never ship: packing refuses them
			}
			path := filepath.Join(dir, filepath.FromSlash(name))
			data, err := safefile.ReadFile(path, archive.MaxFile)
			if err != nil {
				return err
			}
			if f.Holds(data) {
				return r.caKeyCopy(path)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// checkQueued refuses to write a copy of the CA's key anywhere but the CA
// key file itself.
func (r *Runner) checkQueued(files []workflow.File) error {
	f := r.caKeyFinder()
	if f == nil {
		return nil
	}
	_, keyPath := r.caPaths()
	for _, p := range files {
		if p.Path != keyPath && f.Holds(p.Data) {
			return r.caKeyCopy(p.Path)
		}
	}
	return nil
}

// ShippingCheck returns the check an archive's packer runs on every file
// it packs: no copy of the CA's private key leaves in an archive.
func (r *Runner) ShippingCheck() func(path string, data []byte) error {
	f := r.caKeyFinder()
	return func(path string, data []byte) error {
		if f != nil && f.Holds(data) {
			return r.caKeyCopy(path)
		}
		return nil
	}
}
