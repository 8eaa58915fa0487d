package certs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"testing"
)

func TestKeyPool(t *testing.T) {
	p := NewKeyPool("ECDSA-P256", 5)
	defer p.Close()
	seen := map[string]bool{}
	for i := 0; i < 7; i++ { // two more than pooled: made on demand
		k, err := p.Key("ECDSA-P256")
		if err != nil {
			t.Fatal(err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok || KeyAlgorithm(k.Public()) != "ECDSA-P256" {
			t.Fatalf("key %d is %T", i, k)
		}
		if seen[ec.X.String()] {
			t.Fatal("the pool handed out a key twice")
		}
		seen[ec.X.String()] = true
	}
	k, err := p.Key("RSA-2048") // another algorithm is never served from the pool
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.(*rsa.PrivateKey); !ok {
		t.Fatalf("got %T", k)
	}
}

func TestKeyPoolCloseEarly(t *testing.T) {
	p := NewKeyPool("ECDSA-P256", 50)
	if _, err := p.Key("ECDSA-P256"); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// After Close keys are still made, fresh.
	if k, err := p.Key("ECDSA-P256"); err != nil || k == nil {
		t.Fatalf("%v %v", k, err)
	}
	var nilPool *KeyPool
	if k, err := nilPool.Key("ECDSA-P384"); err != nil || KeyAlgorithm(k.Public()) != "ECDSA-P384" {
		t.Fatalf("nil pool: %v", err)
	}
	nilPool.Close()
}

func TestGenerateKeyRejects(t *testing.T) {
	if _, err := GenerateKey("RSA-1024"); err == nil {
		t.Error("RSA-1024 accepted")
	}
}
