package phases

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// certsPhase is generated from the certificate table: one child per profile.
func certsPhase() Phase {
	ca := certs.CA()
	children := []Phase{{
		Name:  ca.Name,
		Short: "Generate " + ca.Short,
		Long: "Creates the etcd CA in OUT/pki/etcd (ca.crt, ca.key; the folder is 0700) unless one is there already or --ca-cert/--ca-key name one, " +
			"and copies ca.crt (never ca.key) into every host's bundle. An existing CA is checked (a CA, not expired, key matching) and never replaced.",
		Example: "etcd-staticpod init phase certs etcd-ca --hosts etcd01=10.107.88.15,etcd02=10.107.88.16,etcd03=10.107.88.17",
		Flags:   []FlagGroup{FlagsCerts, FlagsCA},
		Check: func(r *Runner) error {
			if r.caToCreate() {
				r.keys++
			}
			return r.checkHostCAs()
		},
		Run: func(r *Runner) error { return r.runCA() },
	}}
	for _, p := range certs.Leaves() {
		children = append(children, Phase{
			Name:  p.Name,
			Short: "Generate " + p.Short + ", for every host",
			Long: fmt.Sprintf("Writes %s and %s under --cert-dir in each host's bundle, signed by the etcd CA. "+
				"An existing certificate that still matches the spec is kept byte for byte; one that does not is an error that says what differs.", p.Files.Cert(""), p.Files.Key("")),
			Example: fmt.Sprintf("etcd-staticpod init phase certs %s --config cluster.yaml", p.Name),
			Flags:   []FlagGroup{FlagsCerts, FlagsCA},
			Check:   func(r *Runner) error { return r.checkLeaves(p) },
			Run:     func(r *Runner) error { return r.runLeaf(p) },
		})
	}
	return Phase{
		Name:           "certs",
		Short:          "Generate the etcd CA and every host's certificates",
		Long:           "The certificates kubeadm v1.36 makes for an etcd member, with the same subjects, SANs, usages and validity.",
		Children:       children,
		RunAllChildren: true,
	}
}

// caPaths says where the CA certificate and key live.
func (r *Runner) caPaths() (certPath, keyPath string) {
	if r.opts.CACert != "" {
		return r.opts.CACert, r.opts.CAKey
	}
	return r.bundle().CACert(), r.bundle().CAKey()
}

