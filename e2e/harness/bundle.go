package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Bundle is the output folder of `etcd-staticpod init`.
type Bundle struct {
	Dir   string
	Hosts []Host
	// Printed is what init printed.
	Printed string
}

// Init runs `etcd-staticpod init --hosts ... --out DIR` with extra flags
// and returns the bundle it wrote into a fresh folder.
func Init(t testing.TB, tools Tools, hosts []Host, flags ...string) Bundle {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"init", "--hosts", HostsFlag(hosts), "--out", dir}, flags...)
	out, err := exec.CommandContext(ctx, tools.CLI, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcd-staticpod %q: %v\n%s", args, err, out)
	}
	return Bundle{Dir: dir, Hosts: hosts, Printed: string(out)}
}

// HostRoot is the host's folder: a copy of what lands under its /.
func (b Bundle) HostRoot(name string) string { return filepath.Join(b.Dir, name) }

// CAStore is the CA certificate and key kept on the machine that ran init.
func (b Bundle) CAStore() (cert, key string) {
	d := filepath.Join(b.Dir, "pki", "etcd")
	return filepath.Join(d, "ca.crt"), filepath.Join(d, "ca.key")
}

// Credentials are the PEM files of a TLS client: the CA it trusts and,
// unless empty, its certificate and key.
type Credentials struct {
	CA, Cert, Key string
}

// APIServerClient is the apiserver-etcd-client certificate in a host's bundle.
func (b Bundle) APIServerClient(host string) Credentials {
	pki := filepath.Join(b.HostRoot(host), "etc", "kubernetes", "pki")
	return Credentials{
		CA:   filepath.Join(pki, "etcd", "ca.crt"),
		Cert: filepath.Join(pki, "apiserver-etcd-client.crt"),
		Key:  filepath.Join(pki, "apiserver-etcd-client.key"),
	}
}

// HealthcheckClient is the healthcheck-client certificate in a host's bundle.
func (b Bundle) HealthcheckClient(host string) Credentials {
	pki := filepath.Join(b.HostRoot(host), "etc", "kubernetes", "pki", "etcd")
	return Credentials{
		CA:   filepath.Join(pki, "ca.crt"),
		Cert: filepath.Join(pki, "healthcheck-client.crt"),
		Key:  filepath.Join(pki, "healthcheck-client.key"),
	}
}

// TLSConfig loads the files.
func (c Credentials) TLSConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA %s holds no PEM certificate", c.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.Cert != "" && c.Key != "":
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case c.Cert != "" || c.Key != "":
		return nil, errors.New("a client certificate needs both its certificate and its key")
	}
	return cfg, nil
}
