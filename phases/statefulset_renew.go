package phases

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// StatefulSetRenewable are the certificates `certs renew` replaces with
// runtime statefulset, in the order it renews them.
func StatefulSetRenewable() []string {
	return []string{"etcd-server", "etcd-peer", statefulset.HealthcheckProfile().Name, certs.ApplicationClient().Name}
}

// RenewStatefulSet gives the StatefulSet's members (only member, when not
// "") new keys and certificates for the profiles named, and, without a
// member, the healthcheck and application clients theirs, signed by the CA
// in use and built from the current spec. It rewrites OUT/statefulset/
// etcd.yaml and, when the application client is renewed, the client
// bundle; the other certificates in the stream stay as they are.
//
// A d not negative limits the renewal to the certificates that cannot be
// read or expire within d (expired ones too), as certs check-expiration
// --within judges; when none is, nothing is written.
func (r *Runner) RenewStatefulSet(names []string, member string, d time.Duration) ([]Renewal, error) {
	c := r.Cluster()
	if !c.InKubernetes() {
		return nil, badinput.Errorf("runtime %q: not a StatefulSet", c.Runtime)
	}
	for _, name := range names {
		if !slices.Contains(StatefulSetRenewable(), name) {
			return nil, badinput.Errorf("certificate %q: with runtime %s, want all or one of %s", name, spec.RuntimeStatefulSet, strings.Join(StatefulSetRenewable(), ", "))
		}
	}
	n := statefulset.NamesOf(c)
	ordinal := -1
	if member != "" {
		for i := range c.StatefulSet.Replicas {
			if n.Member(i) == member {
				ordinal = i
			}
		}
		if ordinal < 0 {
			return nil, badinput.Errorf("--node %q: no such member (members: %s-0 .. %s-%d)", member, n.Name, n.Name, c.StatefulSet.Replicas-1)
		}
	}
	var creds statefulset.Credentials
	phase := Phase{
		Name: "statefulset",
		Check: func(r *Runner) error {
			var err error
			if creds, err = r.renewableCredentials(); err != nil {
				return err
			}
			if !r.opts.DryRun {
				for _, j := range r.stsRenewals(names, ordinal) {
					if cert, _ := certs.ParseCert(j.pair(&creds).Cert); r.dueCert(cert) {
						r.keys++
					}
				}
			}
			return nil
		},
		Run: func(r *Runner) error { return r.renewStatefulSet(creds, names, ordinal) },
	}
	r.renewed, r.within = nil, d
	defer func() { r.within = -1 }()
	if err := r.Run([]Phase{phase}); err != nil {
		return nil, err
	}
	return r.renewed, nil
}

// stsRenewal is one certificate of the stream to replace.
type stsRenewal struct {
	name, host, secret, key string
	profile                 certs.Profile
	req                     spec.Host
	pair                    func(*statefulset.Credentials) *statefulset.Pair
}

// stsRenewals lists what to renew: for each member (or ordinal alone) its
// server and peer pairs as named, then, for the whole StatefulSet, the
// clients.
func (r *Runner) stsRenewals(names []string, ordinal int) []stsRenewal {
	c := r.Cluster()
	n := statefulset.NamesOf(c)
	var out []stsRenewal
	for i := range c.StatefulSet.Replicas {
		if ordinal >= 0 && i != ordinal {
			continue
		}
		m := n.Member(i)
		if slices.Contains(names, "etcd-server") {
			out = append(out, stsRenewal{name: "etcd-server", host: m, secret: n.MembersSecret(), key: statefulset.ServerCertKey(m), profile: statefulset.ServerProfile(n, i), req: statefulset.MemberHost(n, i),
				pair: func(cr *statefulset.Credentials) *statefulset.Pair { return &cr.Members[i].Server }})
		}
		if slices.Contains(names, "etcd-peer") {
			out = append(out, stsRenewal{name: "etcd-peer", host: m, secret: n.MembersSecret(), key: statefulset.PeerCertKey(m), profile: statefulset.PeerProfile(n, i), req: statefulset.MemberHost(n, i),
				pair: func(cr *statefulset.Credentials) *statefulset.Pair { return &cr.Members[i].Peer }})
		}
	}
	if ordinal >= 0 {
		return out
	}
	hc, app := statefulset.HealthcheckProfile(), certs.ApplicationClient()
	if slices.Contains(names, hc.Name) {
		out = append(out, stsRenewal{name: hc.Name, host: layout.StatefulSetDir, secret: n.HealthcheckSecret(), key: "tls.crt", profile: hc,
			pair: func(cr *statefulset.Credentials) *statefulset.Pair { return &cr.Healthcheck }})
	}
	if slices.Contains(names, app.Name) {
		out = append(out, stsRenewal{name: app.Name, host: layout.StatefulSetDir, secret: n.ClientSecret(), key: "tls.crt", profile: app,
			pair: func(cr *statefulset.Credentials) *statefulset.Pair { return &cr.Client }})
	}
	return out
}