// authority returns the CA, loading it once. With needKey the key is loaded
// too; without it, a node that only has its ca.crt is enough.
func (r *Runner) authority(needKey bool) (*certs.Authority, error) {
	if r.ca != nil && (r.ca.Key != nil || !needKey) {
		return r.ca, nil
	}
	certPath, keyPath := r.caPaths()
	certPEM, err := r.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) && !needKey && r.NodeMode() {
		certPath = r.CertPath(r.Hosts()[0], certs.CA()) + layout.CertExt
		certPEM, err = r.ReadFile(certPath)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no etcd CA at %s: run `etcd-staticpod init phase certs etcd-ca` first, or pass --ca-cert and --ca-key", certPath)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	// Checked whenever the CA is loaded, not only when it signs: a run that
	// keeps every certificate would otherwise leave an exposed key unseen.
	if err := r.guardCAKey(keyPath); err != nil {
		return nil, err
	}
	var keyPEM []byte
	if needKey {
		if keyPEM, err = r.ReadFile(keyPath); err != nil {
			return nil, fmt.Errorf("read CA key %s: %w", keyPath, err)
		}
	}
	ca, err := certs.ParseAuthority(certPEM, keyPEM, r.now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	r.ca = ca
	return ca, nil
}

// guardCAKey makes a CA key file that others can read private again before
// it is used: the key is the cluster's root of trust, and a copy that group
// or others can read is exposed for as long as nobody notices. Repairing
// it (rather than refusing) closes that at once and still tells the user,
// who may have to rotate the CA if the key was read in the meantime.
func (r *Runner) guardCAKey(path string) error {
	if r.caKeyGuarded {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return nil // a key queued by this run, or private already
	}
	mode := fi.Mode().Perm()
	r.caKeyGuarded = true
	if r.opts.DryRun {
		r.Warnf("CA key %s can be read by group or others (mode %04o); a run without --dry-run makes it 0600", path, mode)
		return nil
	}
	if err := os.Chmod(path, layout.ModeKey); err != nil {
		return fmt.Errorf("CA key %s can be read by group or others (mode %04o) and cannot be made 0600: %w", path, mode, safefile.Reason(err))
	}
	r.Warnf("CA key %s could be read by group or others (mode %04o); made it 0600", path, mode)
	return nil
}

// runCA loads or creates the CA, then gives every host its ca.crt.
func (r *Runner) runCA() error {
	certPath, keyPath := r.caPaths()
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := r.authority(true)
		if err != nil {
			return err
		}
		r.Logf("[certs] Using the existing etcd CA %s (expires %s)", certPath, ca.Cert.NotAfter.UTC().Format("2006-01-02"))
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		if r.opts.CACert != "" {
			return fmt.Errorf("--ca-cert %q: no such file", certPath)
		}
		// A node that already trusts a CA keeps it: making a new one here
		// would split the cluster.
		if r.NodeMode() {
			nodeCA := r.CertPath(r.Hosts()[0], certs.CA()) + layout.CertExt
			if _, err := os.Stat(nodeCA); err == nil {
				if _, err := r.authority(false); err != nil {
					return err
				}
				r.Logf("[certs] Using the node's CA certificate %s (no CA key here)", nodeCA)
				return nil
			}
		}
		c := r.Cluster()
		key, err := r.pool.Key(c.EncryptionAlgorithm)
		if err != nil {
			return fmt.Errorf("generate CA key: %w", err)
		}
		keyPEM, err := certs.EncodeKey(key)
		if err != nil {
			return err
		}
		// The key first: a run killed between the two leaves a key alone,
		// which the next run completes (below) without replacing it.
		if err := r.WriteFile(keyPath, keyPEM, layout.ModeKey, layout.ModePrivDir); err != nil {
			return err
		}
		if err := r.selfSign(key, certPath); err != nil {
			return err
		}
		r.Logf("[certs] Generated the etcd CA in %s (%s, valid until %s)", filepath.Dir(certPath), c.EncryptionAlgorithm, r.ca.Cert.NotAfter.UTC().Format("2006-01-02"))
	case certErr == nil:
		return fmt.Errorf("CA store: %s exists but %s does not; restore the key or remove both to make a new CA", certPath, keyPath)
	case keyErr == nil && r.opts.CACert == "" && !r.anyHostCA():
		// Only an interrupted first run leaves a CA key with no certificate
		// anywhere: nothing was ever signed, so sign the CA itself now.
		keyPEM, err := r.ReadFile(keyPath)
		if err != nil {
			return fmt.Errorf("read CA key: %w", err)
		}
		key, err := certs.ParseKey(keyPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", keyPath, err)
		}
		if err := r.selfSign(key, certPath); err != nil {
			return err
		}
		r.Logf("[certs] Completed the etcd CA in %s: an interrupted run had left its key without a certificate", filepath.Dir(certPath))
	case keyErr == nil:
		return fmt.Errorf("CA store: %s exists but %s does not; restore the certificate or remove both to make a new CA", keyPath, certPath)
	default:
		return fmt.Errorf("CA store: %w", errors.Join(certErr, keyErr))
	}
	for _, h := range r.Hosts() {
		if err := r.ensureHostCA(h); err != nil {
			return err
		}
	}
	return nil
}

// selfSign makes the CA certificate for key and queues it.
func (r *Runner) selfSign(key crypto.Signer, certPath string) error {
	ca, err := certs.NewAuthorityWithKey(key, r.Cluster().CACertificateValidity.Duration, r.now())
	if err != nil {
		return err
	}
	if err := r.WriteFile(certPath, certs.EncodeCert(ca.Cert), layout.ModeFile, layout.ModePrivDir); err != nil {
		return err
	}
	r.ca = ca
	return nil
}

// anyHostCA reports whether a host already holds a CA certificate.
func (r *Runner) anyHostCA() bool {
	for _, h := range r.opts.Cluster.Hosts {
		if r.Exists(certs.CA().Files.Cert(layout.OnHost(r.bundle().Host(h.Name), r.opts.Cluster.CertDir))) {
			return true
		}
	}
	return false
}

