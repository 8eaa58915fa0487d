# Tools the tests need are built here from the Go module proxy.
BIN      := $(CURDIR)/.bin
ETCD_MOD := tools/etcd.mod
ETCD_NEXT_MOD := tools/etcd-next.mod
KUBEADM_MOD := tools/kubeadm.mod
GO       ?= go

.PHONY: all build test test-unit lint bench etcd clean

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN)/etcd-staticpod ./cmd/etcd-staticpod

# The same CLI with the tests' hooks (cmd/etcd-staticpod/testhooks.go).
.PHONY: build-hooks
build-hooks:
	$(GO) build -tags testhooks -o $(BIN)/etcd-staticpod-hooks ./cmd/etcd-staticpod

# etcd, etcdctl and etcdutl at the version our manifests name, from a
# separate modfile so their replace directives never touch our go.mod.
etcd: $(BIN)/etcd $(BIN)/etcdctl $(BIN)/etcdutl

$(BIN)/etcd: $(ETCD_MOD)
	cd tools && $(GO) build -mod=mod -modfile=etcd.mod -o $(BIN)/etcd go.etcd.io/etcd/server/v3
$(BIN)/etcdctl: $(ETCD_MOD)
	cd tools && $(GO) build -mod=mod -modfile=etcd.mod -o $(BIN)/etcdctl go.etcd.io/etcd/etcdctl/v3
$(BIN)/etcdutl: $(ETCD_MOD)
	cd tools && $(GO) build -mod=mod -modfile=etcd.mod -o $(BIN)/etcdutl go.etcd.io/etcd/etcdutl/v3

# The release the upgrade tests go to, beside the one our manifests name.
.PHONY: etcd-next
etcd-next: $(BIN)/etcd-3.6.16

$(BIN)/etcd-3.6.16: $(ETCD_NEXT_MOD)
	cd tools && $(GO) build -mod=mod -modfile=etcd-next.mod -o $(BIN)/etcd-3.6.16 go.etcd.io/etcd/server/v3

# kubeadm at the release our files reproduce. Its version is normally stamped
# by its release scripts; without it kubeadm reports v0.0.0-master and picks
# other defaults (kubernetesVersion, etcd image), so stamp it here.
KUBEADM_VERSION := v1.36.3
KUBEADM_LDFLAGS := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(KUBEADM_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=36 \
	-X $(p).gitCommit=module-proxy-$(KUBEADM_VERSION) -X $(p).gitTreeState=clean)

.PHONY: kubeadm
kubeadm: $(BIN)/kubeadm

$(BIN)/kubeadm: $(KUBEADM_MOD)
	cd tools && CGO_ENABLED=0 $(GO) build -mod=mod -modfile=kubeadm.mod -trimpath -ldflags '$(KUBEADM_LDFLAGS)' -o $(BIN)/kubeadm k8s.io/kubernetes/cmd/kubeadm

# The bundles' static Pods under real kubelets v1.36.3, each with its own
# containerd, on three network namespaces (root only; see e2e-kubelet/run.sh).
.PHONY: e2e-kubelet
e2e-kubelet: build
	GO=$(GO) BIN=$(BIN) e2e-kubelet/run.sh

# The control plane of the whole-cluster run: kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl v1.36.3, from a sibling
# of tools/kubeadm.mod, stamped like kubeadm. Each is built once: delete it to
# build it again.
CLUSTER_MOD := tools/cluster.mod
K8S_CONTROL_PLANE := $(BIN)/kube-apiserver $(BIN)/kube-controller-manager $(BIN)/kube-scheduler

.PHONY: control-plane
control-plane: $(K8S_CONTROL_PLANE) $(BIN)/kubectl

$(K8S_CONTROL_PLANE) $(BIN)/kubectl: $(CLUSTER_MOD)
	cd tools && CGO_ENABLED=0 $(GO) build -mod=mod -modfile=cluster.mod -trimpath -ldflags '$(KUBEADM_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/$(notdir $@)

# What a StatefulSet needs on the whole-cluster run's node, for kubeadm's
# addon phase: kube-proxy v1.36.3 (cluster.mod) and CoreDNS at the version
# kubeadm v1.36.3 names (`kubeadm config images list`) with only the plugins
# of kubeadm's Corefile, a main of ours in a module of its own
# (tools/coredns), stripped. Static, built once like the control plane.
COREDNS_MOD := tools/coredns/go.mod tools/coredns/go.sum tools/coredns/main.go

.PHONY: cluster-addons
cluster-addons: $(BIN)/kube-proxy $(BIN)/coredns

$(BIN)/kube-proxy: $(CLUSTER_MOD)
	cd tools && CGO_ENABLED=0 $(GO) build -mod=mod -modfile=cluster.mod -trimpath -ldflags '$(KUBEADM_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-proxy

$(BIN)/coredns: $(COREDNS_MOD)
	cd tools/coredns && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ .

# A control plane made by `kubeadm init` from our kubeadm-config.yaml on three
# kubelet-run etcd hosts, day 2 under it, then a StatefulSet of etcd on that
# node (root only; see e2e-cluster/run.sh).
.PHONY: e2e-cluster
e2e-cluster: build kubeadm control-plane cluster-addons
	GO=$(GO) BIN=$(BIN) e2e-cluster/run.sh

# Prometheus, promtool and systemd-analyze for the monitoring and backup
# tests: Debian's packages, installed when missing (root only; without
# them those tests skip, except in CI).
.PHONY: prometheus
prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v systemd-analyze >/dev/null; then :; \
	elif [ "$$(id -u)" -ne 0 ]; then echo "prometheus, promtool or systemd-analyze missing: their tests skip; as root, make prometheus installs them"; \
	else apt-get install -y --no-install-recommends prometheus systemd || { apt-get update && apt-get install -y --no-install-recommends prometheus systemd; }; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...

TEST_ENV := ETCD_BIN=$(BIN)/etcd ETCD_NEXT_BIN=$(BIN)/etcd-3.6.16 ETCDCTL_BIN=$(BIN)/etcdctl ETCDUTL_BIN=$(BIN)/etcdutl \
	ETCD_STATICPOD_BIN=$(BIN)/etcd-staticpod ETCD_STATICPOD_HOOKS_BIN=$(BIN)/etcd-staticpod-hooks KUBEADM_BIN=$(BIN)/kubeadm \
	KUBE_APISERVER_BIN=$(BIN)/kube-apiserver

# The end-to-end packages run verbosely so the log shows how the hosts were
# isolated (namespace mode) and how long clusters took to become healthy.
# kube-apiserver serves the tests of the Kubernetes API calls (kube, stsops);
# e2e-cluster needs it too, so CI builds it once either way.
test: lint etcd etcd-next kubeadm build build-hooks prometheus $(BIN)/kube-apiserver
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 40m $$($(GO) list ./... | grep -Ev '/e2e(/|$$)')
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 40m -v ./e2e/...
# Every benchmark once, timed by nobody, so that make bench keeps working;
# the snapshot benchmark on a few megabytes, one round, instead of 150.
	$(TEST_ENV) SNAPSHOT_BENCH_MB=4 SNAPSHOT_BENCH_ROUNDS=1 $(GO) test -p 1 -count=1 -run '^$$' -bench . -benchtime 1x ./...

test-unit:
	$(GO) test -race -count=1 -short ./...

# The snapshot benchmark runs etcdctl and etcdutl beside our commands on a
# 150 MB database (SNAPSHOT_BENCH_MB, SNAPSHOT_BENCH_ROUNDS to change).
bench: etcd build
	$(TEST_ENV) $(GO) test -p 1 -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BIN)
