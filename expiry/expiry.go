// Package expiry reads the etcd certificates of a bundle folder or of a node
// and judges how long each has left, the way kubeadm's `certs
// check-expiration` does, with a threshold for scripts.
package expiry

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// ControlPlaneHost is the host name given to the bundle's control-plane
// folder, which holds the first host's apiserver-etcd-client pair.
const ControlPlaneHost = layout.ControlPlaneDir

// MonitoringHost is the host name given to the bundle's monitoring folder,
// which `init --monitoring` fills with Prometheus' client certificate.
const MonitoringHost = layout.MonitoringDir

// Item is one place a certificate should be.
type Item struct {
	// Name is the certificate's name: a leaf profile's (etcd-server, ...)
	// or etcd-ca.
	Name string
	// Host is the host folder it belongs to, ControlPlaneHost, or "" for
	// the CA store.
	Host string
	// Path is the certificate file.
	Path string
	// CA marks a CA certificate.
	CA bool
	// Stream, when set, is an object stream (runtime statefulset's
	// etcd.yaml) holding the certificate in Secret SecretName under key
	// SecretKey; Path then names it as STREAM#SECRET/KEY.
	Stream, SecretName, SecretKey string
	// FromCluster marks a certificate read from a Secret in the cluster:
	// Data holds it, nil when the Secret or its key is not there.
	FromCluster bool
	Data        []byte
	// CAKey is where the key of the CA that signs it (its own, for a CA)
	// lives. Without that key here the certificate cannot be renewed here:
	// kubeadm calls it externally managed.
	CAKey string
}

// Bundle lists where a bundle folder keeps certificates: the CA store, each
// host's folder and, when it exists, the control-plane folder.
func Bundle(out string, hosts []string, certDir, controlPlaneCertDir string) []Item {
	b := layout.Bundle(out)
	caKey := b.CAKey()
	items := []Item{{Name: certs.CA().Name, Path: b.CACert(), CA: true, CAKey: caKey}}
	for _, h := range hosts {
		items = append(items, hostItems(b.Host(h), h, certDir, caKey)...)
	}
	cp := b.ControlPlane()
	if fi, err := os.Stat(cp); err == nil && fi.IsDir() {
		client := certs.APIServerClient()
		items = append(items,
			Item{Name: certs.CA().Name, Host: ControlPlaneHost, Path: certFile(cp, controlPlaneCertDir, certs.CA()), CA: true, CAKey: caKey},
			Item{Name: client.Name, Host: ControlPlaneHost, Path: certFile(cp, controlPlaneCertDir, client), CAKey: caKey},
		)
	}
	mon := b.Monitoring()
	if fi, err := os.Stat(mon); err == nil && fi.IsDir() {
		client := certs.MonitoringClient()
		items = append(items,
			Item{Name: certs.CA().Name, Host: MonitoringHost, Path: filepath.Join(mon, layout.MonitoringCA), CA: true, CAKey: caKey},
			Item{Name: client.Name, Host: MonitoringHost, Path: client.Files.Cert(mon), CAKey: caKey},
		)
	}
	return items
}

// Node lists the certificates of one etcd host whose filesystem root is
// root. The CA key is normally not on a node, so they are usually
// externally managed there.
func Node(root, host, certDir string) []Item {
	return hostItems(root, host, certDir, certs.CA().Files.Key(filepath.Join(root, certDir)))
}

func hostItems(root, host, certDir, caKey string) []Item {
	items := []Item{{Name: certs.CA().Name, Host: host, Path: certFile(root, certDir, certs.CA()), CA: true, CAKey: caKey}}
	for _, p := range certs.Leaves() {
		items = append(items, Item{Name: p.Name, Host: host, Path: certFile(root, certDir, p), CAKey: caKey})
	}
	return items
}

func certFile(root, certDir string, p certs.Profile) string {
	return p.Files.Cert(filepath.Join(root, certDir))
}