// checkHostCAs refuses to replace a host's ca.crt that names another CA.
func (r *Runner) checkHostCAs() error {
	certPath, _ := r.caPaths()
	want, err := r.ReadFile(certPath)
	if err != nil {
		return nil // a new CA: any host ca.crt would be checked by the leaves
	}
	for _, h := range r.Hosts() {
		path := r.CertPath(h, certs.CA()) + layout.CertExt
		have, err := r.ReadFile(path)
		if err == nil && !certs.SameCert(have, want) {
			return fmt.Errorf("host %q: %s is not the CA certificate in %s; remove it if the host should move to this CA", h.Name, path, certPath)
		}
	}
	return nil
}

// ensureHostCA writes the CA certificate into a host's bundle if missing.
func (r *Runner) ensureHostCA(h spec.Host) error {
	ca, err := r.authority(false)
	if err != nil {
		return err
	}
	path := r.CertPath(h, certs.CA()) + layout.CertExt
	have, err := r.ReadFile(path)
	if err == nil {
		if !certs.SameCert(have, certs.EncodeCert(ca.Cert)) {
			return fmt.Errorf("host %q: %s is not the CA certificate in use; remove it if the host should move to this CA", h.Name, path)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("host %q: %w", h.Name, err)
	}
	return r.WriteFile(path, certs.EncodeCert(ca.Cert), layout.ModeFile, layout.ModeDir)
}

// leafState is what is on disk for one certificate.
type leafState int

const (
	leafMissing leafState = iota
	leafKeyOnly
	leafValid
)

// inspectLeaf compares an existing certificate and key with the spec.
func (r *Runner) inspectLeaf(p certs.Profile, h spec.Host) (leafState, error) {
	base := r.CertPath(h, p)
	certPEM, certErr := r.ReadFile(base + layout.CertExt)
	keyPEM, keyErr := r.ReadFile(base + layout.KeyExt)
	if errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist) {
		return leafMissing, nil
	}
	if errors.Is(certErr, os.ErrNotExist) && keyErr == nil {
		// We write a key before its certificate, so this is a run that was
		// interrupted between the two: the next run certifies that key.
		key, err := certs.ParseKey(keyPEM)
		if err != nil {
			return 0, fmt.Errorf("host %q: %s.key: %w", h.Name, base, err)
		}
		if err := r.notCAKey(base+layout.KeyExt, key); err != nil {
			return 0, err
		}
		if got := certs.KeyAlgorithm(key.Public()); got != r.Cluster().EncryptionAlgorithm {
			return 0, fmt.Errorf("host %q: %s.key has no certificate and is %s, want %s; remove it and run again", h.Name, base, got, r.Cluster().EncryptionAlgorithm)
		}
		return leafKeyOnly, nil
	}
	if certErr != nil {
		return 0, fmt.Errorf("host %q: %s.key exists but its certificate cannot be read: %w", h.Name, base, certErr)
	}
	if keyErr != nil {
		return 0, fmt.Errorf("host %q: %s.crt exists but its key cannot be read: %w", h.Name, base, keyErr)
	}
	cert, err := certs.ParseCert(certPEM)
	if err != nil {
		return 0, fmt.Errorf("host %q: %s.crt: %w", h.Name, base, err)
	}
	key, err := certs.ParseKey(keyPEM)
	if err != nil {
		return 0, fmt.Errorf("host %q: %s.key: %w", h.Name, base, err)
	}
	if err := r.notCAKey(base+layout.KeyExt, key); err != nil {
		return 0, err
	}
	ca, err := r.authority(false)
	if err != nil {
		return 0, fmt.Errorf("host %q: cannot check the existing %s.crt: %w", h.Name, base, err)
	}
	c := r.Cluster()
	req := certs.Request{Profile: p, Host: h, Validity: c.CertificateValidity.Duration}
	if diffs := certs.Differences(cert, key, ca, req, c.EncryptionAlgorithm, r.now()); len(diffs) > 0 {
		return 0, fmt.Errorf("host %q: existing %s certificate %s.crt does not match the spec: %s; to replace it, run `etcd-staticpod certs renew %s --node %s`",
			h.Name, p.Name, base, strings.Join(diffs, "; "), p.Name, h.Name)
	}
	return leafValid, nil
}

// sayCAEnd warns, once a run, when the CA ends before a leaf signed now
// would: certs.Issue ends such a leaf with the CA, since no client trusts it
// past its CA anyway.
func (r *Runner) sayCAEnd(ca *certs.Authority) {
	want := r.now().Add(r.Cluster().CertificateValidity.Duration)
	if r.caEndSaid || !want.After(ca.Cert.NotAfter) {
		return
	}
	r.caEndSaid = true
	r.Logf("[certs] warning: the CA expires on %s, before the certificateValidity %s asks for; new certificates end with the CA (renew the CA before then)",
		ca.Cert.NotAfter.UTC().Format(time.RFC3339), r.Cluster().CertificateValidity)
}

