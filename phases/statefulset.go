package phases

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// FlagsStatefulSet are the StatefulSet runtime's settings.
const FlagsStatefulSet FlagGroup = "statefulset"

// StatefulSet writes, with runtime statefulset, the objects that run etcd
// inside a Kubernetes cluster and the applications' client bundle.
func StatefulSet() Phase {
	return Phase{
		Name:  "statefulset",
		Short: "With --runtime statefulset: write OUT/" + layout.StatefulSetManifest + " (the objects for kubectl apply) and OUT/" + layout.StatefulSetClientDir + "/",
		Long: "Writes OUT/" + layout.StatefulSetManifest + " (0600: its Secrets hold every member's keys), one YAML stream with the headless and the client Service, " +
			"the ConfigMap with initial-cluster and initial-cluster-state, the Secrets with every member's server and peer certificates, the healthcheck client and the application client, " +
			"the StatefulSet (etcd with the static Pod's flags, member name = Pod name) and a PodDisruptionBudget; and OUT/" + layout.StatefulSetClientDir +
			"/ (ca.crt, client.crt, client.key) for applications. The certificates are signed here; the CA key stays in OUT/" + layout.CAStoreDir +
			" and goes into no object. Certificates of an earlier run that still match are kept. With another runtime it does nothing.",
		Example: "etcd-staticpod init phase statefulset --runtime statefulset --namespace apps --replicas 3",
		Flags:   []FlagGroup{FlagsStatefulSet, FlagsEtcd},
		Check: func(r *Runner) error {
			if !r.Cluster().InKubernetes() {
				return nil
			}
			if r.NodeMode() {
				return fmt.Errorf("--node %q: runtime %s has no hosts", r.opts.Node, spec.RuntimeStatefulSet)
			}
			old, err := r.statefulSetCredentials()
			if err != nil {
				return err
			}
			r.keys += old.missingKeys(r.Cluster().StatefulSet.Replicas)
			// Renders the objects once, so that a setting the objects
			// cannot take fails the run before anything is written.
			_, err = statefulset.Objects(r.Cluster(), old.placeholder(r.Cluster().StatefulSet.Replicas))
			return err
		},
		Run: func(r *Runner) error {
			if !r.Cluster().InKubernetes() {
				return nil
			}
			return r.runStatefulSet()
		},
	}
}

// stsCredentials are the certificates an earlier run left in the object
// stream, checked against the spec; nil pairs are to be made.
type stsCredentials struct {
	statefulset.Credentials
	// have is how many members' pairs are there already.
	have                   int
	healthcheck, appClient bool
}

func (s stsCredentials) missingKeys(replicas int) int {
	n := 0
	if replicas > s.have {
		n += 2 * (replicas - s.have)
	}
	if !s.healthcheck {
		n++
	}
	if !s.appClient {
		n++
	}
	return n
}

// placeholder fills what is missing with empty pairs, enough to render.
func (s stsCredentials) placeholder(replicas int) statefulset.Credentials {
	c := s.Credentials
	c.Members = append([]statefulset.MemberCerts(nil), c.Members...)
	for len(c.Members) < replicas {
		c.Members = append(c.Members, statefulset.MemberCerts{})
	}
	return c
}

// statefulSetCredentials reads and checks the certificates of an earlier
// run's OUT/statefulset/etcd.yaml. Each that still matches the spec is
// kept; one that does not is an error that says what differs.
func (r *Runner) statefulSetCredentials() (stsCredentials, error) {
	path := r.bundle().StatefulSetManifest()
	stream, err := r.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return stsCredentials{}, nil
	}
	if err != nil {
		return stsCredentials{}, err
	}
	c := r.Cluster()
	creds, err := statefulset.ReadCredentials(c, stream)
	if err != nil {
		return stsCredentials{}, fmt.Errorf("%s: %w; remove it to make new objects and certificates", path, err)
	}
	ca, err := r.authority(false)
	if err != nil {
		return stsCredentials{}, fmt.Errorf("cannot check the certificates in %s: %w", path, err)
	}
	if !certs.SameCert(creds.CA, certs.EncodeCert(ca.Cert)) {
		return stsCredentials{}, fmt.Errorf("%s: its %s is not the CA certificate in use; remove it if the cluster should move to this CA", path, statefulset.CACertKey)
	}
	n := statefulset.NamesOf(c)
	check := func(what string, pair statefulset.Pair, p certs.Profile, h spec.Host) error {
		diffs, err := statefulset.Check(pair, ca, c, p, h, r.now())
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, what, err)
		}
		if len(diffs) > 0 {
			return fmt.Errorf("%s: existing %s certificate does not match the spec: %s; to replace it, run `etcd-staticpod certs renew all --runtime statefulset`", path, what, strings.Join(diffs, "; "))
		}
		return nil
	}
	out := stsCredentials{Credentials: creds}
	for i, m := range creds.Members {
		if i >= c.StatefulSet.Replicas {
			break
		}
		if err := check(n.Member(i)+" server", m.Server, statefulset.ServerProfile(n, i), statefulset.MemberHost(n, i)); err != nil {
			return stsCredentials{}, err
		}
		if err := check(n.Member(i)+" peer", m.Peer, statefulset.PeerProfile(n, i), statefulset.MemberHost(n, i)); err != nil {
			return stsCredentials{}, err
		}
		out.have++
	}
	out.Members = out.Members[:out.have]
	if err := check(n.HealthcheckSecret(), creds.Healthcheck, statefulset.HealthcheckProfile(), spec.Host{}); err != nil {
		return stsCredentials{}, err
	}
	if err := check(n.ClientSecret(), creds.Client, certs.ApplicationClient(), spec.Host{}); err != nil {
		return stsCredentials{}, err
	}
	out.healthcheck, out.appClient = true, true
	return out, nil
}

