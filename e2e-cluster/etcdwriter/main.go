// Command etcdwriter is the StatefulSet stage's load: with the client bundle
// `init --runtime statefulset` writes (CA, client certificate and key), it puts
// a key into etcd every interval through one endpoint (the client Service) and
// records each put etcd acknowledged. On SIGTERM or SIGINT it stops writing,
// reads back the run's keys with a linearizable range read, and prints how
// many acknowledged writes are missing and the longest stretch without an
// acknowledged write. It exits 1 when an acknowledged key is missing.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e-cluster/acked"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

type options struct {
	endpoint, serverName, bundle string
	interval, timeout, report    time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.endpoint, "endpoint", "", "etcd client `URL` (https://ADDRESS:2379)")
	flag.StringVar(&o.serverName, "server-name", "", "`NAME` the server certificate must hold, when the endpoint is an address it does not (a Service's ClusterIP)")
	flag.StringVar(&o.bundle, "bundle", "", "`DIR` with ca.crt, client.crt and client.key")
	flag.DurationVar(&o.interval, "interval", 100*time.Millisecond, "time between writes")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "bound on each request")
	flag.DurationVar(&o.report, "report", 30*time.Second, "time between progress lines")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "etcdwriter:", err)
		os.Exit(1)
	}
}

func newClient(o options) (*clientv3.Client, error) {
	ca, err := os.ReadFile(filepath.Join(o.bundle, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("reading the client bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no CA certificate", filepath.Join(o.bundle, "ca.crt"))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(o.bundle, "client.crt"), filepath.Join(o.bundle, "client.key"))
	if err != nil {
		return nil, fmt.Errorf("the bundle's client certificate: %w", err)
	}
	cfg := clientv3.Config{
		Endpoints:   []string{o.endpoint},
		DialTimeout: o.timeout,
		TLS:         &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		// The client's own retries and their log lines would hide the
		// failures this program counts.
		Logger: zap.NewNop(),
	}
	if o.serverName != "" {
		// gRPC checks the server's certificate against the connection's
		// authority, not tls.Config.ServerName.
		cfg.DialOptions = []grpc.DialOption{grpc.WithAuthority(o.serverName)}
	}
	return clientv3.New(cfg)
}

func run(o options) error {
	cli, err := newClient(o)
	if err != nil {
		return err
	}
	defer cli.Close()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()

	start := time.Now()
	prefix := "/e2e-cluster/etcdwriter/" + start.UTC().Format("150405") + "/"
	writes := acked.New("etcdwriter", os.Stderr, start)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	progress := time.NewTicker(o.report)
	defer progress.Stop()
	fmt.Fprintf(os.Stderr, "etcdwriter: a key every %s through %s (server name %s)\n", o.interval, o.endpoint, o.serverName)
	var lastErr string
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
		case <-progress.C:
			ok, failed := writes.Counts()
			fmt.Fprintf(os.Stderr, "etcdwriter: %d acknowledged, %d failed\n", ok, failed)
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		key := fmt.Sprintf("%s%06d", prefix, n)
		rctx, rcancel := context.WithTimeout(context.Background(), o.timeout)
		_, err := cli.Put(rctx, key, fmt.Sprint(n))
		rcancel()
		at := time.Now()
		if err != nil {
			writes.Fail()
			// One line per kind of failure, not one per write.
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				fmt.Fprintf(os.Stderr, "etcdwriter: put failed: %.200s\n", msg)
			}
			continue
		}
		lastErr = ""
		writes.Ack(key, at)
	}
	return verify(cli, prefix, writes, time.Now())
}

// verify reads the run's keys back (retrying while etcd does not answer) and
// prints the summary.
func verify(cli *clientv3.Client, prefix string, writes *acked.Ledger, end time.Time) error {
	var resp *clientv3.GetResponse
	err := acked.ReadBack(2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		resp, err = cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		return err
	})
	if err != nil {
		return fmt.Errorf("reading back the keys written: %w", err)
	}
	found := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		found[string(kv.Key)] = true
	}
	sum := writes.Check(found, end)
	sum.Print(os.Stdout, "etcdwriter", "keys")
	return sum.Err()
}
