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
	"sort"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// gapReport is the shortest stretch without an acknowledged write that is
// logged as it ends.
const gapReport = time.Second

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
	acked := map[string]time.Time{}
	failed := 0
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	progress := time.NewTicker(o.report)
	defer progress.Stop()
	fmt.Fprintf(os.Stderr, "etcdwriter: a key every %s through %s (server name %s)\n", o.interval, o.endpoint, o.serverName)
	lastAck, failedAtAck := start, 0
	var lastErr string
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
		case <-progress.C:
			fmt.Fprintf(os.Stderr, "etcdwriter: %d acknowledged, %d failed\n", len(acked), failed)
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
			failed++
			// One line per kind of failure, not one per write.
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				fmt.Fprintf(os.Stderr, "etcdwriter: put failed: %.200s\n", msg)
			}
			continue
		}
		lastErr = ""
		acked[key] = at
		if d := at.Sub(lastAck); d >= gapReport {
			fmt.Fprintf(os.Stderr, "etcdwriter: no acknowledged write for %s (%s to %s), %d failed or unanswered meanwhile\n",
				d.Round(time.Millisecond), lastAck.UTC().Format("15:04:05.0"), at.UTC().Format("15:04:05.0"), failed-failedAtAck)
		}
		lastAck, failedAtAck = at, failed
	}
	return verify(cli, o, prefix, acked, failed, start, time.Now())
}

// verify reads the run's keys back (retrying while etcd does not answer) and
// prints the summary.
func verify(cli *clientv3.Client, o options, prefix string, acked map[string]time.Time, failed int, start, end time.Time) error {
	var resp *clientv3.GetResponse
	var err error
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err = cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return fmt.Errorf("reading back the keys written: %w", err)
	}
	found := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		found[string(kv.Key)] = true
	}
	var lost []string
	times := make([]time.Time, 0, len(acked)+2)
	times = append(times, start)
	for key, at := range acked {
		if !found[key] {
			lost = append(lost, key)
		}
		times = append(times, at)
	}
	times = append(times, end)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var gap time.Duration
	var gapEnd time.Time
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d > gap {
			gap, gapEnd = d, times[i]
		}
	}
	sort.Strings(lost)
	fmt.Printf("etcdwriter: %d lost of %d acknowledged writes (%d failed or unanswered, %d keys found) over %s\n",
		len(lost), len(acked), failed, len(found), end.Sub(start).Round(time.Second))
	fmt.Printf("etcdwriter: longest stretch without an acknowledged write: %s (ended %s)\n",
		gap.Round(time.Millisecond), gapEnd.UTC().Format("15:04:05"))
	if len(lost) > 0 {
		return fmt.Errorf("acknowledged but missing: %v", lost)
	}
	return nil
}
