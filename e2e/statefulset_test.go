package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

// TestStatefulSetMembers runs the etcd containers of the StatefulSet that
// `init --runtime statefulset` writes, three Pods each in a network
// namespace of its own, with exactly the container's command (kubelet's
// $(VAR) expansion, the downward API and the ConfigMap for the
// environment, the Secret mounted at its path, /etc/hosts standing in for
// the cluster's DNS). The members find each other by their DNS names under
// the headless Service and form one TLS cluster; the readiness probe's
// endpoint answers on the Pod's address; the healthcheck and the
// application client certificates write and read through any member,
// verifying the servers as the client Service's name; a client without a
// certificate is refused.
func TestStatefulSetMembers(t *testing.T) {
	tools := harness.RequireTools(t)
	lab := harness.NewLab(t)
	lab.RequireNamespaces(t, "a StatefulSet's members, which all listen on 0.0.0.0")
	hosts := lab.Hosts(t, 3, harness.IPv4)
	if err := lab.Wire(hosts); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	out, err := exec.Command(tools.CLI, "init", "--runtime", "statefulset", "--namespace", "apps", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	stream, err := os.ReadFile(filepath.Join(dir, "statefulset", "etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, stream)

	dns := map[string]string{}
	for i, h := range hosts {
		dns[fmt.Sprintf("etcd-%d.etcd.apps.svc.cluster.local", i)] = h.Address
	}
	var logs []string
	for i, h := range hosts {
		_, log, err := lab.StartStatefulSetPod(t, tools, h, harness.StatefulSetPod{
			StatefulSet: objs.sts, ConfigMaps: objs.configMaps, Secrets: objs.secrets, Ordinal: i, Hosts: dns,
		})
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, log)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("etcd-%d log:\n%s", i, tail(string(b), 30))
			}
		}
	})

	var endpoints []string
	for _, h := range hosts {
		endpoints = append(endpoints, "https://"+net.JoinHostPort(h.Address, "2379"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, h := range hosts {
		if err := waitReadyz(ctx, lab, h.Address); err != nil {
			t.Fatalf("%s: readiness endpoint: %v", h.Name, err)
		}
	}
	t.Logf("three members ready: /readyz answers 200 on every Pod address")

	ca := objs.secret(t, "etcd-members").Data["ca.crt"]
	health := objs.secret(t, "etcd-healthcheck-client")
	for _, ep := range endpoints {
		if err := handshake(ctx, lab, ca, health, strings.TrimPrefix(ep, "https://")); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: handshake: %v", ep, err)
		}
	}
	cli := stsClient(t, lab, ca, health, endpoints)
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	var got []string
	for _, m := range ml.Members {
		got = append(got, m.Name+" "+strings.Join(m.PeerURLs, ",")+" "+strings.Join(m.ClientURLs, ","))
	}
	slices.Sort(got)
	var want []string
	for i := range hosts {
		fqdn := fmt.Sprintf("etcd-%d.etcd.apps.svc.cluster.local", i)
		want = append(want, fmt.Sprintf("etcd-%d https://%s:2380 https://%s:2379", i, fqdn, fqdn))
	}
	t.Logf("member list:\n%s", strings.Join(got, "\n"))
	if !slices.Equal(got, want) {
		t.Errorf("members:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	app := stsClient(t, lab, ca, objs.secret(t, "etcd-client"), endpoints)
	if _, err := app.Put(ctx, "/apps/e2e", "written by the application client"); err != nil {
		t.Fatalf("put with the application client: %v", err)
	}
	for _, ep := range endpoints {
		one := stsClient(t, lab, ca, health, []string{ep})
		r, err := one.Get(ctx, "/apps/e2e")
		if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "written by the application client" {
			t.Errorf("%s: get %v, %v", ep, r, err)
		}
	}

	// No client certificate: every member refuses the handshake.
	for _, ep := range endpoints {
		err := handshake(ctx, lab, ca, nil, strings.TrimPrefix(ep, "https://"))
		if err == nil || !strings.Contains(err.Error(), "remote error: tls:") {
			t.Errorf("%s: a client without a certificate: want a TLS alert, got %v", ep, err)
		}
	}
}

type stsObjects struct {
	sts        *appsv1.StatefulSet
	configMaps []*corev1.ConfigMap
	secrets    []*corev1.Secret
}

func (o stsObjects) secret(t *testing.T, name string) *corev1.Secret {
	for _, s := range o.secrets {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Secret %s", name)
	return nil
}

func decodeObjects(t *testing.T, stream []byte) stsObjects {
	t.Helper()
	var o stsObjects
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatal(err)
		}
		var target any
		switch tm.Kind {
		case "StatefulSet":
			o.sts = &appsv1.StatefulSet{}
			target = o.sts
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			o.configMaps = append(o.configMaps, cm)
			target = cm
		case "Secret":
			s := &corev1.Secret{}
			o.secrets = append(o.secrets, s)
			target = s
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			t.Fatalf("%s: %v", tm.Kind, err)
		}
	}
	if o.sts == nil {
		t.Fatal("no StatefulSet in the stream")
	}
	return o
}

// tlsConfig trusts ca and names the server as the client Service, whose
// names every member's certificate carries: how an application in the
// cluster connects.
func tlsConfig(ca []byte, client *corev1.Secret) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("ca.crt holds no certificate")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "etcd-client.apps.svc.cluster.local", MinVersion: tls.VersionTLS12}
	if client != nil {
		pair, err := tls.X509KeyPair(client.Data["tls.crt"], client.Data["tls.key"])
		if err != nil {
			return nil, fmt.Errorf("Secret %s: %w", client.Name, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func stsClient(t *testing.T, lab *harness.Lab, ca []byte, client *corev1.Secret, endpoints []string) *clientv3.Client {
	t.Helper()
	cfg, err := tlsConfig(ca, client)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         cfg,
		DialTimeout: 5 * time.Second,
		// gRPC names the server by the dialed address (a Pod IP, in no
		// certificate); an application in the cluster dials the client
		// Service's name instead.
		DialOptions: []grpc.DialOption{
			grpc.WithAuthority(cfg.ServerName),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return lab.DialContext(ctx, "tcp", addr)
			}),
		},
		Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// handshake completes a TLS handshake and reads once, so that a refusal
// sent after the handshake (TLS 1.3) is seen.
func handshake(ctx context.Context, lab *harness.Lab, ca []byte, client *corev1.Secret, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := lab.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	cfg, err := tlsConfig(ca, client)
	if err != nil {
		return err
	}
	conn := tls.Client(raw, cfg)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := conn.HandshakeContext(ctx); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// waitReadyz polls the readiness probe's endpoint on the Pod's address, as
// kubelet does.
func waitReadyz(ctx context.Context, lab *harness.Lab, addr string) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext}}
	url := "http://" + net.JoinHostPort(addr, "2381") + "/readyz"
	var last error
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", url, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
