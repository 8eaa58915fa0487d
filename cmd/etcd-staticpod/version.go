package main

import (
	"runtime/debug"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// version says which build this is, from what the Go toolchain recorded: the
// module version for `go install ...@vX`, else the commit it was built from
// (with "-dirty" for uncommitted changes), and the etcd release the
// manifests name by default, which is what a bug report needs.
func version(info *debug.BuildInfo, ok bool) string {
	v := "unknown"
	if ok {
		v = info.Main.Version
		if v == "" || v == "(devel)" {
			v = "devel"
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			if rev := settings["vcs.revision"]; rev != "" {
				v += "+" + rev[:min(12, len(rev))]
				if settings["vcs.modified"] == "true" {
					v += "-dirty"
				}
			}
		}
	}
	return v + " (etcd " + spec.DefaultEtcdVersion + " by default, kubeadm v1beta4 configs)"
}