// Entry is what was found for one item, judged at one instant.
type Entry struct {
	Item
	// Cert is nil when the file is missing or unreadable.
	Cert *x509.Certificate
	// Missing is set when there is no file.
	Missing bool
	// Err says why an existing file could not be read as a certificate.
	Err error
	// ExternallyManaged is set when the signing CA's key is not here.
	ExternallyManaged bool
	// Residual is the time left, to the second; negative once expired.
	Residual time.Duration
	// Expired is set once NotAfter has passed.
	Expired bool
}

// Read reads every item and judges it at now.
func Read(items []Item, now time.Time) []Entry {
	out := make([]Entry, 0, len(items))
	streams := map[string]streamSecrets{}
	for _, it := range items {
		e := Entry{Item: it}
		if it.CAKey != "" {
			_, err := os.Stat(it.CAKey)
			e.ExternallyManaged = err != nil
		}
		var data []byte
		var err error
		switch {
		case it.FromCluster && it.Data == nil:
			err = fmt.Errorf("%s: %w", it.Path, os.ErrNotExist)
		case it.FromCluster:
			data = it.Data
		case it.Stream != "":
			data, err = streamCert(streams, it)
		default:
			data, err = safefile.Read(it.Path)
		}
		switch {
		case errors.Is(err, os.ErrNotExist):
			e.Missing = true
		case err != nil:
			e.Err = err
		default:
			if e.Cert, err = certs.ParseCert(data); err != nil {
				e.Err = fmt.Errorf("%s: %w", it.Path, err)
			}
		}
		if e.Cert != nil {
			// As kubeadm: whole seconds left.
			e.Residual = e.Cert.NotAfter.Sub(now).Truncate(time.Second)
			e.Expired = !now.Before(e.Cert.NotAfter)
		}
		out = append(out, e)
	}
	return out
}

// streamSecrets are the Secrets of one object stream, or why it cannot
// be read.
type streamSecrets struct {
	secrets map[string]map[string][]byte
	err     error
}

// streamCert reads an item's certificate from its object stream, reading
// each stream once.
func streamCert(streams map[string]streamSecrets, it Item) ([]byte, error) {
	ss, ok := streams[it.Stream]
	if !ok {
		data, err := safefile.Read(it.Stream)
		if err == nil {
			ss.secrets, err = statefulset.SecretData(data)
			if err != nil {
				err = fmt.Errorf("%s: %w", it.Stream, err)
			}
		}
		ss.err = err
		streams[it.Stream] = ss
	}
	if ss.err != nil {
		return nil, ss.err
	}
	data, ok := ss.secrets[it.SecretName][it.SecretKey]
	if !ok {
		return nil, fmt.Errorf("%s: %w", it.Path, os.ErrNotExist)
	}
	return data, nil
}

// StatefulSet lists the certificates of runtime statefulset in the bundle
// folder out: the CA store, each member's server and peer certificates, the
// healthcheck and application clients and the CA certificate in the object
// stream, and the application's client bundle.
func StatefulSet(out string, c *spec.Cluster) []Item {
	b := layout.Bundle(out)
	caKey := b.CAKey()
	n := statefulset.NamesOf(c)
	stream := b.StatefulSetManifest()
	in := func(name, host, secret, key string, ca bool) Item {
		return Item{Name: name, Host: host, Path: stream + "#" + secret + "/" + key, Stream: stream, SecretName: secret, SecretKey: key, CA: ca, CAKey: caKey}
	}
	items := []Item{{Name: certs.CA().Name, Path: b.CACert(), CA: true, CAKey: caKey}}
	server, peer := certs.Leaves()[0].Name, certs.Leaves()[1].Name
	for i := range c.StatefulSet.Replicas {
		m := n.Member(i)
		items = append(items,
			in(server, m, n.MembersSecret(), statefulset.ServerCertKey(m), false),
			in(peer, m, n.MembersSecret(), statefulset.PeerCertKey(m), false))
	}
	app := certs.ApplicationClient()
	items = append(items,
		in(statefulset.HealthcheckProfile().Name, layout.StatefulSetDir, n.HealthcheckSecret(), corev1.TLSCertKey, false),
		in(app.Name, layout.StatefulSetDir, n.ClientSecret(), corev1.TLSCertKey, false),
		Item{Name: app.Name, Host: layout.StatefulSetClientDir, Path: app.Files.Cert(b.StatefulSetClient()), CAKey: caKey},
		in(certs.CA().Name, layout.StatefulSetDir, n.MembersSecret(), statefulset.CACertKey, true),
		Item{Name: certs.CA().Name, Host: layout.StatefulSetClientDir, Path: filepath.Join(b.StatefulSetClient(), layout.StatefulSetClientCA), CA: true, CAKey: caKey},
	)
	return items
}

