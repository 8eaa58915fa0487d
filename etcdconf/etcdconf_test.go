package etcdconf

import (
	"flag"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.etcd.io/etcd/pkg/v3/flags"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const testdata = "../testdata/systemd"

func guideCluster(t *testing.T, extra ...spec.Arg) *spec.Cluster {
	t.Helper()
	c := &spec.Cluster{Hosts: []spec.Host{
		{Name: "etcd01", Address: "10.107.88.15"},
		{Name: "etcd02", Address: "10.107.88.16"},
		{Name: "etcd03", Address: "10.107.88.17"},
	}}
	c.Etcd.ExtraArgs = extra
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatalf("guide cluster: %v", err)
	}
	return c
}

func render(t *testing.T, c *spec.Cluster, h spec.Host) (*Member, []byte) {
	t.Helper()
	m, err := For(c, h)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, out
}

// golden compares out with testdata/systemd/name, or rewrites it with -update.
func golden(t *testing.T, name string, out []byte) {
	t.Helper()
	p := filepath.Join(testdata, name)
	if *update {
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read golden file (go test -update writes it): %v", err)
	}
	if d := cmp.Diff(string(want), string(out)); d != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", name, d)
	}
}

func TestGolden(t *testing.T) {
	c := guideCluster(t)
	for _, h := range c.Hosts {
		_, out := render(t, c, h)
		golden(t, h.Name+".etcd.conf.yml", out)
	}
}

// load runs etcd's own loader on the file, as etcd --config-file does.
func load(t *testing.T, data []byte) *embed.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "etcd.conf.yml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := embed.ConfigFromFile(p)
	if err != nil {
		t.Fatalf("etcd's loader refused the file: %v\n%s", err, data)
	}
	return cfg
}

// flagConfig is what etcd makes of the same settings given as flags, the
// static Pod's way (etcd's own flag parser, embed.Config.AddFlags).
func flagConfig(t *testing.T, args []spec.Arg) *embed.Config {
	t.Helper()
	cfg := embed.NewConfig()
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.AddFlags(fs)
	var argv []string
	for _, a := range args {
		// etcdmain registers this one itself, beside embed's flags.
		if a.Name == "initial-cluster-state" {
			cfg.ClusterState = a.Value
			continue
		}
		argv = append(argv, "--"+a.Name+"="+a.Value)
	}
	if err := fs.Parse(argv); err != nil {
		t.Fatalf("etcd's flags: %v", err)
	}
	// What etcdmain does after parsing (etcdmain/config.go, configFromCmdLine).
	cfg.ListenPeerUrls = flags.UniqueURLsFromFlag(fs, "listen-peer-urls")
	cfg.AdvertisePeerUrls = flags.UniqueURLsFromFlag(fs, "initial-advertise-peer-urls")
	cfg.ListenClientUrls = flags.UniqueURLsFromFlag(fs, "listen-client-urls")
	cfg.AdvertiseClientUrls = flags.UniqueURLsFromFlag(fs, "advertise-client-urls")
	cfg.ListenMetricsUrls = flags.UniqueURLsFromFlag(fs, "listen-metrics-urls")
	cfg.ClientTLSInfo.AllowedHostnames = flags.StringsFromFlag(fs, "client-cert-allowed-hostname")
	cfg.PeerTLSInfo.AllowedCNs = flags.StringsFromFlag(fs, "peer-cert-allowed-cn")
	cfg.PeerTLSInfo.AllowedHostnames = flags.StringsFromFlag(fs, "peer-cert-allowed-hostname")
	cfg.CipherSuites = flags.StringsFromFlag(fs, "cipher-suites")
	return cfg
}

