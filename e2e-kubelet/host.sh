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

log() { printf '%s e2e-kubelet[%s]: %s\n' "$(date -u +%H:%M:%S)" "$name" "$*" >&2; }

echo $$ >"$state/pid"
hostname "$name"

# source:target pairs; a source of "tmpfs" mounts a fresh tmpfs.
binds=(
	"$bundle/etc/kubernetes:/etc/kubernetes"
	"$bundle/etc/systemd/system/kubelet.service.d:/etc/systemd/system/kubelet.service.d"
	"$bundle/var/lib/etcd:/var/lib/etcd"
	"$state/kubelet:/var/lib/kubelet"
	"$state/containerd:/var/lib/containerd"
	"$state/pods:/var/log/pods"
	"$state/containers:/var/log/containers"
	"tmpfs:/run/containerd"
)

stage=$state/stage
mkdir -p "$stage"
mount -t tmpfs -o mode=0700 e2ekl-stage "$stage"

# Overlay the nearest existing ancestor of every missing mount point, outer
# folders first; a folder inside an overlay made here is writable already.
ancestors=()
for b in "${binds[@]}"; do
	target=${b#*:}
	[[ -e $target ]] && continue
	anc=$(dirname "$target")
	while [[ ! -e $anc ]]; do anc=$(dirname "$anc"); done
	if [[ $anc == / ]]; then
		log "mount point $target needs a new top-level folder; refusing"
		exit 1
	fi
	ancestors+=("$anc")
done
overlaid=()
if ((${#ancestors[@]})); then
	mapfile -t ancestors < <(printf '%s\n' "${ancestors[@]}" | sort -u)
	i=0
	for anc in "${ancestors[@]}"; do
		inside=false
		for done_dir in "${overlaid[@]}"; do
			[[ $anc == "$done_dir"/* ]] && inside=true
		done
		$inside && continue
		i=$((i + 1))
		mkdir -p "$stage/o$i/upper" "$stage/o$i/work"
		mount -t overlay e2ekl-overlay -o "lowerdir=$anc,upperdir=$stage/o$i/upper,workdir=$stage/o$i/work" "$anc"
		overlaid+=("$anc")
	done
fi
for b in "${binds[@]}"; do
	source=${b%%:*} target=${b#*:}
	mkdir -p "$target"
	if [[ $source == tmpfs ]]; then
		mount -t tmpfs -o mode=0711 e2ekl-run "$target"
	else
		mkdir -p "$source"
		mount --bind "$source" "$target"
	fi
done
log "mount namespace ready: bundle at /etc/kubernetes, /etc/systemd/system/kubelet.service.d and /var/lib/etcd; overlays on ${overlaid[*]:-nothing}"

# containerd: the node's defaults (socket /run/containerd/containerd.sock,
# root /var/lib/containerd, state /run/containerd, all private here), the
# sandbox image we built, cgroupfs, and OOM scores never below containerd's
# own, since this process cannot lower its OOM score.
cat >"$state/containerd.toml" <<EOF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$state/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$state/cni/bin"
    conf_dir = "$state/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF

containerd --config "$state/containerd.toml" >"$state/containerd.log" 2>&1 &
echo $! >"$state/containerd.pid"
for ((i = 0; i < 300; i++)); do
	ctr version >/dev/null 2>&1 && break
	sleep 0.1
done
ctr version >/dev/null

# The images kubelet and containerd ask for: no registry is reachable, and
# imagePullPolicy IfNotPresent finds them here.
while read -r archive repository; do
	ctr -n k8s.io images import --base-name "$repository" "$archive" >/dev/null
done <"$images/list"
log "containerd $(containerd --version | awk '{print $3}') up; images: $(ctr -n k8s.io images ls -q | grep -v -e '@' -e '^sha256:' | tr '\n' ' ')"

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