// caToCreate reports whether the etcd-ca phase will make a new CA.
func (r *Runner) caToCreate() bool {
	certPath, keyPath := r.caPaths()
	if r.Exists(certPath) || r.Exists(keyPath) || r.opts.CACert != "" {
		return false
	}
	return !r.NodeMode() || !r.Exists(r.CertPath(r.Hosts()[0], certs.CA())+layout.CertExt)
}

// checkLeaves refuses an existing p certificate that does not fit, and
// counts the keys of those to make.
func (r *Runner) checkLeaves(p certs.Profile) error {
	for _, h := range r.Hosts() {
		state, err := r.inspectLeaf(p, h)
		if err != nil {
			return err
		}
		if state == leafMissing {
			r.keys++
		}
	}
	return nil
}

// runLeaf makes the p certificate of every host that lacks a valid one. The
// hosts are inspected in order, signed on every core, and their files queued
// and reported in order again, so the output does not depend on timing.
func (r *Runner) runLeaf(p certs.Profile) error {
	c := r.Cluster()
	hosts := r.Hosts()
	type job struct {
		h    spec.Host
		base string
		key  crypto.Signer // set for a key an interrupted run left
		// Filled by the signing.
		keyPEM []byte
		cert   *x509.Certificate
		log    []string
	}
	jobs := make([]*job, len(hosts))
	var todo []*job
	for i, h := range hosts {
		if err := r.ensureHostCA(h); err != nil {
			return err
		}
		state, err := r.inspectLeaf(p, h)
		if err != nil {
			return err
		}
		j := &job{h: h, base: r.CertPath(h, p)}
		jobs[i] = j
		switch state {
		case leafValid:
			j.log = append(j.log, fmt.Sprintf("[certs] Using the existing %s certificate and key for %s", p.Name, h.Name))
			continue
		case leafKeyOnly:
			keyPEM, err := r.ReadFile(j.base + layout.KeyExt)
			if err != nil {
				return fmt.Errorf("host %q: %w", h.Name, err)
			}
			if j.key, err = certs.ParseKey(keyPEM); err != nil {
				return fmt.Errorf("host %q: %s.key: %w", h.Name, j.base, err)
			}
			j.log = append(j.log, fmt.Sprintf("[certs] Certifying the key %s.key an interrupted run left without a certificate", j.base))
		}
		todo = append(todo, j)
	}
	var ca *certs.Authority
	if len(todo) > 0 {
		var err error
		if ca, err = r.authority(true); err != nil {
			return err
		}
		r.sayCAEnd(ca)
	}
	err := forEach(len(todo), func(i int) error {
		j := todo[i]
		key := j.key
		if key == nil {
			var err error
			if key, err = r.pool.Key(c.EncryptionAlgorithm); err != nil {
				return fmt.Errorf("generate %s key: %w", p.Name, err)
			}
			if j.keyPEM, err = certs.EncodeKey(key); err != nil {
				return err
			}
		}
		req := certs.Request{Profile: p, Host: j.h, Validity: c.CertificateValidity.Duration}
		var err error
		j.cert, err = ca.Issue(req, key.Public(), r.now())
		return err
	})
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.cert != nil {
			// The key first: a run killed between the two leaves a key
			// without a certificate, which the next run certifies.
			if j.keyPEM != nil {
				if err := r.WriteFile(j.base+layout.KeyExt, j.keyPEM, layout.ModeKey, layout.ModeDir); err != nil {
					return err
				}
			}
			if err := r.WriteFile(j.base+layout.CertExt, certs.EncodeCert(j.cert), layout.ModeFile, layout.ModeDir); err != nil {
				return err
			}
			sans := ""
			if len(j.cert.DNSNames)+len(j.cert.IPAddresses) > 0 {
				sans = fmt.Sprintf(", serving DNS %v and IPs %v", j.cert.DNSNames, j.cert.IPAddresses)
			}
			j.log = append(j.log, fmt.Sprintf("[certs] Generated %s for %s%s", p.Name, j.h.Name, sans))
		}
		for _, l := range j.log {
			r.Logf("%s", l)
		}
	}
	return nil
}
