package phases

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Renewal is one certificate that Renew replaced (or, with DryRun, would
// replace).
type Renewal struct {
	// Name is the certificate's profile name, such as etcd-server.
	Name string
	Host string
	// Path is the certificate file; its key is beside it, as .key.
	Path string
	// Old is the certificate replaced; nil when there was none or it could
	// not be read.
	Old *x509.Certificate
	// New is the certificate written; nil with DryRun.
	New *x509.Certificate
	// NotAfter is when the new certificate expires (with DryRun too).
	NotAfter time.Time
}

// Renew gives every host of the run a new key and a new certificate for
// each profile, signed by the CA in use and built from the current spec:
// unlike kubeadm, which copies the old certificate's SANs, a SAN added to
// the spec is in the new certificate. The existing leaf is not consulted,
// only reported. The CA is never written. Each host's ca.crt must be that
// CA, so a host never gets a certificate it would not trust.
//
// In bundle mode (no Root) the control-plane folder's copy of the first
// host's apiserver-etcd-client pair follows that pair, and the archives and
// SHA256SUMS are packed again. Files are written as init writes them: all
// at the end, each atomically, keys before their certificates.
//
// The monitoring client certificate (certs.MonitoringClient) is renewed in
// OUT/monitoring when that folder exists and the run is not a --node one;
// asked for alone, it is refused (bad input) otherwise.
func (r *Runner) Renew(profiles []certs.Profile) ([]Renewal, error) {
	return r.RenewDue(profiles, -1)
}

// RenewDue is Renew for the certificates that are missing, cannot be
// read, or expire within d (expired ones too), as certs check-expiration
// --within judges; the others are left byte for byte and not reported.
// When no host certificate is renewed, no archive is packed again. A
// negative d renews them all.
func (r *Runner) RenewDue(profiles []certs.Profile, d time.Duration) ([]Renewal, error) {
	if len(profiles) == 0 {
		return nil, errors.New("no certificate to renew")
	}
	mon := certs.MonitoringClient()
	renewable := append(certs.Leaves(), mon)
	for _, p := range profiles {
		if !slices.ContainsFunc(renewable, func(q certs.Profile) bool { return q.Name == p.Name }) {
			return nil, fmt.Errorf("certificate %q: not one that renew replaces", p.Name)
		}
	}
	hostCerts := false
	var skip []string
	for _, p := range renewable {
		switch {
		case !slices.ContainsFunc(profiles, func(q certs.Profile) bool { return q.Name == p.Name }):
			skip = append(skip, p.Name)
		case p.Name != mon.Name:
			hostCerts = true
		}
	}
	if !hostCerts {
		// Only the monitoring pair: no host file changes, no archive is
		// packed again.
		if r.NodeMode() {
			return nil, badinput.Errorf("--node %q: %s belongs to no host; renew it without --node, in the bundle folder", r.opts.Node, mon.Name)
		}
		if !r.hasMonitoring() {
			return nil, badinput.Errorf("certificate %q: no %s; init --monitoring makes it", mon.Name, r.bundle().Monitoring())
		}
		skip = append(skip, layout.ControlPlaneDir, Repack().Name)
	}
	ps, err := RenewTree().Select(skip)
	if err != nil {
		return nil, err
	}
	r.renewed, r.within = nil, d
	defer func() { r.within = -1 }()
	if err := r.Run(ps); err != nil {
		return nil, err
	}
	return r.renewed, nil
}

// due reports whether the certificate at path is to be renewed: any,
// without a limit; else one that is missing, cannot be read, or expires
// within the limit.
func (r *Runner) due(path string) bool {
	if r.within < 0 {
		return true
	}
	data, err := r.ReadFile(path)
	if err != nil {
		return true
	}
	cert, _ := certs.ParseCert(data)
	return r.dueCert(cert)
}

// dueCert is due for a parsed certificate, nil when it could not be read:
// any without a limit, else one unread or expiring within the limit.
func (r *Runner) dueCert(cert *x509.Certificate) bool {
	if r.within < 0 || cert == nil {
		return true
	}
	return cert.NotAfter.Sub(r.now()) < r.within
}

// keep says that the certificate at path is not due.
func (r *Runner) keep(name, host, path string) {
	var cert *x509.Certificate
	if data, err := r.ReadFile(path); err == nil {
		cert, _ = certs.ParseCert(data)
	}
	r.keepCert(name, host, cert)
}

// keepCert says that cert, of name for host, is not due.
func (r *Runner) keepCert(name, host string, cert *x509.Certificate) {
	d := r.within.String()
	if r.within%(24*time.Hour) == 0 {
		d = fmt.Sprintf("%dd", r.within/(24*time.Hour))
	}
	until := "?"
	if cert != nil {
		until = cert.NotAfter.UTC().Format(time.RFC3339)
	}
	r.Logf("[renew] Kept %s for %s: valid until %s, not due within %s", name, host, until, d)
}

// RenewTree is the workflow of `certs renew`: one phase per host
// certificate of the table, the monitoring client certificate, then the
// control plane's copy of the client pair and the archives.
func RenewTree() Tree {
	var tree Tree
	for _, p := range certs.Leaves() {
		tree = append(tree, Phase{
			Name:  p.Name,
			Short: "Renew " + p.Short + ", for every host",
			Check: func(r *Runner) error {
				for _, h := range r.Hosts() {
					if !r.opts.DryRun && r.due(r.CertPath(h, p)+layout.CertExt) {
						r.keys++
					}
				}
				return r.checkRenew()
			},
			Run: func(r *Runner) error {
				renewed, err := r.renewLeaf(p)
				r.renewed = append(r.renewed, renewed...)
				return err
			},
		})
	}
	pack := Repack()
	repack := pack.Run
	pack.Run = func(r *Runner) error {
		if r.within >= 0 && !slices.ContainsFunc(r.renewed, func(rn Renewal) bool { return rn.Name != certs.MonitoringClient().Name }) {
			return nil // no host file changed: the archives are as they were
		}
		return repack(r)
	}
	return append(tree,
		monitoringRenewPhase(),
		Phase{Name: layout.ControlPlaneDir, Short: "Copy a renewed apiserver-etcd-client pair into OUT/" + layout.ControlPlaneDir, Run: func(r *Runner) error { return r.renewControlPlane(r.renewed) }},
		pack,
	)
}

// checkCAKey wants the CA certificate and key that signed the existing
// certificates. Not authority's advice to make a CA: a new CA would not be
// trusted by the running members.
func (r *Runner) checkCAKey() (*certs.Authority, error) {
	certPath, keyPath := r.caPaths()
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no %s: renewing signs with the CA that made the hosts' certificates; pass --ca-cert and --ca-key, or --out the folder whose pki/etcd holds them", p)
		}
	}
	return r.authority(true)
}

