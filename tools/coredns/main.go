// Command coredns is CoreDNS v1.14.2 with only the plugins of the Corefile
// kubeadm v1.36.3 writes for its CoreDNS addon (errors, health, ready,
// kubernetes, prometheus, forward, cache, loop, reload, loadbalance), for the
// StatefulSet stage of `make e2e-cluster`. CoreDNS's own main imports every
// plugin (core/plugin), cloud DNS SDKs and tracing among them, which makes
// most of its build time and size. The order the directives run in is not
// ours: it is dnsserver.Directives (core/dnsserver/zdirectives.go), whatever
// subset of plugins registers itself. A Corefile that names a plugin left out
// here stops CoreDNS at start with "Unknown directive".
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics" // the prometheus directive
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