// ClusterSecrets lists the certificates of runtime statefulset's Secrets as
// a cluster holds them, secrets by name (a missing Secret is absent); Path
// names each as secret/NAMESPACE/NAME/KEY. The CA key is never in a
// cluster, so caKey is the bundle folder's.
func ClusterSecrets(out string, c *spec.Cluster, secrets map[string]map[string][]byte) []Item {
	n := statefulset.NamesOf(c)
	caKey := layout.Bundle(out).CAKey()
	in := func(name, host, secret, key string, ca bool) Item {
		var data []byte
		if d, ok := secrets[secret][key]; ok {
			data = d
		}
		return Item{Name: name, Host: host, Path: "secret/" + n.Namespace + "/" + secret + "/" + key, FromCluster: true, Data: data, CA: ca, CAKey: caKey}
	}
	var items []Item
	server, peer := certs.Leaves()[0].Name, certs.Leaves()[1].Name
	for i := range c.StatefulSet.Replicas {
		m := n.Member(i)
		items = append(items,
			in(server, m, n.MembersSecret(), statefulset.ServerCertKey(m), false),
			in(peer, m, n.MembersSecret(), statefulset.PeerCertKey(m), false))
	}
	return append(items,
		in(statefulset.HealthcheckProfile().Name, ClusterHost, n.HealthcheckSecret(), corev1.TLSCertKey, false),
		in(certs.ApplicationClient().Name, ClusterHost, n.ClientSecret(), corev1.TLSCertKey, false),
		in(certs.CA().Name, ClusterHost, n.MembersSecret(), statefulset.CACertKey, true),
	)
}

// ClusterHost is the host name of the certificates a cluster's Secrets
// hold that belong to no member.
const ClusterHost = "cluster"

// Due reports whether the entry needs attention before within has passed:
// it is missing, expired, or expires within it. An unreadable file is not
// due: it is an error of its own.
func (e Entry) Due(within time.Duration) bool {
	if e.Missing {
		return true
	}
	return e.Cert != nil && (e.Expired || e.Residual < within)
}

// Label names the entry for people: HOST/NAME, or NAME in the CA store.
func (e Entry) Label() string {
	if e.Host == "" {
		return e.Name
	}
	return e.Host + "/" + e.Name
}

// Issuer is the common name of the CA that signed the certificate; "" for
// a CA, a missing or an unreadable file.
func (e Entry) Issuer() string {
	if e.Cert == nil || e.CA {
		return ""
	}
	return e.Cert.Issuer.CommonName
}

// Split separates leaves from CAs, keeping the order.
func Split(entries []Entry) (leaves, authorities []Entry) {
	for _, e := range entries {
		if e.CA {
			authorities = append(authorities, e)
		} else {
			leaves = append(leaves, e)
		}
	}
	return leaves, authorities
}

// ResidualTime is kubeadm's RESIDUAL TIME: "364d", "9y", "23h", and
// "<invalid>" once expired.
func ResidualTime(d time.Duration) string {
	return duration.HumanDuration(d.Truncate(time.Second))
}

