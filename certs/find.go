package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
)

// KeyFinder recognises the private key of one public key in any file,
// whatever the file is called and however the key is encoded (PKCS#1, SEC1
// or PKCS#8 PEM blocks), so that a copy of the CA key cannot leave under
// another name.
//
// It is cheap on what is not a key: data without a PEM private key block is
// not parsed, and RSA and EC keys are recognised by the public part they
// carry, without the full parse (a millisecond for an RSA key, which checks
// the whole key).
type KeyFinder struct {
	pub  crypto.PublicKey
	rsaN *big.Int
	// ecPoint is the uncompressed public point, as SEC1 keys carry it.
	ecPoint []byte
}

// NewKeyFinder finds the private key of pub.
func NewKeyFinder(pub crypto.PublicKey) *KeyFinder {
	f := &KeyFinder{pub: pub}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		f.rsaN = k.N
	case *ecdsa.PublicKey:
		if e, err := k.ECDH(); err == nil {
			f.ecPoint = e.Bytes()
		}
	}
	return f
}

// IsKey reports whether key is the private key of the finder's public key.
func (f *KeyFinder) IsKey(key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(f.pub)
}

var privateKeyMarker = []byte("PRIVATE KEY-----")

// Holds reports whether data holds a PEM private key block of the finder's
// key. Encrypted keys cannot be told apart and do not count.
func (f *KeyFinder) Holds(data []byte) bool {
	if !bytes.Contains(data, privateKeyMarker) {
		return false
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return false
		}
		if f.matches(b) {
			return true
		}
	}
}

// ASN.1 forms read for their public part; trailing fields are ignored.
type (
	pkcs1Head struct {
		Version int
		N       *big.Int
	}
	sec1Key struct {
		Version    int
		PrivateKey []byte
		Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
		PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
	}
	pkcs8Key struct {
		Version    int
		Algorithm  pkix.AlgorithmIdentifier
		PrivateKey []byte
	}
)

var (
	oidRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidEC  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

func (f *KeyFinder) matches(b *pem.Block) bool {
	switch b.Type {
	case "RSA PRIVATE KEY":
		return f.rsaMatches(b.Bytes)
	case "EC PRIVATE KEY":
		return f.ecMatches(b.Bytes, b.Bytes)
	case "PRIVATE KEY":
		var k pkcs8Key
		if _, err := asn1.Unmarshal(b.Bytes, &k); err != nil {
			return false
		}
		switch {
		case k.Algorithm.Algorithm.Equal(oidRSA):
			return f.rsaMatches(k.PrivateKey)
		case k.Algorithm.Algorithm.Equal(oidEC):
			return f.ecMatches(k.PrivateKey, b.Bytes)
		}
		key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return false
		}
		s, ok := key.(crypto.Signer)
		return ok && f.IsKey(s)
	}
	// Other blocks: not a private key, or one that cannot be read without
	// a password.
	return false
}

func (f *KeyFinder) rsaMatches(der []byte) bool {
	var k pkcs1Head
	if f.rsaN == nil {
		return false
	}
	_, err := asn1.Unmarshal(der, &k)
	return err == nil && k.N != nil && k.N.Cmp(f.rsaN) == 0
}

// ecMatches compares the public point a SEC1 key carries; one without it
// (or compressed) is parsed in full from whole, its PEM block's bytes.
func (f *KeyFinder) ecMatches(sec1, whole []byte) bool {
	if f.ecPoint == nil {
		return false
	}
	var k sec1Key
	if _, err := asn1.Unmarshal(sec1, &k); err != nil {
		return false
	}
	if p := k.PublicKey.RightAlign(); len(p) > 0 && p[0] == 4 {
		return bytes.Equal(p, f.ecPoint)
	}
	var key any
	var err error
	if bytes.Equal(sec1, whole) {
		key, err = x509.ParseECPrivateKey(sec1)
	} else {
		key, err = x509.ParsePKCS8PrivateKey(whole)
	}
	if err != nil {
		return false
	}
	s, ok := key.(crypto.Signer)
	return ok && f.IsKey(s)
}
