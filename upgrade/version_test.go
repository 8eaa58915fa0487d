package upgrade

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"3.6.16": {3, 6, 16}, "3.6.16-0": {3, 6, 16}, "v3.5.21": {3, 5, 21}, "3.7.0-rc.1": {3, 7, 0},
	} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "latest", "3.6", "3.6.x", "3.06.1", "3.6.-1", "3.6.1.2"} {
		if v, err := ParseVersion(in); err == nil {
			t.Errorf("ParseVersion(%q) = %v, want an error", in, v)
		}
	}
}

func TestImageVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"registry.k8s.io/etcd:3.6.16-0":        {3, 6, 16},
		"mirror.example:5000/k8s/etcd:3.6.8-0": {3, 6, 8},
		"gcr.io/etcd-development/etcd:v3.6.16": {3, 6, 16},
	} {
		if got, err := ImageVersion(in); err != nil || got != want {
			t.Errorf("ImageVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"mirror.example:5000/etcd", "registry.k8s.io/etcd:latest", "registry.k8s.io/etcd@sha256:abc"} {
		if v, err := ImageVersion(in); err == nil {
			t.Errorf("ImageVersion(%q) = %v, want an error", in, v)
		}
	}
}

func TestCheckStep(t *testing.T) {
	v := func(s string) Version {
		x, err := ParseVersion(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, ok := range [][2]string{{"3.6.8", "3.6.16"}, {"3.6.16", "3.6.16"}, {"3.5.21", "3.6.0"}, {"3.6.16", "3.7.1"}} {
		if err := CheckStep(v(ok[0]), v(ok[1])); err != nil {
			t.Errorf("%s -> %s: %v", ok[0], ok[1], err)
		}
	}
	for _, bad := range []struct{ from, to, want string }{
		{"3.6.8", "3.6.7", "downgrade from 3.6.8 to 3.6.7"},
		{"3.6.8", "3.5.21", "downgrade"},
		{"3.5.21", "3.7.0", "skips a minor version: upgrade to the latest 3.6.x first"},
		{"3.6.8", "4.0.0", "major"},
	} {
		err := CheckStep(v(bad.from), v(bad.to))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s -> %s: %v, want %q", bad.from, bad.to, err, bad.want)
		}
	}
}
