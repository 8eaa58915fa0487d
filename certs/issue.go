package certs

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math"
	"math/big"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Backdate is how far NotBefore lies in the past, as in kubeadm, so that
// small clock differences between hosts do not reject a new certificate.
const Backdate = 5 * time.Minute

// Authority is a CA certificate with, when this machine holds it, its key.
type Authority struct {
	Cert *x509.Certificate
	// Key is nil when only the certificate is known (enough to verify).
	Key crypto.Signer
}

// NewAuthority makes a self-signed CA with kubeadm's profile: CN and DNS SAN
// etcd-ca, CA:TRUE, DigitalSignature+KeyEncipherment+CertSign, a subject key
// identifier, NotBefore backdated.
func NewAuthority(algorithm string, validity time.Duration, now time.Time) (*Authority, error) {
	key, err := GenerateKey(algorithm)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	return NewAuthorityWithKey(key, validity, now)
}

// NewAuthorityWithKey is NewAuthority with a key made beforehand.
func NewAuthorityWithKey(key crypto.Signer, validity time.Duration, now time.Time) (*Authority, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	cn := CA().CommonName(spec.Host{})
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{cn},
		NotBefore:             now.Add(-Backdate).UTC(),
		NotAfter:              now.Add(validity).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// ParseAuthority reads a CA from PEM. keyPEM may be nil when only the
// certificate is needed. It checks that the certificate is a CA that can
// sign, has not expired, and that the key belongs to it.
func ParseAuthority(certPEM, keyPEM []byte, now time.Time) (*Authority, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("CA certificate (CN %q) is not a CA (basic constraints CA:FALSE)", cert.Subject.CommonName)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate (CN %q) may not sign certificates (no CertSign key usage)", cert.Subject.CommonName)
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("CA certificate (CN %q) expired on %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return nil, fmt.Errorf("CA certificate (CN %q) is not valid before %s", cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	a := &Authority{Cert: cert}
	if keyPEM == nil {
		return a, nil
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if err := KeyMatches(cert, key); err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	a.Key = key
	return a, nil
}

// ParseCert reads the first certificate of a PEM file.
func ParseCert(data []byte) (*x509.Certificate, error) {
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return certs[0], nil
}

// EncodeCert writes one certificate as PEM.
func EncodeCert(cert *x509.Certificate) []byte {
	b, _ := certutil.EncodeCertificates(cert) // encoding a parsed certificate cannot fail
	return b
}

// KeyMatches reports whether key is the private half of cert's public key.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("the private key does not match the certificate's public key")
	}
	return nil
}

// Request is everything that decides a leaf certificate's content.
type Request struct {
	Profile  Profile
	Host     spec.Host
	Validity time.Duration
}

// Issue signs a leaf for key with kubeadm's leaf profile: CN, SANs and
// extended key usages from the profile, DigitalSignature+KeyEncipherment,
// CA:FALSE, an authority key identifier and no subject key identifier.
func (a *Authority) Issue(r Request, key crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	if a.Key == nil {
		return nil, errors.New("the CA key is needed to issue certificates but only the CA certificate was loaded")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	// A leaf is not trusted past its CA: one that asks for more ends with
	// the CA (kubeadm signs it as asked and only warns).
	notAfter := now.Add(r.Validity).UTC()
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter.UTC()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: r.Profile.CommonName(r.Host)},
		NotBefore:             now.Add(-Backdate).UTC(),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           r.Profile.Usages,
		BasicConstraintsValid: true,
		// Go only adds a subject key identifier to CAs; keep it that way
		// explicitly so leaves carry exactly kubeadm's extensions.
		SubjectKeyId: nil,
	}
	if r.Profile.AltNames != nil {
		alt := r.Profile.AltNames(r.Host)
		tmpl.DNSNames, tmpl.IPAddresses = alt.DNSNames, alt.IPs
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key, a.Key)
	if err != nil {
		return nil, fmt.Errorf("sign %s certificate for %s: %w", r.Profile.Name, r.Host.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse %s certificate: %w", r.Profile.Name, err)
	}
	return cert, nil
}

// IssueNew makes a key and a certificate for it.
func (a *Authority) IssueNew(r Request, algorithm string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := GenerateKey(algorithm)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s key: %w", r.Profile.Name, err)
	}
	cert, err := a.Issue(r, key.Public(), now)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// SameCert reports whether two PEM files hold the same certificate.
func SameCert(a, b []byte) bool {
	ca, errA := ParseCert(a)
	cb, errB := ParseCert(b)
	return errA == nil && errB == nil && bytes.Equal(ca.Raw, cb.Raw)
}

// randomSerial is uniform in [1, MaxInt64), as kubeadm's.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(math.MaxInt64-1))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
