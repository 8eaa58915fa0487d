package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"

	"k8s.io/client-go/util/keyutil"
)

// GenerateKey makes a private key of one of kubeadm v1beta4's encryption
// algorithms.
func GenerateKey(algorithm string) (crypto.Signer, error) {
	switch algorithm {
	case "RSA-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "RSA-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "RSA-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	case "ECDSA-P256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ECDSA-P384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return nil, fmt.Errorf("encryption algorithm %q is not supported", algorithm)
}

// KeyAlgorithm names a public key the way --encryption-algorithm does.
func KeyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + strings.ReplaceAll(k.Curve.Params().Name, "-", "")
	}
	return fmt.Sprintf("%T", pub)
}

// EncodeKey writes a key in kubeadm's PEM forms: PKCS#1 for RSA, SEC1 for EC.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	b, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return b, nil
}

// ParseKey reads an RSA or ECDSA private key from PEM.
func ParseKey(data []byte) (crypto.Signer, error) {
	k, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	switch s := k.(type) {
	case *rsa.PrivateKey:
		return s, nil
	case *ecdsa.PrivateKey:
		return s, nil
	}
	return nil, fmt.Errorf("private key of type %T: want RSA or ECDSA", k)
}