// renewableCredentials reads the stream init wrote: it must be there, hold
// a pair for every member of the spec and trust the CA in use, whose key
// must be here.
func (r *Runner) renewableCredentials() (statefulset.Credentials, error) {
	path := r.bundle().StatefulSetManifest()
	stream, err := r.ReadFile(path)
	if err != nil {
		return statefulset.Credentials{}, fmt.Errorf("%w; run `etcd-staticpod init --runtime statefulset` first", err)
	}
	c := r.Cluster()
	creds, err := statefulset.ReadCredentials(c, stream)
	if err != nil {
		return statefulset.Credentials{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(creds.Members) < c.StatefulSet.Replicas {
		return statefulset.Credentials{}, fmt.Errorf("%s: certificates for %d members, the spec has %d; run `etcd-staticpod init` first", path, len(creds.Members), c.StatefulSet.Replicas)
	}
	ca, err := r.authority(true)
	if err != nil {
		return statefulset.Credentials{}, err
	}
	if !certs.SameCert(creds.CA, certs.EncodeCert(ca.Cert)) {
		return statefulset.Credentials{}, fmt.Errorf("%s: its %s is not the CA certificate in %s; the members would not trust certificates signed by it", path, statefulset.CACertKey, r.CAStore())
	}
	return creds, nil
}

func (r *Runner) renewStatefulSet(creds statefulset.Credentials, names []string, ordinal int) error {
	c := r.Cluster()
	ca, err := r.authority(true)
	if err != nil {
		return err
	}
	stream := r.bundle().StatefulSetManifest()
	clientRenewed := false
	for _, j := range r.stsRenewals(names, ordinal) {
		pair := j.pair(&creds)
		// nil when it cannot be read, and then due.
		old, _ := certs.ParseCert(pair.Cert)
		if !r.dueCert(old) {
			r.keepCert(j.name, j.host, old)
			continue
		}
		rn := Renewal{Name: j.name, Host: j.host, Path: stream + "#" + j.secret + "/" + j.key, Old: old}
		if r.opts.DryRun {
			rn.NotAfter = r.now().Add(c.CertificateValidity.Duration)
			if rn.NotAfter.After(ca.Cert.NotAfter) {
				rn.NotAfter = ca.Cert.NotAfter
			}
			r.renewed = append(r.renewed, rn)
			clientRenewed = clientRenewed || j.name == certs.ApplicationClient().Name
			continue
		}
		key, err := r.pool.Key(c.EncryptionAlgorithm)
		if err != nil {
			return fmt.Errorf("generate %s key: %w", j.name, err)
		}
		p, err := statefulset.Issue(ca, c, j.profile, j.req, key, r.now())
		if err != nil {
			return err
		}
		*pair = p
		if rn.New, err = certs.ParseCert(p.Cert); err != nil {
			return err
		}
		rn.NotAfter = rn.New.NotAfter
		r.renewed = append(r.renewed, rn)
		clientRenewed = clientRenewed || j.name == certs.ApplicationClient().Name
	}
	if len(r.renewed) == 0 {
		// Nothing due: the stream and the client bundle stay as they are.
		return nil
	}
	if err := r.notCAKeyIn(creds); err != nil {
		return err
	}
	out, err := statefulset.Render(c, creds)
	if err != nil {
		return err
	}
	if err := r.WriteFile(stream, out, layout.ModeKey, layout.ModePrivDir); err != nil {
		return err
	}
	if clientRenewed {
		dir := r.bundle().StatefulSetClient()
		app := certs.ApplicationClient()
		if err := r.WriteFile(app.Files.Key(dir), creds.Client.Key, layout.ModeKey, layout.ModePrivDir); err != nil {
			return err
		}
		if err := r.WriteFile(app.Files.Cert(dir), creds.Client.Cert, layout.ModeFile, layout.ModePrivDir); err != nil {
			return err
		}
		if err := r.WriteFile(filepath.Join(dir, layout.StatefulSetClientCA), creds.CA, layout.ModeFile, layout.ModePrivDir); err != nil {
			return err
		}
	}
	return nil
}