func (r *Runner) runStatefulSet() error {
	c := r.Cluster()
	replicas := c.StatefulSet.Replicas
	old, err := r.statefulSetCredentials()
	if err != nil {
		return err
	}
	creds := old.Credentials
	n := statefulset.NamesOf(c)
	var made []string
	if old.missingKeys(replicas) > 0 {
		ca, err := r.authority(true)
		if err != nil {
			return err
		}
		r.sayCAEnd(ca)
		creds.CA = certs.EncodeCert(ca.Cert)
		key := func() (crypto.Signer, error) { return r.pool.Key(c.EncryptionAlgorithm) }
		for i := old.have; i < replicas; i++ {
			sk, err := key()
			if err != nil {
				return err
			}
			pk, err := key()
			if err != nil {
				return err
			}
			mc, err := statefulset.IssueMemberWithKeys(ca, c, i, sk, pk, r.now())
			if err != nil {
				return err
			}
			creds.Members = append(creds.Members, mc)
			made = append(made, n.Member(i))
		}
		for _, t := range []struct {
			have bool
			p    certs.Profile
			pair *statefulset.Pair
			name string
		}{
			{old.healthcheck, statefulset.HealthcheckProfile(), &creds.Healthcheck, n.HealthcheckSecret()},
			{old.appClient, certs.ApplicationClient(), &creds.Client, n.ClientSecret()},
		} {
			if t.have {
				continue
			}
			k, err := key()
			if err != nil {
				return err
			}
			if *t.pair, err = statefulset.IssueClient(ca, c, t.p, k, r.now()); err != nil {
				return err
			}
			made = append(made, t.name)
		}
	}
	if err := r.notCAKeyIn(creds); err != nil {
		return err
	}
	stream, err := statefulset.Render(c, creds)
	if err != nil {
		return err
	}
	if err := r.WriteFile(r.bundle().StatefulSetManifest(), stream, layout.ModeKey, layout.ModePrivDir); err != nil {
		return err
	}
	dir := r.bundle().StatefulSetClient()
	p := certs.ApplicationClient()
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(dir, layout.StatefulSetClientCA), creds.CA, layout.ModeFile},
		{p.Files.Key(dir), creds.Client.Key, layout.ModeKey},
		{p.Files.Cert(dir), creds.Client.Cert, layout.ModeFile},
	} {
		if err := r.WriteFile(f.path, f.data, f.mode, layout.ModePrivDir); err != nil {
			return err
		}
	}
	if len(made) > 0 {
		r.Logf("[statefulset] Generated the certificates of %s", strings.Join(made, ", "))
	}
	r.Logf("[statefulset] Wrote %s (%d members in namespace %s) and the client bundle %s/", r.bundle().StatefulSetManifest(), replicas, n.Namespace, dir)
	return nil
}

// notCAKeyIn refuses objects that would carry the CA's key: every key they
// hold is compared with the CA's public key.
func (r *Runner) notCAKeyIn(creds statefulset.Credentials) error {
	pairs := []statefulset.Pair{creds.Healthcheck, creds.Client}
	for _, m := range creds.Members {
		pairs = append(pairs, m.Server, m.Peer)
	}
	for _, p := range pairs {
		key, err := certs.ParseKey(p.Key)
		if err != nil {
			return fmt.Errorf("%s: %w", r.bundle().StatefulSetManifest(), err)
		}
		if err := r.notCAKey(r.bundle().StatefulSetManifest(), key); err != nil {
			return err
		}
	}
	return nil
}
