#!/usr/bin/env bash
# One etcd host of the kubelet end-to-end run. run.sh starts it as
#
#   nsenter --net=/run/netns/NETNS unshare --mount --uts --propagation private -- host.sh NAME BUNDLE STATE IMAGES
#
# so that it runs in the host's own network namespace and in a mount namespace
# of its own. There it shows the host's bundle (BUNDLE, the folder that
# `etcd-staticpod init` wrote for NAME) and private runtime folders (under
# STATE) at the paths a real node has, starts its own containerd, imports the
# OCI archives listed in IMAGES/list, and runs kubelet with exactly the ExecStart line of
# the bundle's 20-etcd-service-manager.conf. The real filesystem is never
# written: a missing mount point is made inside an overlay whose writable
# layer is a tmpfs.
set -euo pipefail

name=$1 bundle=$2 state=$3 images=$4

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e-kubelet/lib.sh
. "$here/lib.sh"
tag=e2e-kubelet
log() { hlog "$@"; }

echo $$ >"$state/pid"
hostname "$name"

host_mounts \
	"$bundle/etc/kubernetes:/etc/kubernetes" \
	"$bundle/etc/systemd/system/kubelet.service.d:/etc/systemd/system/kubelet.service.d" \
	"$bundle/var/lib/etcd:/var/lib/etcd" \
	"$state/kubelet:/var/lib/kubelet" \
	"$state/containerd:/var/lib/containerd" \
	"$state/pods:/var/log/pods" \
	"$state/containers:/var/log/containers" \
	"tmpfs:/run/containerd"
log "mount namespace ready: bundle at /etc/kubernetes, /etc/systemd/system/kubelet.service.d and /var/lib/etcd; overlays on ${overlaid[*]:-nothing}"

host_containerd registry.k8s.io/pause:3.10 "$state/cni/bin" "$state/cni/net.d"

dropin=/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf
execstart=$(sed -n 's/^ExecStart=//p' "$dropin" | sed '/^$/d' | tail -n 1)
if [[ -z $execstart ]]; then
	log "no ExecStart in $dropin"
	exit 1
fi
read -r -a argv <<<"$execstart"
log "starting kubelet: $execstart"
date +%s.%N >"$state/kubelet.started"
"${argv[@]}" >"$state/kubelet.log" 2>&1 &
echo $! >"$state/kubelet.pid"
wait
