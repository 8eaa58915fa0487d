// Package kubetest runs a real kube-apiserver on loopback, over a loopback
// etcd of its own, for the tests of the code that talks to the Kubernetes
// API. There is no kubelet and no controller: objects are stored and
// served exactly as a cluster would, and nothing acts on them.
package kubetest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// StartTimeout bounds the wait for the API server to be ready.
const StartTimeout = 90 * time.Second

// APIServerBinary is $KUBE_APISERVER_BIN, else .bin/kube-apiserver in the
// module (`make control-plane`). Without it the test is skipped, except in
// CI, where it fails.
func APIServerBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("KUBE_APISERVER_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("KUBE_APISERVER_BIN: %v", err)
		}
		return p
	}
	p := filepath.Join(etcdtest.ModuleRoot(tb), ".bin", "kube-apiserver")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("no kube-apiserver at %s: make control-plane", p)
		}
		tb.Skipf("no kube-apiserver: set KUBE_APISERVER_BIN or run `make control-plane` to build %s", p)
	}
	return p
}

// APIServer is a running kube-apiserver.
type APIServer struct {
	// URL is https://ADDR:PORT.
	URL string
	// Kubeconfig is an admin kubeconfig (group system:masters) for it,
	// with namespace "default" in its context.
	Kubeconfig string
	// Dir holds its files and the logs (etcd.log, kube-apiserver.log).
	Dir string
}

// Clientset is an admin client.
func (s *APIServer) Clientset(tb testing.TB) kubernetes.Interface {
	tb.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// StartAPIServer starts etcd on etcdtest.Addr(etcdAddr) and kube-apiserver
// on etcdtest.Addr(apiAddr), both stopped when the test ends.
func StartAPIServer(tb testing.TB, etcdAddr, apiAddr int) *APIServer {
	tb.Helper()
	bin := APIServerBinary(tb)
	etcdBin := etcdtest.EtcdBinary(tb)
	dir := tb.TempDir()
	etcdHost, apiHost := etcdtest.Addr(etcdAddr), etcdtest.Addr(apiAddr)

	clientURL := "http://" + freePort(tb, etcdHost)
	peerURL := "http://" + freePort(tb, etcdHost)
	start(tb, dir, "etcd", exec.Command(etcdBin,
		"--name=apiserver-store", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=apiserver-store="+peerURL, "--listen-metrics-urls=http://"+freePort(tb, etcdHost),
	))

	pki := newPKI(tb, dir, apiHost)
	api := freePort(tb, apiHost)
	_, port, _ := net.SplitHostPort(api)
	apiProc := start(tb, dir, "kube-apiserver", exec.Command(bin,
		"--etcd-servers="+clientURL,
		"--bind-address="+apiHost, "--secure-port="+port, "--advertise-address="+apiHost,
		"--tls-cert-file="+pki.serverCert, "--tls-private-key-file="+pki.serverKey,
		"--client-ca-file="+pki.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saPub, "--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		// No controller makes the default ServiceAccount a Pod would name.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
	))

	s := &APIServer{URL: "https://" + api, Kubeconfig: filepath.Join(dir, "admin.conf"), Dir: dir}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: s.URL, CertificateAuthorityData: pki.caPEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: pki.adminCert, ClientKeyData: pki.adminKey}
	kc.Contexts["admin@test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin", Namespace: "default"}
	kc.CurrentContext = "admin@test"
	if err := clientcmd.WriteToFile(*kc, s.Kubeconfig); err != nil {
		tb.Fatal(err)
	}
	waitReady(tb, s, apiProc)
	return s
}

// start runs cmd with its output in dir/name.log until the test ends.
func start(tb testing.TB, dir, name string, cmd *exec.Cmd) *etcdtest.Process {
	tb.Helper()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		tb.Fatal(err)
	}
	p, err := etcdtest.StartProcess(cmd, log)
	if err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Stop(ctx, 10*time.Second)
	})
	return p
}

// waitReady polls /readyz until the server says ok.
func waitReady(tb testing.TB, s *APIServer, p *etcdtest.Process) {
	tb.Helper()
	cs := s.Clientset(tb)
	deadline := time.Now().Add(StartTimeout)
	var last error
	for time.Now().Before(deadline) && !p.Exited() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil {
			return
		}
		last = err
		time.Sleep(300 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(s.Dir, "kube-apiserver.log"))
	if len(log) > 4000 {
		log = log[len(log)-4000:]
	}
	tb.Fatalf("kube-apiserver not ready (within %v, or it ended): %v\n%s", StartTimeout, last, log)
}

// freePort is HOST:PORT of a port free on host a moment ago.
func freePort(tb testing.TB, host string) string {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type pki struct {
	caCert, serverCert, serverKey, saKey, saPub string
	caPEM, adminCert, adminKey                  []byte
}

// newPKI makes a CA, the API server's serving pair for host, an admin
// client pair in system:masters and a service-account signing key.
func newPKI(tb testing.TB, dir, host string) pki {
	tb.Helper()
	caKey := key(tb)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	sign := func(serial int64, tmpl *x509.Certificate) ([]byte, []byte) {
		k := key(tb)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
		if err != nil {
			tb.Fatal(err)
		}
		return pemOf("CERTIFICATE", der), keyPEM(tb, k)
	}
	p := pki{caPEM: pemOf("CERTIFICATE", caDER)}
	serverCert, serverKey := sign(2, &x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"}, IPAddresses: []net.IP{net.ParseIP(host)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.adminCert, p.adminKey = sign(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kubetest-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			tb.Fatal(err)
		}
		return path
	}
	p.caCert = write("ca.crt", p.caPEM)
	p.serverCert, p.serverKey = write("apiserver.crt", serverCert), write("apiserver.key", serverKey)
	sa := key(tb)
	p.saKey = write("sa.key", keyPEM(tb, sa))
	pub, err := x509.MarshalPKIXPublicKey(sa.Public())
	if err != nil {
		tb.Fatal(err)
	}
	p.saPub = write("sa.pub", pemOf("PUBLIC KEY", pub))
	return p
}

func key(tb testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func keyPEM(tb testing.TB, k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