// Expires is kubeadm's EXPIRES: "Nov 22, 2027 03:09 UTC".
func Expires(t time.Time) string {
	return t.UTC().Format("Jan 02, 2006 15:04 MST")
}

// Serial prints a serial number as openssl's -serial does: upper-case hex,
// whole bytes.
func Serial(n *big.Int) string {
	if n == nil {
		return ""
	}
	s := strings.ToUpper(n.Text(16))
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// ParseWithin reads a threshold: a Go duration such as 720h, or whole days
// such as 30d.
func ParseWithin(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil {
			return 0, errors.New("not a duration such as 720h or 30d")
		}
		// A time.Duration holds about 292 years; more days would wrap.
		if maxDays := uint64(math.MaxInt64 / int64(24*time.Hour)); n > maxDays {
			return 0, fmt.Errorf("at most %dd", maxDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration such as 720h or 30d")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// Row is an entry as -o json and -o yaml print it. The field names are part
// of the command-line interface and stay stable.
type Row struct {
	Name string `json:"name"`
	// Host is the host folder, "control-plane", or "" for the CA store.
	Host string `json:"host"`
	Path string `json:"path"`
	// NotAfter is RFC 3339 in UTC; "" when there is no certificate.
	NotAfter string `json:"notAfter"`
	// Residual is the time left as a Go duration ("8759h55m0s"), negative
	// once expired; ResidualSeconds is the same in seconds.
	Residual        string `json:"residual"`
	ResidualSeconds int64  `json:"residualSeconds"`
	// Authority is the CN of the signing CA; "" for a CA.
	Authority         string `json:"authority"`
	ExternallyManaged bool   `json:"externallyManaged"`
	Serial            string `json:"serial"`
	Expired           bool   `json:"expired"`
	Missing           bool   `json:"missing"`
	// Due is set when a threshold was given and the certificate is missing,
	// expired or expires within it.
	Due   bool   `json:"due"`
	Error string `json:"error"`
}

// Document is the whole -o json / -o yaml output.
type Document struct {
	Certificates           []Row `json:"certificates"`
	CertificateAuthorities []Row `json:"certificateAuthorities"`
}

// Rows turns entries into the printed document; within < 0 means no
// threshold was given.
func Rows(entries []Entry, within time.Duration) Document {
	doc := Document{Certificates: []Row{}, CertificateAuthorities: []Row{}}
	for _, e := range entries {
		r := Row{
			Name: e.Name, Host: e.Host, Path: e.Path, Authority: e.Issuer(),
			ExternallyManaged: e.ExternallyManaged, Expired: e.Expired, Missing: e.Missing,
			Due: within >= 0 && e.Due(within),
		}
		if e.Err != nil {
			r.Error = e.Err.Error()
		}
		if e.Cert != nil {
			r.NotAfter = e.Cert.NotAfter.UTC().Format(time.RFC3339)
			r.Residual = e.Residual.String()
			r.ResidualSeconds = int64(e.Residual / time.Second)
			r.Serial = Serial(e.Cert.SerialNumber)
		}
		if e.CA {
			doc.CertificateAuthorities = append(doc.CertificateAuthorities, r)
		} else {
			doc.Certificates = append(doc.Certificates, r)
		}
	}
	return doc
}

// Expiry is one certificate's expiry as a metric sample: the gauge
// etcd_staticpod_certificate_expiry_timestamp_seconds{host,name,path}.
type Expiry struct {
	Host, Name, Path string
	// NotAfter is in seconds since the Unix epoch.
	NotAfter int64
}

// Expiries are the samples of the certificates that were read, in order;
// a missing or unreadable file has no expiry.
func Expiries(entries []Entry) []Expiry {
	out := make([]Expiry, 0, len(entries))
	for _, e := range entries {
		if e.Cert != nil {
			out = append(out, Expiry{Host: e.Host, Name: e.Name, Path: e.Path, NotAfter: e.Cert.NotAfter.Unix()})
		}
	}
	return out
}
