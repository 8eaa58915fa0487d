// Package etcdops talks to a running etcd cluster made from our bundles: it
// finds the endpoints and client certificate (from flags, from a host's
// bundle folder, or from a node's /etc/kubernetes), and runs the read-only
// day-2 operations health, status and member list. Later operations get a
// ready client from Target.Client and need not repeat the discovery.
package etcdops
