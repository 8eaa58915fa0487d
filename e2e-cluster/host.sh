#!/usr/bin/env bash
# One node of the whole-cluster run: an etcd host or the control-plane node.
# run.sh starts it as
#
#   nsenter --net=/run/netns/NETNS unshare --mount --uts --propagation private -- \
#     host.sh NAME STATE IMAGE-LIST ARCHIVE BIN PAUSE-IMAGE
#
# so that it runs in the node's own network namespace and in a mount namespace
# of its own. There it gives the node, privately (under STATE/root and STATE),
# the folders a real node has: /etc/kubernetes,
# /etc/systemd/system/kubelet.service.d, /var/lib/etcd, /var/lib/kubelet,
# containerd's, and the plugin folder kube-controller-manager's Pod mounts
# (/usr/libexec/kubernetes), the CNI plugins' state (/var/lib/cni: their
# cache and host-local's addresses) and the two host paths kube-proxy's
# DaemonSet mounts (/run/xtables.lock, /lib/modules). It installs what the
# kubelet package installs
# (/usr/bin/kubelet, kubelet.service and its 10-kubeadm.conf drop-in, from
# e2e-cluster/systemd) and kubeadm and kubectl in /usr/bin (BIN holds the
# three); unpacks ARCHIVE (NAME.tar.gz or control-plane.tar.gz, written by
# `etcd-staticpod init`) at / as the printed command does; starts containerd
# with the images of IMAGE-LIST ("ARCHIVE REPOSITORY" lines); and runs
# kubelet.service as systemd would, started again whenever it exits. The real
# filesystem is never written (see host_mounts).
set -euo pipefail

name=$1 state=$2 images=$3 archive=$4 bin=$5 pause=$6

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e-kubelet/lib.sh
. "$here/../e2e-kubelet/lib.sh"
tag=e2e-cluster

echo $$ >"$state/pid"
hostname "$name"

root=$state/root
# The node's own name service: every node's name and address, and no DNS
# server, so that nothing asks the machine's resolver.
mkdir -p "$state/etc"
{
	echo "127.0.0.1 localhost"
	cat "$state/../hosts"
} >"$state/etc/hosts"
: >"$state/etc/resolv.conf"
mkdir -p "$root/etc/kubernetes" "$root/etc/systemd/system/kubelet.service.d"
# As on a node where the bundle makes it: etcd wants its data folder 0700.
install -d -m 0700 "$root/var/lib/etcd"
# iptables' lock, shared by kube-proxy's container and the node as on a real
# node; a file, so that kubelet's FileOrCreate finds it.
: >"$state/xtables.lock"
host_mounts \
	"$root/etc/kubernetes:/etc/kubernetes" \
	"$root/etc/systemd/system/kubelet.service.d:/etc/systemd/system/kubelet.service.d" \
	"$root/var/lib/etcd:/var/lib/etcd" \
	"$state/etc/hosts:/etc/hosts" \
	"$state/etc/resolv.conf:/etc/resolv.conf" \
	"$here/systemd/kubelet.service:/usr/lib/systemd/system/kubelet.service" \
	"$here/systemd/10-kubeadm.conf:/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf" \
	"$bin/kubelet:/usr/bin/kubelet" \
	"$bin/kubeadm:/usr/bin/kubeadm" \
	"$bin/kubectl:/usr/bin/kubectl" \
	"$state/kubelet:/var/lib/kubelet" \
	"$state/containerd:/var/lib/containerd" \
	"$state/pods:/var/log/pods" \
	"$state/containers:/var/log/containers" \
	"tmpfs:/usr/libexec/kubernetes" \
	"tmpfs:/run/containerd" \
	"$state/cni/lib:/var/lib/cni" \
	"$state/xtables.lock:/run/xtables.lock" \
	"tmpfs:/lib/modules"
hlog "mount namespace ready; overlays on ${overlaid[*]:-nothing}"

tar --no-overwrite-dir -C / -xzf "$archive"
hlog "unpacked $(basename "$archive") at /"

# A node's pod network: the bridge and host-local plugins of Debian's
# containernetworking-plugins, on a subnet inside this namespace. kubelet
# reports the node Ready only once the runtime's network is; the control
# plane's Pods use the host's network and never touch it.
mkdir -p "$state/cni/net.d"
cat >"$state/cni/net.d/10-bridge.conflist" <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "e2e-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.0.0/24"}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
image_list=$images
host_containerd "$pause" /usr/lib/cni "$state/cni/net.d"

run_unit /usr/lib/systemd/system/kubelet.service \
	/usr/lib/systemd/system/kubelet.service.d /etc/systemd/system/kubelet.service.d