// checkRenew needs the CA key, and every host to trust that CA.
func (r *Runner) checkRenew() error {
	ca, err := r.checkCAKey()
	if err != nil {
		return err
	}
	if err := r.checkAddresses(); err != nil {
		return err
	}
	want := certs.EncodeCert(ca.Cert)
	for _, h := range r.Hosts() {
		path := r.CertPath(h, certs.CA()) + layout.CertExt
		have, err := r.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("host %q: no %s: renew replaces certificates of a host made by init; run `etcd-staticpod init` for it first", h.Name, path)
		}
		if err != nil {
			return fmt.Errorf("host %q: %w", h.Name, err)
		}
		if !certs.SameCert(have, want) {
			certPath, _ := r.caPaths()
			return fmt.Errorf("host %q: %s is not the CA certificate %s; a certificate from this CA would not be trusted there", h.Name, path, certPath)
		}
	}
	return nil
}

// checkAddresses refuses to renew for a host whose address in the spec is
// not the one its bundle was made for (OUT/cluster.yaml in the bundle
// folder, and the host's etcd manifest): the new certificate would name an
// address the running member does not use. A member moves to another
// address by member remove and member add.
func (r *Runner) checkAddresses() error {
	var recorded *spec.Cluster
	recordedPath := r.bundle().Spec()
	if !r.NodeMode() || r.opts.Root == "" {
		if c, err := spec.Load(recordedPath); err == nil {
			recorded = c
		}
	}
	for _, h := range r.Hosts() {
		if recorded != nil {
			if old, ok := recorded.Host(h.Name); ok && !sameAddress(old.Address, h.Address) {
				return addressChanged(h, old.Address, recordedPath)
			}
		}
		// The static Pod's manifest, or a systemd member's etcd.conf.yml.
		m, err := etcdops.ReadHost(r.HostRoot(h))
		if err != nil {
			continue // neither, or not ours to read: the certificates say the rest
		}
		for _, u := range m.PeerURLs {
			if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" && !sameAddress(pu.Hostname(), h.Address) {
				return addressChanged(h, pu.Hostname(), m.Path)
			}
		}
	}
	return nil
}

func addressChanged(h spec.Host, recorded, where string) error {
	return fmt.Errorf("host %q: address %s in the spec is not %s recorded in %s; a certificate for the new address would not match the running member (to move a member, use member remove, then member add)",
		h.Name, h.Address, recorded, where)
}

// sameAddress compares two IP literals however they are spelled.
func sameAddress(a, b string) bool {
	ia, ib := net.ParseIP(a), net.ParseIP(b)
	if ia == nil || ib == nil {
		return a == b
	}
	return ia.Equal(ib)
}

// startRenewal reports the certificate at path before it is replaced, and
// when the new one will expire: certificateValidity from now, or with the
// CA when that comes first.
func (r *Runner) startRenewal(ca *certs.Authority, name, host, path string) Renewal {
	c := r.Cluster()
	rn := Renewal{Name: name, Host: host, Path: path, NotAfter: r.now().Add(c.CertificateValidity.Duration).UTC()}
	if old, err := r.ReadFile(path); err == nil {
		if rn.Old, err = certs.ParseCert(old); err != nil {
			r.Logf("[renew] warning: %s cannot be read (%v); replacing it", path, err)
		}
	}
	if rn.NotAfter.After(ca.Cert.NotAfter) {
		// certs.Issue ends the new certificate with its CA.
		rn.NotAfter = ca.Cert.NotAfter.UTC()
		r.Logf("[renew] warning: the CA expires on %s, before certificateValidity %s from now; the new %s certificate of %s ends with the CA: renew the CA before then", ca.Cert.NotAfter.UTC().Format(time.RFC3339), c.CertificateValidity, name, host)
	}
	return rn
}