// TestLoaderAgreesWithFlags loads every host's file with etcd's own loader
// and compares what etcd then runs with against the static Pod's flags.
func TestLoaderAgreesWithFlags(t *testing.T) {
	cases := map[string][]spec.Arg{
		"guide": nil,
		"extra args": {
			{Name: "quota-backend-bytes", Value: "8589934592"},
			{Name: "snapshot-count", Value: "5000"},
			{Name: "heartbeat-interval", Value: "250"},
			{Name: "election-timeout", Value: "2500"},
			{Name: "auto-compaction-mode", Value: "periodic"},
			{Name: "auto-compaction-retention", Value: "8h"},
			{Name: "listen-metrics-urls", Value: "http://0.0.0.0:2381"},
			{Name: "grpc-keepalive-timeout", Value: "30s"},
			{Name: "cipher-suites", Value: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
			{Name: "peer-cert-allowed-cn", Value: "etcd01"},
			{Name: "log-level", Value: "warn"},
			{Name: "max-learners", Value: "2"},
			{Name: "watch-progress-notify-interval", Value: "10s"},
		},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			c := guideCluster(t, extra...)
			for _, h := range c.Hosts {
				m, out := render(t, c, h)
				got := load(t, out)
				args, err := manifests.EtcdArgs(c, h)
				if err != nil {
					t.Fatal(err)
				}
				want := flagConfig(t, args)
				// The file reads the keys from systemd's credentials.
				want.ClientTLSInfo.KeyFile = layout.EtcdCredentialsDir + "/server.key"
				want.PeerTLSInfo.KeyFile = layout.EtcdCredentialsDir + "/peer.key"
				compareConfigs(t, h.Name, want, got)
				if len(m.Credentials) != 2 {
					t.Errorf("%s: credentials %+v, want server.key and peer.key", h.Name, m.Credentials)
				}
			}
		})
	}
}

// compareConfigs compares the settings etcd runs with.
func compareConfigs(t *testing.T, host string, want, got *embed.Config) {
	t.Helper()
	urls := func(us []url.URL) []string {
		var s []string
		for _, u := range us {
			s = append(s, u.String())
		}
		return s
	}
	checks := []struct {
		what      string
		want, got any
	}{
		{"name", want.Name, got.Name},
		{"data-dir", want.Dir, got.Dir},
		{"initial-cluster", want.InitialCluster, got.InitialCluster},
		{"initial-cluster-state", want.ClusterState, got.ClusterState},
		{"listen-peer-urls", urls(want.ListenPeerUrls), urls(got.ListenPeerUrls)},
		{"listen-client-urls", urls(want.ListenClientUrls), urls(got.ListenClientUrls)},
		{"advertise-client-urls", urls(want.AdvertiseClientUrls), urls(got.AdvertiseClientUrls)},
		{"initial-advertise-peer-urls", urls(want.AdvertisePeerUrls), urls(got.AdvertisePeerUrls)},
		{"listen-metrics-urls", urls(want.ListenMetricsUrls), urls(got.ListenMetricsUrls)},
		{"peer allowed CNs", want.PeerTLSInfo.AllowedCNs, got.PeerTLSInfo.AllowedCNs},
		{"snapshot-count", want.SnapshotCount, got.SnapshotCount},
		{"watch-progress-notify-interval", want.WatchProgressNotifyInterval, got.WatchProgressNotifyInterval},
		{"feature-gates InitialCorruptCheck", want.ServerFeatureGate.Enabled("InitialCorruptCheck"), got.ServerFeatureGate.Enabled("InitialCorruptCheck")},
		{"quota-backend-bytes", want.QuotaBackendBytes, got.QuotaBackendBytes},
		{"heartbeat-interval", want.TickMs, got.TickMs},
		{"election-timeout", want.ElectionMs, got.ElectionMs},
		{"auto-compaction-mode", want.AutoCompactionMode, got.AutoCompactionMode},
		{"auto-compaction-retention", want.AutoCompactionRetention, got.AutoCompactionRetention},
		{"grpc-keepalive-timeout", want.GRPCKeepAliveTimeout, got.GRPCKeepAliveTimeout},
		{"cipher-suites", want.CipherSuites, got.CipherSuites},
		{"log-level", want.LogLevel, got.LogLevel},
		{"max-learners", want.MaxLearners, got.MaxLearners},
		{"client TLS", want.ClientTLSInfo.String(), got.ClientTLSInfo.String()},
		{"client cert auth", want.ClientTLSInfo.ClientCertAuth, got.ClientTLSInfo.ClientCertAuth},
		{"peer TLS", want.PeerTLSInfo.String(), got.PeerTLSInfo.String()},
		{"peer cert auth", want.PeerTLSInfo.ClientCertAuth, got.PeerTLSInfo.ClientCertAuth},
	}
	for _, c := range checks {
		if !cmp.Equal(c.want, c.got, cmpopts.EquateEmpty()) {
			t.Errorf("%s: %s from the file is %v, from the flags %v", host, c.what, c.got, c.want)
		}
	}
	if err := got.Validate(); err != nil {
		t.Errorf("%s: etcd's validation refused the loaded config: %v", host, err)
	}
}

