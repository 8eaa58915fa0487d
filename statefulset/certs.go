package statefulset

import (
	"crypto"
	"errors"
	"fmt"
	"net"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Pair is a certificate and its private key, PEM.
type Pair struct {
	Cert, Key []byte
}

// MemberCerts are one member's server and peer pairs.
type MemberCerts struct {
	Server, Peer Pair
}

// Credentials are every certificate the objects carry. The CA key is
// never among them.
type Credentials struct {
	// CA is the CA certificate.
	CA []byte
	// Members are by ordinal: Members[i] is member NAME-i's.
	Members     []MemberCerts
	Healthcheck Pair
	Client      Pair
}

// ServerProfile and PeerProfile are the certificate table's etcd-server and
// etcd-peer rows for member i: the same subject (the member's name), key
// usages and lifetime, with the StatefulSet's SANs.
func ServerProfile(n Names, i int) certs.Profile { return memberProfile("etcd-server", n, i) }

// PeerProfile: see ServerProfile.
func PeerProfile(n Names, i int) certs.Profile { return memberProfile("etcd-peer", n, i) }

// HealthcheckProfile is the table's healthcheck client, which health
// checks and scaling use.
func HealthcheckProfile() certs.Profile {
	p, _ := certs.Leaf("etcd-healthcheck-client")
	return p
}

func memberProfile(row string, n Names, i int) certs.Profile {
	p, ok := certs.Leaf(row)
	if !ok {
		panic("statefulset: the certificate table has no " + row)
	}
	dns := n.MemberDNSNames(i)
	p.AltNames = func(spec.Host) *certutil.AltNames {
		return &certutil.AltNames{DNSNames: append([]string(nil), dns...), IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	}
	return p
}

// MemberHost is the spec.Host a member's certificate request names: only
// its name, which becomes the subject's CN.
func MemberHost(n Names, i int) spec.Host { return spec.Host{Name: n.Member(i)} }

// IssueMember makes member i's server and peer keys and signs their
// certificates with ca, which must hold its key.
func IssueMember(ca *certs.Authority, c *spec.Cluster, i int, now time.Time) (MemberCerts, error) {
	server, err := certs.GenerateKey(c.EncryptionAlgorithm)
	if err != nil {
		return MemberCerts{}, fmt.Errorf("member %d: generate key: %w", i, err)
	}
	peer, err := certs.GenerateKey(c.EncryptionAlgorithm)
	if err != nil {
		return MemberCerts{}, fmt.Errorf("member %d: generate key: %w", i, err)
	}
	return IssueMemberWithKeys(ca, c, i, server, peer, now)
}

// IssueMemberWithKeys is IssueMember with keys made beforehand.
func IssueMemberWithKeys(ca *certs.Authority, c *spec.Cluster, i int, serverKey, peerKey crypto.Signer, now time.Time) (MemberCerts, error) {
	n := NamesOf(c)
	server, err := issue(ca, c, ServerProfile(n, i), MemberHost(n, i), serverKey, now)
	if err != nil {
		return MemberCerts{}, err
	}
	peer, err := issue(ca, c, PeerProfile(n, i), MemberHost(n, i), peerKey, now)
	if err != nil {
		return MemberCerts{}, err
	}
	return MemberCerts{Server: server, Peer: peer}, nil
}

// IssueClient signs a client certificate of profile p (the healthcheck or
// the application client) for key.
func IssueClient(ca *certs.Authority, c *spec.Cluster, p certs.Profile, key crypto.Signer, now time.Time) (Pair, error) {
	return issue(ca, c, p, spec.Host{}, key, now)
}

// Issue signs a certificate of profile p for h (MemberHost for a member's
// profiles, no host for the clients) and key.
func Issue(ca *certs.Authority, c *spec.Cluster, p certs.Profile, h spec.Host, key crypto.Signer, now time.Time) (Pair, error) {
	return issue(ca, c, p, h, key, now)
}

func issue(ca *certs.Authority, c *spec.Cluster, p certs.Profile, h spec.Host, key crypto.Signer, now time.Time) (Pair, error) {
	cert, err := ca.Issue(certs.Request{Profile: p, Host: h, Validity: c.CertificateValidity.Duration}, key.Public(), now)
	if err != nil {
		return Pair{}, err
	}
	keyPEM, err := certs.EncodeKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{Cert: certs.EncodeCert(cert), Key: keyPEM}, nil
}

// Check compares an existing pair with what profile p would issue now for
// h under ca; it returns what differs (nothing when the pair may stay).
func Check(pair Pair, ca *certs.Authority, c *spec.Cluster, p certs.Profile, h spec.Host, now time.Time) ([]string, error) {
	cert, err := certs.ParseCert(pair.Cert)
	if err != nil {
		return nil, err
	}
	key, err := certs.ParseKey(pair.Key)
	if err != nil {
		return nil, err
	}
	if ca.Key != nil && certs.KeyMatches(ca.Cert, key) == nil {
		return nil, errors.New("holds the CA's key")
	}
	req := certs.Request{Profile: p, Host: h, Validity: c.CertificateValidity.Duration}
	return certs.Differences(cert, key, ca, req, c.EncryptionAlgorithm, now), nil
}

// LoadCA reads the CA (certificate and key) from the bundle folder out,
// where init made it; it stays there.
func LoadCA(out string, now time.Time) (*certs.Authority, error) {
	b := layout.Bundle(out)
	certPEM, err := safefile.Read(b.CACert())
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	keyPEM, err := safefile.Read(b.CAKey())
	if err != nil {
		return nil, fmt.Errorf("etcd CA key: %w", err)
	}
	ca, err := certs.ParseAuthority(certPEM, keyPEM, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.CACert(), err)
	}
	return ca, nil
}
