// Package monitoring is what a Prometheus server needs to watch the
// cluster: a scrape configuration that reaches every member's /metrics over
// verified TLS with a client certificate of the etcd CA, and alerting rules
// for the conditions operators page on.
package monitoring

import (
	"bytes"
	_ "embed"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Job is the scrape job's name; the rules select it.
const Job = "etcd"

// MemberLabel is the target label naming the member (the host's name).
const MemberLabel = "member"

// Intervals of the written configuration. The rules' rate windows (5m and
// more) hold many samples at 15s, and EtcdMemberDown's 1m is four scrapes.
const (
	ScrapeInterval     = "15s"
	EvaluationInterval = "15s"
)

//go:embed etcd-alerts.yml
var rules []byte

// Rules is the alerting rules file.
func Rules() []byte { return bytes.Clone(rules) }

// Config is a Prometheus configuration file, as much of it as is written.
type Config struct {
	Global        Global         `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []ScrapeConfig `yaml:"scrape_configs"`
}

// Global holds the default intervals.
type Global struct {
	ScrapeInterval     string `yaml:"scrape_interval"`
	EvaluationInterval string `yaml:"evaluation_interval"`
}

// ScrapeConfig is one scrape job.
type ScrapeConfig struct {
	JobName       string         `yaml:"job_name"`
	Scheme        string         `yaml:"scheme"`
	MetricsPath   string         `yaml:"metrics_path"`
	TLSConfig     TLSConfig      `yaml:"tls_config"`
	StaticConfigs []StaticConfig `yaml:"static_configs"`
}

// TLSConfig verifies the members' server certificates against the etcd CA
// and presents the monitoring client certificate.
type TLSConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// StaticConfig is one target with its labels.
type StaticConfig struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels"`
}

// ScrapeConfigFor is the configuration for every host of the spec: each
// member's client URL, https://ADDRESS:2379/metrics, where etcd serves its
// metrics behind the same client-certificate check as its API. The
// listen-metrics-urls port (http://127.0.0.1:2381) answers on the host
// itself only, for kubelet's probes.
func ScrapeConfigFor(c *spec.Cluster) Config {
	cert, key := layout.MonitoringClient.Cert(""), layout.MonitoringClient.Key("")
	job := ScrapeConfig{
		JobName:     Job,
		Scheme:      "https",
		MetricsPath: "/metrics",
		TLSConfig:   TLSConfig{CAFile: layout.MonitoringCA, CertFile: cert, KeyFile: key},
	}
	for _, h := range c.Hosts {
		job.StaticConfigs = append(job.StaticConfigs, StaticConfig{
			Targets: []string{h.HostPort(spec.ClientPort)},
			Labels:  map[string]string{MemberLabel: h.Name},
		})
	}
	return Config{
		Global:        Global{ScrapeInterval: ScrapeInterval, EvaluationInterval: EvaluationInterval},
		RuleFiles:     []string{layout.MonitoringRules},
		ScrapeConfigs: []ScrapeConfig{job},
	}
}

// Marshal writes a configuration with a header that says what it is.
func Marshal(cfg Config) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Prometheus configuration for the etcd cluster, written by `etcd-staticpod init --monitoring`.\n" +
		"# Paths are relative to this file's folder: copy the folder as a whole, or merge the job\n" +
		"# below into your own configuration with absolute paths. The key " + cfg.ScrapeConfigs[0].TLSConfig.KeyFile + " is\n" +
		"# a client credential of the etcd cluster: keep it readable by Prometheus alone.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("encode the Prometheus configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode the Prometheus configuration: %w", err)
	}
	return buf.Bytes(), nil
}
