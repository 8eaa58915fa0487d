// Command writer is the whole-cluster run's load: through the kube-apiserver,
// with a kubeconfig's client certificate (admin.conf) over net/http, it creates a ConfigMap every
// interval and records each one the apiserver acknowledged, and asks /readyz
// every second. On SIGTERM or SIGINT it stops writing, lists the ConfigMaps it
// made, and prints how many acknowledged writes are missing, the longest
// stretch without an acknowledged write, and the /readyz failures seen. It
// exits 1 when an acknowledged ConfigMap is missing.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e-cluster/acked"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const label = "e2e-cluster/writer"

type stats struct {
	mu            sync.Mutex
	writes        *acked.Ledger
	readyzFailed  int
	readyzAsked   int
	lastReadyzErr string
}

func main() {
	kubeconfig := flag.String("kubeconfig", "/etc/kubernetes/admin.conf", "kubeconfig `FILE` with the apiserver and the credentials")
	namespace := flag.String("namespace", "default", "namespace of the ConfigMaps")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between writes")
	timeout := flag.Duration("timeout", 5*time.Second, "bound on each request")
	report := flag.Duration("report", 30*time.Second, "time between progress lines")
	flag.Parse()
	if err := run(*kubeconfig, *namespace, *interval, *timeout, *report); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, namespace string, interval, timeout, report time.Duration) error {
	cs, err := newClient(kubeconfig, timeout)
	if err != nil {
		return err
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()

	start := time.Now()
	st := &stats{writes: acked.New("writer", os.Stderr, start)}
	run := start.UTC().Format("150405")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		probeReadyz(ctx, cs, st)
	}()

	tick := time.NewTicker(interval)
	defer tick.Stop()
	progress := time.NewTicker(report)
	defer progress.Stop()
	fmt.Fprintf(os.Stderr, "writer: a ConfigMap every %s through %s\n", interval, cs.server)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
		case <-progress.C:
			st.mu.Lock()
			ok, failed := st.writes.Counts()
			fmt.Fprintf(os.Stderr, "writer: %d acknowledged, %d failed, /readyz failed %d of %d\n", ok, failed, st.readyzFailed, st.readyzAsked)
			st.mu.Unlock()
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		name := fmt.Sprintf("w-%s-%06d", run, n)
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{label: run}},
			Data:       map[string]string{"n": fmt.Sprint(n)},
		}
		cm.APIVersion, cm.Kind = "v1", "ConfigMap"
		err := cs.do(context.Background(), http.MethodPost, "/api/v1/namespaces/"+namespace+"/configmaps", cm, http.StatusCreated, nil)
		at := time.Now()
		st.mu.Lock()
		if err == nil {
			st.writes.Ack(name, at)
		} else {
			st.writes.Fail()
		}
		st.mu.Unlock()
	}
	end := time.Now()
	wg.Wait()
	return verify(cs, namespace, run, st, end)
}

func probeReadyz(ctx context.Context, cs *client, st *stats) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := cs.do(ctx, http.MethodGet, "/readyz", nil, http.StatusOK, nil)
		if ctx.Err() != nil {
			return
		}
		st.mu.Lock()
		st.readyzAsked++
		if err != nil {
			st.readyzFailed++
			// One line per kind of failure; the body lists every check.
			if msg := readyzSummary(err.Error()); msg != st.lastReadyzErr {
				st.lastReadyzErr = msg
				fmt.Fprintf(os.Stderr, "writer: /readyz failed: %.160s\n", msg)
			}
		} else {
			st.lastReadyzErr = ""
		}
		st.mu.Unlock()
	}
}

// readyzSummary is a /readyz error on one line: the status, and of the
// body's list of checks only the failing ones ("[-]etcd failed: ...").
func readyzSummary(msg string) string {
	lines := strings.Split(msg, "\n")
	first := lines[0]
	if i := strings.Index(first, "[+]"); i > 0 {
		first = first[:i]
	}
	var failed []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "[-]") {
			failed = append(failed, strings.Fields(l)[0])
		}
	}
	if len(failed) > 0 {
		first += " failing: " + strings.Join(failed, " ")
	}
	return strings.Join(strings.Fields(first), " ")
}

// verify lists the run's ConfigMaps, retrying while the apiserver does not
// answer, and prints the summary.
func verify(cs *client, namespace, run string, st *stats, end time.Time) error {
	var list corev1.ConfigMapList
	path := "/api/v1/namespaces/" + namespace + "/configmaps?labelSelector=" + url.QueryEscape(label+"="+run)
	cs.http.Timeout = 30 * time.Second
	err := acked.ReadBack(2*time.Minute, func() error {
		return cs.do(context.Background(), http.MethodGet, path, nil, http.StatusOK, &list)
	})
	if err != nil {
		return fmt.Errorf("listing the ConfigMaps written: %w", err)
	}
	found := make(map[string]bool, len(list.Items))
	for _, cm := range list.Items {
		found[cm.Name] = true
	}
	sum := st.writes.Check(found, end)
	sum.Print(os.Stdout, "writer", "ConfigMaps")
	fmt.Printf("writer: /readyz failed %d of %d times asked\n", st.readyzFailed, st.readyzAsked)
	return sum.Err()
}

// client talks to the apiserver named in a kubeconfig with its first
// cluster's CA and its first user's client certificate, as kubectl would with
// admin.conf.
type client struct {
	server string
	http   *http.Client
}

type kubeconfigFile struct {
	Clusters []struct {
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthorityData []byte `json:"certificate-authority-data"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		User struct {
			ClientCertificateData []byte `json:"client-certificate-data"`
			ClientKeyData         []byte `json:"client-key-data"`
		} `json:"user"`
	} `json:"users"`
}

func newClient(path string, timeout time.Duration) (*client, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(raw, &kc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	if len(kc.Clusters) == 0 || len(kc.Users) == 0 {
		return nil, fmt.Errorf("%s: no cluster or no user", path)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(kc.Clusters[0].Cluster.CertificateAuthorityData) {
		return nil, fmt.Errorf("%s: no CA certificate in certificate-authority-data", path)
	}
	cert, err := tls.X509KeyPair(kc.Users[0].User.ClientCertificateData, kc.Users[0].User.ClientKeyData)
	if err != nil {
		return nil, fmt.Errorf("%s: the user's client certificate: %w", path, err)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 4,
	}
	return &client{server: kc.Clusters[0].Cluster.Server, http: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// do sends body (JSON) and decodes the answer into out; any status but want
// is an error carrying the apiserver's message.
func (c *client) do(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %.4000s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
