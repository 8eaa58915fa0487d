package etcdconf

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Flags reads a config file back into the command-line flags that say the
// same (--name=value, in key order), so that what reads a static Pod's
// command (day 2 on a node, renew, restore) reads a systemd member alike.
// Keys this package does not write are skipped; a value of the wrong type
// is an error.
func Flags(data []byte) ([]string, error) {
	var raw map[string]json.RawMessage
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse etcd config file: %w", err)
	}
	type place struct {
		block block
		name  string
	}
	byPlace := map[place]string{}
	for flag, k := range keys {
		byPlace[place{k.block, k.name}] = flag
	}
	var out []string
	add := func(b block, key string, value json.RawMessage) error {
		flag, ok := byPlace[place{b, key}]
		if !ok {
			return nil
		}
		s, err := flagText(keys[flag].kind, value)
		if err != nil {
			return fmt.Errorf("etcd config file: %s: %w", key, err)
		}
		out = append(out, "--"+flag+"="+s)
		return nil
	}
	for _, key := range slices.Sorted(mapKeys(raw)) {
		switch key {
		case "client-transport-security", "peer-transport-security":
			var sec map[string]json.RawMessage
			if err := json.Unmarshal(raw[key], &sec); err != nil {
				return nil, fmt.Errorf("etcd config file: %s: %w", key, err)
			}
			b := clientTLS
			if key == "peer-transport-security" {
				b = peerTLS
			}
			for _, k := range slices.Sorted(mapKeys(sec)) {
				if err := add(b, k, sec[k]); err != nil {
					return nil, err
				}
			}
		default:
			if err := add(top, key, raw[key]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// flagText writes a file value as its flag reads it.
func flagText(k kind, v json.RawMessage) (string, error) {
	switch k {
	case kindBool:
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return "", fmt.Errorf("want true or false")
		}
		return strconv.FormatBool(b), nil
	case kindInt, kindUint:
		var n json.Number
		if err := json.Unmarshal(v, &n); err != nil {
			return "", fmt.Errorf("want a number")
		}
		return n.String(), nil
	case kindDuration:
		var n int64
		if err := json.Unmarshal(v, &n); err != nil {
			return "", fmt.Errorf("want a duration in nanoseconds")
		}
		return time.Duration(n).String(), nil
	case kindList:
		var l []string
		if err := json.Unmarshal(v, &l); err != nil {
			return "", fmt.Errorf("want a list")
		}
		return strings.Join(l, ","), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("want a string")
	}
	return s, nil
}
