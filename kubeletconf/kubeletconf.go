// Package kubeletconf writes the standalone kubelet setup of the kubeadm guide
// "Set up a High Availability etcd cluster with kubeadm": a KubeletConfiguration
// that only runs static Pods on a node outside any cluster, and the systemd
// drop-in that makes kubelet.service start with it.
package kubeletconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// The type the config and any patch must carry.
const (
	APIVersion = "kubelet.config.k8s.io/v1beta1"
	Kind       = "KubeletConfiguration"
)

// Config returns kubelet.conf: the guide's KubeletConfiguration with the
// cluster's cgroup driver and runtime endpoint, and patch (a partial
// KubeletConfiguration in YAML or JSON; nil or empty for none) merged over it
// as a JSON merge patch (RFC 7386): maps merge, anything else replaces, null
// deletes. The result is checked by decoding it strictly into the kubelet's
// own v1beta1 type.
func Config(c *spec.Cluster, patch []byte) ([]byte, error) {
	if c.Kubelet.CgroupDriver == "" || c.Kubelet.ContainerRuntimeEndpoint == "" {
		return nil, errors.New("kubelet config: cgroupDriver and containerRuntimeEndpoint must be set (defaults not applied)")
	}
	base, err := guideConfig(c)
	if err != nil {
		return nil, err
	}
	p, err := parsePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("kubelet config patch: %w", err)
	}
	merged := mergePatch(base, p)
	out, ok := merged.(map[string]any)
	if !ok {
		// parsePatch only returns a mapping or nil, so this cannot happen.
		return nil, errors.New("kubelet config: merge result is not a mapping")
	}
	if err := checkTyped(out, true); err != nil {
		return nil, fmt.Errorf("kubelet config after patch: %w", err)
	}
	return render(out)
}

// guideConfig builds the guide's fields with the typed v1beta1 struct and
// returns them as a JSON-shaped map holding only those fields.
//
// Marshalling the struct directly is not enough: many of its fields are
// metav1.Duration or plain structs, which omitempty does not drop, so the raw
// output carries "syncFrequency: 0s", "logging: {...}" and a score of other
// zero values that the kubelet would then read as explicit settings. Instead
// the empty struct is marshalled the same way and every value that equals its
// zero counterpart is pruned. What remains is exactly what we set, with the
// names and shapes the types define, whatever fields a later version adds.
func guideConfig(c *spec.Cluster) (map[string]any, error) {
	cfg := kubeletv1beta1.KubeletConfiguration{
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: new(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: new(false)},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{
			Mode: kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow,
		},
		CgroupDriver:             c.Kubelet.CgroupDriver,
		Address:                  "127.0.0.1",
		ContainerRuntimeEndpoint: c.Kubelet.ContainerRuntimeEndpoint,
		StaticPodPath:            layout.StaticPodDir,
	}
	cfg.APIVersion = APIVersion
	cfg.Kind = Kind

	ours, err := toMap(&cfg)
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	zero, err := toMap(&kubeletv1beta1.KubeletConfiguration{})
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	return prune(ours, zero), nil
}

// toMap marshals v to JSON and back into a generic map, keeping numbers as
// written so nothing is rounded through float64.
func toMap(v any) (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("unmarshal: %w", err)
	}
	return m, nil
}

// prune drops from m every value equal to the same key in zero; nested maps
// are pruned in turn and dropped when nothing is left in them.
func prune(m, zero map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		z, inZero := zero[k]
		if !inZero {
			out[k] = v
			continue
		}
		vm, vIsMap := v.(map[string]any)
		zm, zIsMap := z.(map[string]any)
		if vIsMap && zIsMap {
			if p := prune(vm, zm); len(p) > 0 {
				out[k] = p
			}
			continue
		}
		if !reflect.DeepEqual(v, z) {
			out[k] = v
		}
	}
	return out
}

// parsePatch reads a YAML or JSON patch into a map. It must be a mapping,
// decode strictly into the v1beta1 type (so a misspelt field is caught here
// and blamed on the patch), and carry our apiVersion and kind if it has them.
func parsePatch(patch []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(patch)) == 0 {
		return nil, nil
	}
	// The strict conversion rejects duplicate keys, which would otherwise
	// silently keep the last one.
	data, err := yaml.YAMLToJSONStrict(patch)
	if err != nil {
		return nil, oneLine(err)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, oneLine(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return nil, nil // only comments, or an explicit null
		}
		return nil, fmt.Errorf("want a mapping (a partial %s), got %s", Kind, describe(v))
	}
	if err := checkTyped(m, false); err != nil {
		return nil, err
	}
	return m, nil
}

// checkTyped decodes m strictly into the kubelet's v1beta1 type.
// sigs.k8s.io/json is the decoder the Kubernetes components use: unlike
// encoding/json it matches field names case-sensitively ("CgroupDriver" is an
// unknown field, not a second cgroupDriver) and reports the full path of an
// unknown field. With requireType, apiVersion and kind must be present;
// without, they must only be right when given.
func checkTyped(m map[string]any, requireType bool) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	var cfg kubeletv1beta1.KubeletConfiguration
	strict, err := kjson.UnmarshalStrict(data, &cfg)
	if err != nil {
		return oneLine(err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = strings.TrimPrefix(e.Error(), "json: ")
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	if requireType || cfg.APIVersion != "" {
		if cfg.APIVersion != APIVersion {
			return fmt.Errorf("apiVersion %q: want %q", cfg.APIVersion, APIVersion)
		}
	}
	if requireType || cfg.Kind != "" {
		if cfg.Kind != Kind {
			return fmt.Errorf("kind %q: want %q", cfg.Kind, Kind)
		}
	}
	return nil
}

// render writes apiVersion and kind first, as every Kubernetes document
// starts, then the remaining fields in sorted order (sigs.k8s.io/yaml sorts
// map keys). The map itself is written, not the typed struct re-marshalled:
// the struct's omitempty would drop a patch's "enforceNodeAllocatable: []",
// and the kubelet would then apply its default instead of the empty list.
func render(m map[string]any) ([]byte, error) {
	head := map[string]any{"apiVersion": m["apiVersion"], "kind": m["kind"]}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		if k != "apiVersion" && k != "kind" {
			rest[k] = v
		}
	}
	h, err := yaml.Marshal(head)
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	r, err := yaml.Marshal(rest)
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	return append(h, r...), nil
}

// mergePatch applies patch to target as RFC 7386 describes; target is not
// modified.
func mergePatch(target any, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		if patch == nil {
			return target // no patch at all
		}
		return patch
	}
	tm, ok := target.(map[string]any)
	out := make(map[string]any, len(tm)+len(pm))
	if ok {
		for k, v := range tm {
			out[k] = v
		}
	}
	for k, v := range pm {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}

func describe(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// oneLine keeps decoder errors to one line: YAML errors can span several.
func oneLine(err error) error {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	s = strings.TrimPrefix(s, "yaml: ")
	s = strings.TrimPrefix(s, "json: ")
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	s = strings.Join(lines, " ")
	s = strings.ReplaceAll(s, "unmarshal errors: ", "")
	return errors.New(s)
}
