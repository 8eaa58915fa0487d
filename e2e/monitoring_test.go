package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/testtool"

	"go.yaml.in/yaml/v3"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/monitoring"
)

// The test's Prometheus scrapes every 2s and evaluates every 1s, so that
// the alert's own `for` dominates the wait; the job and the rules are used
// as init wrote them.
const (
	testScrapeInterval = 2 * time.Second
	testEvalInterval   = time.Second
)

// requirePrometheus finds Debian's prometheus (`make prometheus`).
func requirePrometheus(t *testing.T) string {
	t.Helper()
	return testtool.Path(t, "prometheus", "make prometheus installs Debian's prometheus")
}

// promAPI queries the test's Prometheus from the hub, where it runs.
type promAPI struct {
	base string
	http *http.Client
}

func (p promAPI) get(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("GET %s: %s: %w", path, body, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, into)
}

type promTarget struct {
	Labels     map[string]string `json:"labels"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	ScrapePool string            `json:"scrapePool"`
}

type promAlert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
}

// startPrometheus runs Prometheus in the hub on a copy of OUT/monitoring,
// whose prometheus.yml differs from init's only in its global intervals.
// The TLS files and the rules are found by the relative paths init wrote.
func startPrometheus(t *testing.T, r *run) promAPI {
	t.Helper()
	bin := requirePrometheus(t)
	src := filepath.Join(r.bundle.Dir, layout.MonitoringDir)
	dir := filepath.Join(t.TempDir(), "prometheus")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatalf("init --monitoring wrote no %s: %v", src, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, layout.MonitoringConfig))
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["global"] = map[string]string{
		"scrape_interval":     testScrapeInterval.String(),
		"scrape_timeout":      time.Second.String(),
		"evaluation_interval": testEvalInterval.String(),
	}
	b, err = yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "test-"+layout.MonitoringConfig)
	if err := os.WriteFile(config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The hub has a network of its own in namespace mode; in loopback mode
	// a free port of this machine.
	addr := "127.0.0.1:9090"
	if r.lab.Mode() == harness.ModeLoopback {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := r.lab.Command(context.Background(), bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	proc, err := etcdtest.StartProcess(cmd, logf)
	if err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = proc.Stop(ctx, 5*time.Second)
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", log)
		}
	})
	t.Logf("Prometheus on %s in the hub with %s: init's scrape job and rules unchanged, global scrape_interval %s, evaluation_interval %s",
		addr, layout.MonitoringConfig, testScrapeInterval, testEvalInterval)
	return promAPI{base: "http://" + addr, http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: r.lab.DialContext}}}
}

// TestPrometheusAlertsOnMemberDown scrapes a real cluster through the
// configuration `init --monitoring` wrote: every member's target is up
// over verified TLS with the monitoring client certificate; after SIGKILL
// of one member, EtcdMemberDown for that member fires within its `for`
// plus two scrape intervals.
func TestPrometheusAlertsOnMemberDown(t *testing.T) {
	requirePrometheus(t)
	r := startCluster(t, 3, harness.IPv4, "--monitoring", "--encryption-algorithm", "ECDSA-P256")
	prom := startPrometheus(t, r)
	begin := time.Now()

	// Every member up, scraped over https with verification.
	ctx := stepContext(t, time.Minute)
	var targets []promTarget
	for {
		var resp struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		}
		err := prom.get(ctx, "/api/v1/targets?state=active", &resp)
		targets = resp.ActiveTargets
		up := 0
		for _, tg := range targets {
			if tg.Health == "up" {
				up++
			}
		}
		if err == nil && up == len(r.cluster.Members) && len(targets) == up {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("targets not all up: %+v (last error: %v)", targets, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	var members []string
	for _, tg := range targets {
		m := r.cluster.Member(tg.Labels[monitoring.MemberLabel])
		if m == nil || tg.ScrapeURL != m.ClientURL()+"/metrics" || tg.Labels["job"] != monitoring.Job {
			t.Errorf("target %+v is not a member's client URL", tg)
			continue
		}
		members = append(members, tg.Labels[monitoring.MemberLabel]+"="+tg.ScrapeURL)
	}
	slices.Sort(members)
	var status struct {
		YAML string `json:"yaml"`
	}
	if err := prom.get(ctx, "/api/v1/status/config", &status); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status.YAML, "insecure_skip_verify: false") || strings.Contains(status.YAML, "insecure_skip_verify: true") {
		t.Errorf("the loaded configuration does not verify the members' certificates:\n%s", status.YAML)
	}
	var leaders []struct {
		Metric map[string]string `json:"metric"`
	}
	if err := prom.get(ctx, "/api/v1/query?query=etcd_server_has_leader%3D%3D1", &struct {
		Result *[]struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	}{Result: &leaders}); err != nil {
		t.Fatal(err)
	}
	if len(leaders) != len(r.cluster.Members) {
		t.Errorf("etcd_server_has_leader == 1 for %d members, want %d: %v", len(leaders), len(r.cluster.Members), leaders)
	}
	t.Logf("Prometheus targets up over verified TLS (CA %s, client certificate etcd-monitoring-client) %s after start: %s",
		layout.MonitoringCA, time.Since(begin).Round(time.Millisecond), strings.Join(members, ", "))

	// SIGKILL one member; its alert must fire, and no other member's.
	victim := r.cluster.Members[len(r.cluster.Members)-1]
	killCtx := stepContext(t, 30*time.Second)
	if err := victim.Kill(killCtx); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	const forPeriod = time.Minute // EtcdMemberDown's own `for`
	bound := forPeriod + 2*testScrapeInterval
	ctx = stepContext(t, bound+30*time.Second)
	var pendingAfter time.Duration
	for {
		var resp struct {
			Alerts []promAlert `json:"alerts"`
		}
		if err := prom.get(ctx, "/api/v1/alerts", &resp); err != nil && ctx.Err() == nil {
			t.Logf("alerts: %v", err)
		}
		fired := false
		for _, a := range resp.Alerts {
			if a.Labels["alertname"] != "EtcdMemberDown" {
				continue
			}
			if a.Labels[monitoring.MemberLabel] != victim.Name {
				t.Fatalf("EtcdMemberDown for %s, which runs: %+v", a.Labels[monitoring.MemberLabel], a)
			}
			switch a.State {
			case "pending":
				if pendingAfter == 0 {
					pendingAfter = time.Since(killed)
					t.Logf("EtcdMemberDown{member=%q} pending %s after SIGKILL (active since %s after it)",
						victim.Name, pendingAfter.Round(time.Millisecond), a.ActiveAt.Sub(killed).Round(time.Millisecond))
				}
			case "firing":
				fired = true
				if pendingAfter == 0 {
					t.Errorf("EtcdMemberDown fired without being pending first")
				}
				if since := a.ActiveAt.Sub(killed); since < 0 {
					t.Errorf("EtcdMemberDown active since %s before the kill", -since)
				}
			}
		}
		if fired {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("EtcdMemberDown{member=%q} not firing %s after SIGKILL; alerts: %+v", victim.Name, time.Since(killed).Round(time.Millisecond), resp.Alerts)
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("EtcdMemberDown{member=%q,severity=critical} firing %s after SIGKILL (for %s + 2 scrape intervals of %s = %s)",
		victim.Name, took.Round(time.Millisecond), forPeriod, testScrapeInterval, bound)
	if took < forPeriod {
		t.Errorf("EtcdMemberDown fired %s after the kill, before its for of %s", took, forPeriod)
	}
	if took > bound {
		t.Errorf("EtcdMemberDown fired %s after the kill, later than its for plus two scrape intervals (%s)", took, bound)
	}
}
