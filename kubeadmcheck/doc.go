// Package kubeadmcheck holds only tests: it feeds the configs that
// etcd-staticpod writes to a real kubeadm v1.36.3 (KUBEADM_BIN, built by
// `make kubeadm` from the Go module proxy) and checks that kubeadm accepts
// them and, from them, writes the same etcd static Pod manifests, the same
// kube-apiserver etcd flags and certificates of the same shape as ours.
package kubeadmcheck
