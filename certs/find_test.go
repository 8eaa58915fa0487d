package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"testing"
	"time"
)

func TestKeyFinder(t *testing.T) {
	for _, alg := range []string{"RSA-2048", "ECDSA-P256", "ECDSA-P384"} {
		t.Run(alg, func(t *testing.T) {
			ca, err := NewAuthority(alg, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			other, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			f := NewKeyFinder(ca.Cert.PublicKey)
			own, _ := EncodeKey(ca.Key)
			otherPEM, _ := EncodeKey(other)
			pkcs8, _ := x509.MarshalPKCS8PrivateKey(ca.Key)
			block := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
			cert := EncodeCert(ca.Cert)
			cases := []struct {
				name string
				data []byte
				want bool
			}{
				{"as written", own, true},
				{"PKCS#8", block("PRIVATE KEY", pkcs8), true},
				{"after a certificate and text", append(append(append([]byte("backup of the CA\n"), cert...), own...), "\ntrailer"...), true},
				{"after another key", append(append([]byte{}, otherPEM...), own...), true},
				{"behind a damaged block", append([]byte("-----BEGIN RSA PRIVATE KEY-----\n!!!\n-----END RSA PRIVATE KEY-----\n"), own...), true},
				{"another key", otherPEM, false},
				{"another key, PKCS#8", block("PRIVATE KEY", mustPKCS8(t, other)), false},
				{"the certificate alone", cert, false},
				{"encrypted", block("ENCRYPTED PRIVATE KEY", pkcs8), false},
				{"not PEM", []byte("PRIVATE KEY-----"), false},
				{"garbage in a key block", block("RSA PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01}), false},
				{"empty", nil, false},
			}
			if ec, ok := ca.Key.(*ecdsa.PrivateKey); ok {
				// A SEC1 key without its public part is parsed in full.
				der, _ := x509.MarshalECPrivateKey(ec)
				var k sec1Key
				if _, err := asn1.Unmarshal(der, &k); err != nil {
					t.Fatal(err)
				}
				k.PublicKey = asn1.BitString{}
				bare, err := asn1.Marshal(k)
				if err != nil {
					t.Fatal(err)
				}
				cases = append(cases, struct {
					name string
					data []byte
					want bool
				}{"SEC1 without the public key", block("EC PRIVATE KEY", bare), true})
			}
			for _, tc := range cases {
				if got := f.Holds(tc.data); got != tc.want {
					t.Errorf("%s: Holds = %v, want %v", tc.name, got, tc.want)
				}
			}
			if !f.IsKey(ca.Key) || f.IsKey(other) {
				t.Error("IsKey")
			}
		})
	}
	// A key of another type is parsed from PKCS#8 and compared.
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	f := NewKeyFinder(ed.Public())
	der := mustPKCS8(t, ed)
	if !f.Holds(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})) {
		t.Error("Ed25519 PKCS#8 copy not found")
	}
}

func mustPKCS8(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// BenchmarkKeyFinder is the cost of checking one RSA host key against the
// CA's public key, the check every host key gets before it ships.
func BenchmarkKeyFinder(b *testing.B) {
	ca, err := NewAuthority("RSA-2048", time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	other, _ := GenerateKey("RSA-2048")
	data, _ := EncodeKey(other)
	f := NewKeyFinder(ca.Cert.PublicKey)
	for b.Loop() {
		if f.Holds(data) {
			b.Fatal("found")
		}
	}
}
