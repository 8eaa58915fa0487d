// Package etcdconf writes etcd's own configuration file (`etcd
// --config-file`) for a member: the same settings the static Pod gives etcd
// on its command line, in the file's types and layout.
package etcdconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"reflect"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Config is etcd's configuration file. The settings every member gets have
// fields; any other extra argument lands in Extra under its file key, typed
// as etcd's loader wants it.
type Config struct {
	Name                     string `json:"name"`
	DataDir                  string `json:"data-dir"`
	InitialCluster           string `json:"initial-cluster"`
	InitialClusterState      string `json:"initial-cluster-state"`
	ListenPeerURLs           string `json:"listen-peer-urls"`
	ListenClientURLs         string `json:"listen-client-urls"`
	AdvertiseClientURLs      string `json:"advertise-client-urls"`
	InitialAdvertisePeerURLs string `json:"initial-advertise-peer-urls"`
	ListenMetricsURLs        string `json:"listen-metrics-urls,omitempty"`
	FeatureGates             string `json:"feature-gates,omitempty"`
	SnapshotCount            uint64 `json:"snapshot-count,omitempty"`
	// WatchProgressNotifyInterval is in nanoseconds: etcd's loader reads
	// durations as integers and refuses "5s".
	WatchProgressNotifyInterval time.Duration `json:"watch-progress-notify-interval,omitempty"`

	ClientTransportSecurity Security `json:"client-transport-security"`
	PeerTransportSecurity   Security `json:"peer-transport-security"`

	// Extra holds the other top-level keys.
	Extra map[string]any `json:"-"`
}

// Security is one transport security block.
type Security struct {
	CertFile            string   `json:"cert-file,omitempty"`
	KeyFile             string   `json:"key-file,omitempty"`
	ClientCertFile      string   `json:"client-cert-file,omitempty"`
	ClientKeyFile       string   `json:"client-key-file,omitempty"`
	ClientCertAuth      bool     `json:"client-cert-auth,omitempty"`
	TrustedCAFile       string   `json:"trusted-ca-file,omitempty"`
	AllowedCN           []string `json:"allowed-cn,omitempty"`
	AllowedHostname     []string `json:"allowed-hostname,omitempty"`
	SkipClientSANVerify bool     `json:"skip-client-san-verification,omitempty"`
}

// Credential is a private key the service manager hands etcd: etcd reads
// it at Target, a file only the service sees, and the unit loads it from
// Source, where the bundle puts the key.
type Credential struct {
	Name   string
	Source string
	Target string
}

// credentialNames names the credential of each key flag.
var credentialNames = map[string]string{
	"key-file":             "server.key",
	"peer-key-file":        "peer.key",
	"client-key-file":      "client.key",
	"peer-client-key-file": "peer-client.key",
}

// Member is a host's file and the keys it reads through credentials.
type Member struct {
	Config      Config
	Credentials []Credential
}

// For returns host h's settings: exactly the flags the static Pod gives
// etcd (manifests.EtcdArgs: kubeadm's defaults, the per-host URLs and the
// extraArgs rules), folded in order so that a later flag wins as it does
// on etcd's command line, except that the private keys are read from the
// credentials folder.
func For(c *spec.Cluster, h spec.Host) (*Member, error) {
	args, err := manifests.EtcdArgs(c, h)
	if err != nil {
		return nil, err
	}
	m := &Member{}
	sources := map[string]string{}
	for _, a := range args {
		if err := m.Config.set(a); err != nil {
			return nil, fmt.Errorf("etcd config for host %q: %w", h.Name, err)
		}
		if _, ok := credentialNames[a.Name]; ok {
			sources[a.Name] = a.Value
		}
	}
	for _, flag := range []string{"key-file", "peer-key-file", "client-key-file", "peer-client-key-file"} {
		src, ok := sources[flag]
		if !ok || src == "" {
			continue
		}
		if !path.IsAbs(src) {
			return nil, fmt.Errorf("etcd config for host %q: extra argument %s=%s: want an absolute path", h.Name, flag, src)
		}
		cred := Credential{Name: credentialNames[flag], Source: src, Target: layout.EtcdCredentialsDir + "/" + credentialNames[flag]}
		m.Credentials = append(m.Credentials, cred)
		if err := m.Config.set(spec.Arg{Name: flag, Value: cred.Target}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// set puts one flag into the file, typed as etcd's loader reads it.
func (cfg *Config) set(a spec.Arg) error {
	k, ok := keys[a.Name]
	if !ok {
		return fmt.Errorf("extra argument %s=%s: etcd's config file has no such setting (etcd reads only its file when started with --config-file, so the flag cannot be passed beside it)", a.Name, a.Value)
	}
	v, err := convert(k.kind, a.Value)
	if err != nil {
		return fmt.Errorf("extra argument %s=%s: %w", a.Name, a.Value, err)
	}
	var target reflect.Value
	switch k.block {
	case clientTLS:
		target = reflect.ValueOf(&cfg.ClientTransportSecurity).Elem()
	case peerTLS:
		target = reflect.ValueOf(&cfg.PeerTransportSecurity).Elem()
	default:
		target = reflect.ValueOf(cfg).Elem()
	}
	if f, ok := fieldByTag(target, k.name); ok {
		rv := reflect.ValueOf(v)
		if !rv.Type().ConvertibleTo(f.Type()) {
			return fmt.Errorf("extra argument %s=%s: internal: %s does not fit %s", a.Name, a.Value, rv.Type(), f.Type())
		}
		f.Set(rv.Convert(f.Type()))
		return nil
	}
	if k.block != top {
		return fmt.Errorf("extra argument %s: internal: no field for %s", a.Name, k.name)
	}
	if cfg.Extra == nil {
		cfg.Extra = map[string]any{}
	}
	cfg.Extra[k.name] = v
	return nil
}

// fieldByTag finds the struct field whose JSON name is name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// convert turns a flag's text into the file's value.
func convert(k kind, s string) (any, error) {
	switch k {
	case kindBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("want true or false")
		}
		return b, nil
	case kindInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want an integer")
		}
		return n, nil
	case kindUint:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want a non-negative integer")
		}
		return n, nil
	case kindDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("want a duration such as 5s")
		}
		return d, nil
	case kindList:
		if s == "" {
			return []string{}, nil
		}
		return strings.Split(s, ","), nil
	}
	return s, nil
}

// MarshalJSON writes the fields and Extra as one object: sigs.k8s.io/yaml
// then sorts the keys, so the file is the same for the same settings.
func (cfg Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal(plain(cfg))
	if err != nil {
		return nil, err
	}
	if len(cfg.Extra) == 0 {
		return b, nil
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // keeps 64-bit integers exact
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	maps.Copy(m, cfg.Extra)
	return json.Marshal(m)
}

// Marshal writes the file, with a header saying what it is.
func Marshal(m *Member) ([]byte, error) {
	body, err := yaml.Marshal(m.Config)
	if err != nil {
		return nil, fmt.Errorf("marshal etcd config for %q: %w", m.Config.Name, err)
	}
	header := "# etcd's configuration (etcd --config-file), written by etcd-staticpod: the\n" +
		"# settings the static Pod would give etcd as flags. etcd reads only this\n" +
		"# file when started with --config-file: flags and ETCD_* variables beside it\n" +
		"# are ignored. Durations are in nanoseconds.\n"
	return append([]byte(header), body...), nil
}