// renewLeaf queues a new key, then its certificate, for every host.
func (r *Runner) renewLeaf(p certs.Profile) ([]Renewal, error) {
	c := r.Cluster()
	ca, err := r.authority(true)
	if err != nil {
		return nil, err
	}
	var done []Renewal
	for _, h := range r.Hosts() {
		base := r.CertPath(h, p)
		if !r.due(base + layout.CertExt) {
			r.keep(p.Name, h.Name, base+layout.CertExt)
			continue
		}
		rn := r.startRenewal(ca, p.Name, h.Name, base+layout.CertExt)
		if r.opts.DryRun {
			r.Logf("[dry-run] would renew %s for %s (key and certificate), valid until %s", p.Name, h.Name, rn.NotAfter.Format(time.RFC3339))
			done = append(done, rn)
			continue
		}
		key, err := r.pool.Key(c.EncryptionAlgorithm)
		if err != nil {
			return done, fmt.Errorf("generate %s key: %w", p.Name, err)
		}
		keyPEM, err := certs.EncodeKey(key)
		if err != nil {
			return done, err
		}
		req := certs.Request{Profile: p, Host: h, Validity: c.CertificateValidity.Duration}
		if rn.New, err = ca.Issue(req, key.Public(), r.now()); err != nil {
			return done, err
		}
		rn.NotAfter = rn.New.NotAfter
		// The key first: a run killed between the two leaves the new key
		// with no matching certificate, which init then certifies.
		if err := r.WriteFile(base+layout.KeyExt, keyPEM, layout.ModeKey, layout.ModeDir); err != nil {
			return done, err
		}
		if err := r.WriteFile(base+layout.CertExt, certs.EncodeCert(rn.New), layout.ModeFile, layout.ModeDir); err != nil {
			return done, err
		}
		r.Logf("[renew] Renewed %s for %s: valid until %s", p.Name, h.Name, rn.NotAfter.Format(time.RFC3339))
		done = append(done, rn)
	}
	return done, nil
}

// renewControlPlane refreshes the control plane's copy of the first host's
// apiserver-etcd-client pair when that pair was renewed.
func (r *Runner) renewControlPlane(done []Renewal) error {
	client := certs.APIServerClient()
	first := r.Cluster().Hosts[0]
	if r.opts.Root != "" || !slices.ContainsFunc(done, func(rn Renewal) bool { return rn.Name == client.Name && rn.Host == first.Name }) {
		return nil
	}
	root := r.bundle().ControlPlane()
	if _, err := os.Stat(root); err != nil {
		return nil // no control-plane folder to keep up to date
	}
	src := r.CertPath(first, client)
	dst := client.Files.Base(layout.OnHost(root, r.Cluster().ControlPlane.CertDir))
	if r.opts.DryRun {
		r.Logf("[dry-run] would write %s.key (0600) and %s.crt (0644), copies of %s's new pair", dst, dst, first.Name)
		return nil
	}
	for _, f := range []struct {
		ext  string
		mode os.FileMode
	}{{layout.KeyExt, layout.ModeKey}, {layout.CertExt, layout.ModeFile}} {
		data, err := r.ReadFile(src + f.ext)
		if err != nil {
			return fmt.Errorf("the control plane's client certificate: %w", err)
		}
		if err := r.WriteFile(dst+f.ext, data, f.mode, layout.ModeDir); err != nil {
			return err
		}
	}
	r.Logf("[renew] Copied %s's new %s pair to %s", first.Name, client.Name, dst)
	return nil
}

// Repack is the phase that packs every host's archive and SHA256SUMS
// again in bundle mode, after a run that rewrote some of a host's files
// (such as one --node run): run in the same batch, the archives are put in
// place with those files or not at all.
func Repack() Phase {
	return Phase{Name: "bundle", Short: "Pack every host's archive and SHA256SUMS again", Run: func(r *Runner) error { return r.repack() }}
}

// repack packs every host's archive and SHA256SUMS again in bundle mode.
// With --node the other hosts' archives are packed too: SHA256SUMS lists
// them all, and the same folder gives the same bytes.
func (r *Runner) repack() error {
	if r.opts.Root != "" {
		return nil
	}
	for _, h := range r.Cluster().Hosts {
		if _, err := os.Stat(r.bundle().Host(h.Name)); err != nil {
			r.Logf("[bundle] Not packing the archives again: %s has no folder in %s; run `etcd-staticpod init phase bundle` once it has", h.Name, r.Out())
			return nil
		}
	}
	return r.pack(r.Cluster().Hosts)
}
