package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/testtool"
)

func TestRulesCheck(t *testing.T) {
	file := filepath.Join(t.TempDir(), layout.MonitoringRules)
	if err := os.WriteFile(file, Rules(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testtool.Promtool(t), "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestRulesUnitTests runs the alerts' unit tests, and checks that every
// alert has a case in which it fires.
func TestRulesUnitTests(t *testing.T) {
	out, err := exec.Command(testtool.Promtool(t), "test", "rules", filepath.Join("testdata", "etcd-alerts.test.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				For   string `yaml:"for"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(Rules(), &rules); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "etcd-alerts.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if !fires[r.Alert] {
				t.Errorf("alert %s has no unit test in which it fires", r.Alert)
			}
			if r.Alert == "EtcdMemberDown" && r.For != "1m" {
				t.Errorf("EtcdMemberDown waits %q, want 1m", r.For)
			}
		}
	}
	t.Logf("promtool test rules: every alert fires in its test: %s", strings.Join(alerts, ", "))
}

func TestScrapeConfig(t *testing.T) {
	c := &spec.Cluster{Hosts: []spec.Host{{Name: "etcd01", Address: "10.107.88.15"}, {Name: "etcd02", Address: "fd00::16"}}}
	cfg := ScrapeConfigFor(c)
	if len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("%d jobs, want 1", len(cfg.ScrapeConfigs))
	}
	job := cfg.ScrapeConfigs[0]
	var targets []string
	for _, sc := range job.StaticConfigs {
		targets = append(targets, sc.Targets[0]+"="+sc.Labels[MemberLabel])
	}
	if want := []string{"10.107.88.15:2379=etcd01", "[fd00::16]:2379=etcd02"}; !slices.Equal(targets, want) {
		t.Errorf("targets %v, want %v", targets, want)
	}
	if job.Scheme != "https" || job.TLSConfig.CAFile != layout.MonitoringCA || job.TLSConfig.CertFile == "" || job.TLSConfig.KeyFile == "" {
		t.Errorf("job does not verify TLS with a client certificate: %+v", job)
	}
	b, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "insecure_skip_verify") {
		t.Errorf("configuration skips verification:\n%s", b)
	}
}
