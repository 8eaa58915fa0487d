// Package e2e runs the bundles that etcd-staticpod generates the way kubelet
// would run them: every host's etcd in its own network and mount namespace,
// started from its static Pod manifest and probed through the manifest's own
// probes. The tests need ETCD_BIN (and use ETCD_STATICPOD_BIN when set);
// `make test` provides both.
package e2e
