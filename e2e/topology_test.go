package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

// TestSingleMember: one host is a complete cluster of its own.
func TestSingleMember(t *testing.T) {
	r := startCluster(t, 1, harness.IPv4)
	checkServes(t, r)
}

// TestFiveMembers: five hosts form one cluster.
func TestFiveMembers(t *testing.T) {
	r := startCluster(t, 5, harness.IPv4)
	checkServes(t, r)
}

// TestECDSAP256 runs a cluster whose every key is ECDSA P-256, and checks
// that the members really serve ECDSA certificates.
func TestECDSAP256(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4, "--encryption-algorithm", "ECDSA-P256")
	checkServes(t, r)
	for _, m := range r.cluster.Members {
		cert, err := r.lab.ServerCertificate(stepContext(t, 10*time.Second), m.ClientURL(), r.apiserver())
		if err != nil {
			t.Fatal(err)
		}
		key, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok || key.Curve != elliptic.P256() {
			t.Errorf("%s serves a %T key, want ECDSA P-256", m.Name, cert.PublicKey)
		}
	}
}

// TestIPv6 runs a cluster on IPv6 addresses of fd00:e2e::/64, which the lab
// assigns inside its own namespaces.
func TestIPv6(t *testing.T) {
	r := newRun(t)
	r.lab.RequireNamespaces(t, "an IPv6 cluster")
	r.start(t, 3, harness.IPv6)
	for _, m := range r.cluster.Members {
		u, err := url.Parse(m.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.Host, "[fd00:e2e::") {
			t.Fatalf("%s advertises %s, want an address of fd00:e2e::/64", m.Name, m.ClientURL())
		}
	}
	checkServes(t, r)
}