// TestDurationsAreNanoseconds: etcd's loader refuses "5s" in the file, the
// trap this package exists to avoid.
func TestDurationsAreNanoseconds(t *testing.T) {
	c := guideCluster(t)
	_, out := render(t, c, c.Hosts[0])
	if !strings.Contains(string(out), "watch-progress-notify-interval: 5000000000\n") {
		t.Errorf("want the interval in nanoseconds:\n%s", out)
	}
	p := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(p, []byte("watch-progress-notify-interval: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := embed.ConfigFromFile(p); err == nil {
		t.Error("etcd's loader took a duration written as 5s; the premise of the nanoseconds changed")
	}
	if got := load(t, out).WatchProgressNotifyInterval; got != 5*time.Second {
		t.Errorf("loaded interval %v, want 5s", got)
	}
}

// TestKeysMatchEtcd checks the key table against etcd's own types: every
// top-level key that is a field of embed.Config has the kind of that
// field, and every flag is one etcd's flag set knows.
func TestKeysMatchEtcd(t *testing.T) {
	fields := map[string]reflect.Type{}
	ct := reflect.TypeOf(embed.Config{})
	for i := range ct.NumField() {
		name, _, _ := strings.Cut(ct.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = ct.Field(i).Type
		}
	}
	fileOnly := map[string]bool{ // configJSON's keys, strings in the file
		"listen-peer-urls": true, "listen-client-urls": true, "listen-client-http-urls": true,
		"initial-advertise-peer-urls": true, "advertise-client-urls": true,
		"cors": true, "host-whitelist": true, "feature-gates": true,
	}
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	embed.NewConfig().AddFlags(fs)
	// etcdmain registers these itself, beside embed's flags.
	etcdmainFlags := map[string]bool{"initial-cluster-state": true, "v2-deprecation": true}
	durType := reflect.TypeOf(time.Duration(0))
	for fl, k := range keys {
		if fs.Lookup(fl) == nil && !etcdmainFlags[fl] {
			t.Errorf("%s: not an etcd flag", fl)
		}
		if k.block != top {
			continue
		}
		if fileOnly[k.name] {
			if k.kind != kindString {
				t.Errorf("%s: the file reads it as a string", fl)
			}
			continue
		}
		ft, ok := fields[k.name]
		if !ok {
			t.Errorf("%s: %q is no key of etcd's config file", fl, k.name)
			continue
		}
		var want kind
		switch {
		case ft == durType:
			want = kindDuration
		case ft.Kind() == reflect.Bool:
			want = kindBool
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			want = kindList
		case ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Int64:
			want = kindInt
		case ft.Kind() >= reflect.Uint && ft.Kind() <= reflect.Uint64:
			want = kindUint
		case ft.Kind() == reflect.String:
			want = kindString
		default:
			t.Errorf("%s: etcd's type %s is not handled", fl, ft)
			continue
		}
		if k.kind != want {
			t.Errorf("%s: kind %d, etcd's field is %s", fl, k.kind, ft)
		}
	}
}

// TestRefusesWhatTheFileCannotSay: an extra argument with no key in the
// file would be ignored by etcd; it is refused, naming it.
func TestRefusesWhatTheFileCannotSay(t *testing.T) {
	for _, a := range []spec.Arg{
		{Name: "client-crl-file", Value: "/etc/crl.pem"},
		{Name: "no-such-flag", Value: "1"},
		{Name: "snapshot-count", Value: "many"},
		{Name: "grpc-keepalive-timeout", Value: "30"},
	} {
		c := guideCluster(t, a)
		_, err := For(c, c.Hosts[0])
		if err == nil || !strings.Contains(err.Error(), a.Name+"="+a.Value) {
			t.Errorf("%s=%s: error %v, want one naming it", a.Name, a.Value, err)
		}
	}
}

// TestFlagsReadBack: the file read back gives the static Pod's flags,
// except the keys, which come from the credentials.
func TestFlagsReadBack(t *testing.T) {
	c := guideCluster(t, spec.Arg{Name: "quota-backend-bytes", Value: "8589934592"}, spec.Arg{Name: "peer-cert-allowed-cn", Value: "a,b"})
	h := c.Hosts[1]
	_, out := render(t, c, h)
	got, err := Flags(out)
	if err != nil {
		t.Fatal(err)
	}
	args, err := manifests.EtcdArgs(c, h)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, a := range args {
		want["--"+a.Name] = a.Value
	}
	want["--key-file"] = layout.EtcdCredentialsDir + "/server.key"
	want["--peer-key-file"] = layout.EtcdCredentialsDir + "/peer.key"
	gotMap := map[string]string{}
	for _, f := range got {
		name, value, _ := strings.Cut(f, "=")
		gotMap[name] = value
	}
	if d := cmp.Diff(want, gotMap); d != "" {
		t.Errorf("flags read back differ (-want +got):\n%s", d)
	}
}
