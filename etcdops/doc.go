// Package etcdops talks to a running etcd cluster made from our bundles: it
// finds the endpoints and client certificate (from flags, from a host's
// bundle folder, or from a node's /etc/kubernetes), and runs the day-2
// operations on it: health, status and the member list; membership changes;
// and maintenance, a file per command group as etcdctl has them (defrag.go,
// alarm.go, compact.go, leader.go). Every operation gets a ready client
// from Target.Client and need not repeat the discovery.
package etcdops
