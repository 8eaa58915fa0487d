package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	devel := func(settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings}
	}
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"release", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true, "v1.2.3 ("},
		{"commit", devel(debug.BuildSetting{Key: "vcs.revision", Value: "d395117ebab7a1f0c2e4"}), true, "devel+d395117ebab7 ("},
		{"dirty", devel(debug.BuildSetting{Key: "vcs.revision", Value: "d395117"}, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), true, "devel+d395117-dirty ("},
		{"no vcs", devel(), true, "devel ("},
		{"no build info", nil, false, "unknown ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := version(tc.info, tc.ok)
			if !strings.HasPrefix(got, tc.want) || !strings.Contains(got, "etcd 3.6.8-0") {
				t.Errorf("version = %q, want %q... naming etcd 3.6.8-0", got, tc.want)
			}
		})
	}
	stdout, _, code := runCLI(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "etcd-staticpod version ") || !strings.Contains(stdout, "etcd 3.6.8-0") {
		t.Errorf("--version: %d %q", code, stdout)
	}
}
