#!/usr/bin/env bash
# `make e2e-kubelet` (root only): the bundles of `etcd-staticpod init`, run by
# real kubelets.
#
# Three etcd hosts, each a network namespace wired to a bridge in a hub
# namespace (10.213.1.0/24, inside those namespaces only). Every host runs, in
# a private mount namespace showing its own bundle at /etc/kubernetes,
# /etc/systemd/system/kubelet.service.d and /var/lib/etcd, its own containerd
# and kubelet v1.36.3, the kubelet started with exactly the ExecStart line of
# the bundle's 20-etcd-service-manager.conf (see host.sh). The run checks that
# the three static Pods form a healthy cluster, kills one etcd container,
# checks that its kubelet restarts it and the cluster is healthy again, and
# tears everything down, on failure too.
#
# Builds, from the Go module proxy: kubelet v1.36.3 (tools/kubelet.mod), a
# static etcd v3.6.8 (tools/etcd.mod) packed as registry.k8s.io/etcd:3.6.8-0,
# and a pause program packed as registry.k8s.io/pause:3.10. Installs
# containerd, runc and umoci from Debian's packages when they are missing.
#
# Environment: GO, BIN (default .bin), E2E_KUBELET_READY_TIMEOUT and
# E2E_KUBELET_RESTART_TIMEOUT (seconds), E2E_KUBELET_KEEP=1 keeps the work
# folder (bundles, logs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
GO=${GO:-go}
BIN=${BIN:-$top/.bin}
cli=$BIN/etcd-staticpod
kubelet=$BIN/kubelet
out=$BIN/e2e-kubelet
ready_timeout=${E2E_KUBELET_READY_TIMEOUT:-300}
restart_timeout=${E2E_KUBELET_RESTART_TIMEOUT:-180}

kubelet_version=v1.36.3
etcd_image=registry.k8s.io/etcd:3.6.8-0
pause_image=registry.k8s.io/pause:3.10 # sandbox_image in host.sh

# Every namespace and work folder of a run carries its pid, so that a later
# run can tell a dead run's leftovers from a live one's.
prefix=e2ekl-
id=$prefix$$
hub=$id-hub
subnet=10.213.1
hosts=(etcd01 etcd02 etcd03)
# Kernel settings kubelet changes at start; put back afterwards.
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

passed=0
work=
cgroups_before=
declare -A saved_sysctl=()

log() { printf '%s e2e-kubelet: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() {
	log "FAIL: $*"
	exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

ns_of() { echo "$id-$1"; }
state_of() { echo "$work/state/$1"; }
# in_host HOST CMD...: run CMD in HOST's network, mount and UTS namespaces.
in_host() {
	local h=$1
	shift
	nsenter -t "$(cat "$(state_of "$h")/pid")" -m -n -u -- "$@"
}
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- leftovers of killed runs ---------------------------------------------

owner_alive() { kill -0 "$1" 2>/dev/null; }

kill_netns_pids() {
	local ns=$1 pids i
	for ((i = 0; i < 50; i++)); do
		pids=$(ip netns pids "$ns" 2>/dev/null | grep -vx "$$" || true)
		[[ -z $pids ]] && return 0
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.2
	done
	log "processes still in $ns: $pids"
}

sweep_stale() {
	local ns owner dir
	for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
		owner=${ns#"$prefix"}
		owner=${owner%%-*}
		owner_alive "$owner" && continue
		log "removing network namespace $ns of dead run $owner"
		kill_netns_pids "$ns"
		ip netns delete "$ns" || true
	done
	for dir in "${TMPDIR:-/tmp}"/e2e-kubelet.*; do
		[[ -d $dir ]] || continue
		owner=${dir##*.}
		if [[ ! $owner =~ ^[0-9]+$ ]] || owner_alive "$owner"; then continue; fi
		log "removing work folder $dir of dead run $owner"
		rm -rf "$dir"
	done
}

# --- teardown -------------------------------------------------------------

dump_logs() {
	local h f
	for h in "${hosts[@]}"; do
		f=$(state_of "$h")/containerd.log
		if [[ -s $f ]]; then
			echo "----- $h's containerd.log: last errors and warnings -----" >&2
			grep -E 'level=(warning|error|fatal)' "$f" | tail -n 20 >&2
		fi
		f=$(state_of "$h")/kubelet.log
		if [[ -s $f ]]; then
			echo "----- $h's kubelet.log: last lines -----" >&2
			grep -v "no default routes found" "$f" | tail -n 40 >&2
		fi
	done
}

teardown() {
	local rc=$? h ns pid path d pids
	set +e
	trap - EXIT INT TERM
	if ((rc != 0)) && [[ -n $work && -d $work/state ]]; then
		dump_logs
	fi
	log "tearing down"
	# kubelets first, so that none restarts what is being stopped.
	for h in "${hosts[@]}"; do
		[[ -n $work ]] && alive "$(state_of "$h")/kubelet.pid" && kill -TERM "$(cat "$(state_of "$h")/kubelet.pid")"
	done
	local cgroups=() own
	own=$(cut -d: -f3 /proc/$$/cgroup | sort -u)
	for h in "${hosts[@]}"; do
		ns=$(ns_of "$h")
		ip netns list | grep -q "^$ns\b" || continue
		# The cgroups runc made for the containers; killed containers leave
		# them behind, so remove them by hand once they are empty.
		pids=$(ip netns pids "$ns" 2>/dev/null)
		for pid in $pids; do
			while IFS= read -r path; do
				[[ $path == / ]] && continue
				grep -qxF "$path" <<<"$own" && continue
				cgroups+=("$path")
			done < <(cut -d: -f3 "/proc/$pid/cgroup" 2>/dev/null)
		done
		kill_netns_pids "$ns"
		ip netns delete "$ns"
	done
	# Their parents too (containerd's /k8s.io), unless they were there before.
	local all=()
	for path in "${cgroups[@]}"; do
		while [[ $path != / && $path != . ]]; do
			all+=("$path")
			path=$(dirname "$path")
		done
	done
	if ((${#all[@]})); then
		for path in $(printf '%s\n' "${all[@]}" | sort -u -r); do
			for d in /sys/fs/cgroup/*"$path"; do
				[[ -d $d ]] || continue
				grep -qxF "$d" <<<"$cgroups_before" && continue
				rmdir "$d" 2>/dev/null
			done
		done
	fi
	ip netns list | grep -q "^$hub\b" && ip netns delete "$hub"
	local changed=()
	for s in "${!saved_sysctl[@]}"; do
		[[ $(sysctl -n "$s") == "${saved_sysctl[$s]}" ]] && continue
		sysctl -q -w "$s=${saved_sysctl[$s]}" >/dev/null
		changed+=("$s=${saved_sysctl[$s]}")
	done
	((${#changed[@]} == 0)) || log "put back the kernel settings kubelet changed: ${changed[*]}"
	if [[ -n $work ]]; then
		if [[ ${E2E_KUBELET_KEEP:-} == 1 ]]; then
			log "kept $work"
		else
			rm -rf "$work"
		fi
	fi
	if ((rc == 0)); then
		log "$passed passed, 0 failed"
	else
		log "$passed passed, 1 failed"
	fi
	exit "$rc"
}

# --- preparation ----------------------------------------------------------

install_packages() {
	local need=() cmd pkg
	for cmd in containerd:containerd ctr:containerd runc:runc umoci:umoci; do
		pkg=${cmd#*:}
		command -v "${cmd%%:*}" >/dev/null || need+=("$pkg")
	done
	((${#need[@]})) || return 0
	mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
	log "installing ${need[*]} from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y "${need[@]}" >"$out/apt.log" 2>&1; then
		apt-get update >>"$out/apt.log" 2>&1
		apt-get install -y "${need[@]}" >>"$out/apt.log" 2>&1 || {
			tail -n 20 "$out/apt.log" >&2
			fail "apt-get install ${need[*]}"
		}
	fi
}

build() {
	local t ldflags="" p
	t=$(now)
	# kubelet's version is stamped by its release scripts; do the same, so
	# that `kubelet --version` says what it is.
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$kubelet_version -X $p.gitMajor=1 -X $p.gitMinor=36"
		ldflags+=" -X $p.gitCommit=module-proxy-$kubelet_version -X $p.gitTreeState=clean"
	done
	(cd "$top/tools" && CGO_ENABLED=0 "$GO" build -mod=mod -modfile=kubelet.mod -trimpath -ldflags "$ldflags" \
		-o "$kubelet" k8s.io/kubernetes/cmd/kubelet)
	log "built $("$kubelet" --version) in $(since "$t")"
	t=$(now)
	# The image has nothing but the binary: it must be static.
	(cd "$top/tools" && CGO_ENABLED=0 "$GO" build -mod=mod -modfile=etcd.mod -trimpath \
		-o "$out/etcd" go.etcd.io/etcd/server/v3)
	(cd "$top" && CGO_ENABLED=0 "$GO" build -trimpath -o "$out/pause" ./e2e-kubelet/pause)
	log "built static etcd $("$out/etcd" --version | awk '/etcd Version/ {print $3}') and pause in $(since "$t")"
}

# image REF BINARY PATH UMOCI-CONFIG-FLAGS...: an OCI archive holding BINARY
# at PATH, listed in images/list for host.sh to import as REF.
image() {
	local ref=$1 bin=$2 dest=$3 layout
	shift 3
	layout=$work/oci/$(basename "${ref%:*}")
	umoci init --layout "$layout"
	umoci new --image "$layout:${ref##*:}"
	umoci insert --image "$layout:${ref##*:}" "$bin" "$dest" >/dev/null
	umoci config --image "$layout:${ref##*:}" "$@"
	umoci gc --layout "$layout"
	tar -C "$layout" -cf "$work/images/${layout##*/}.tar" .
	echo "$work/images/${layout##*/}.tar ${ref%:*}" >>"$work/images/list"
}

make_images() {
	mkdir -p "$work/oci" "$work/images"
	# The manifest's command is plain `etcd`, found through PATH as in the
	# real image, where the binary is /usr/local/bin/etcd.
	image "$etcd_image" "$out/etcd" /usr/local/bin/etcd \
		--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--config.cmd /usr/local/bin/etcd
	image "$pause_image" "$out/pause" /pause --config.entrypoint /pause --config.user 65535:65535
	log "packed $etcd_image and $pause_image as OCI archives"
}

# No default route: the hosts reach each other and nothing else, so anything
# addressed elsewhere (cloud metadata probes, say) fails at once instead of
# waiting for a timeout. kubelet then logs that it finds no node address,
# which a standalone kubelet does not need.
make_network() {
	local i=0 h ns
	ip netns add "$hub"
	ip -n "$hub" link set lo up
	ip -n "$hub" link add br0 type bridge
	ip -n "$hub" link set br0 up
	for h in "${hosts[@]}"; do
		i=$((i + 1))
		ns=$(ns_of "$h")
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip -n "$hub" link add "v$i" type veth peer name eth0 netns "$ns"
		ip -n "$hub" link set "v$i" master br0 up
		ip -n "$ns" addr add "$subnet.1$i/24" dev eth0
		ip -n "$ns" link set eth0 up
	done
	log "network: hub namespace $hub with bridge br0; ${hosts[*]} in namespaces $id-NAME at $subnet.11-1$i"
}

make_bundles() {
	local i=0 h spec=()
	for h in "${hosts[@]}"; do
		i=$((i + 1))
		spec+=("$h=$subnet.1$i")
	done
	# What this machine needs, given the way a user would: cgroup v1 without
	# systemd, no QoS cgroups, and no flexvolume folder made in /usr.
	cat >"$work/kubelet-patch.yaml" <<'EOF'
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
volumePluginDir: /var/lib/kubelet/volume-plugins
EOF
	local IFS=,
	"$cli" init --hosts "${spec[*]}" --out "$work/bundles" \
		--cgroup-driver cgroupfs --kubelet-path "$kubelet" \
		--kubelet-config-patch "$work/kubelet-patch.yaml" >"$work/init.log"
	unset IFS
	log "etcd-staticpod init: bundles for ${spec[*]} in $work/bundles"
	log "kubelet command line: $(grep '^ExecStart=.' "$work/bundles/etcd01/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf")"
}

# --- checks ---------------------------------------------------------------

# etcd_task HOST: "CONTAINER-ID PID" of HOST's running etcd container.
etcd_task() {
	local ids
	ids=$(in_host "$1" ctr -n k8s.io containers ls -q 'labels."io.kubernetes.container.name"==etcd' 2>/dev/null) || return 0
	[[ -n $ids ]] || return 0
	in_host "$1" ctr -n k8s.io tasks ls 2>/dev/null |
		awk 'NR > 1 && $3 == "RUNNING" {print $1, $2}' | grep -F -f <(echo "$ids") || true
}

check_kubelets() {
	local h
	for h in "${hosts[@]}"; do
		alive "$(state_of "$h")/kubelet.pid" || fail "$h's kubelet is not running"
		alive "$(state_of "$h")/containerd.pid" || fail "$h's containerd is not running"
	done
}

status_line() {
	local h s=""
	for h in "${hosts[@]}"; do
		if [[ -n $(etcd_task "$h") ]]; then s+=" $h: etcd running;"; else s+=" $h: no etcd container yet;"; fi
	done
	log "waiting:${s%;}"
}

health() {
	ip netns exec "$(ns_of etcd01)" "$cli" health --bundle "$work/bundles/etcd01" --timeout 3s
}

# wait_healthy SECONDS: until `etcd-staticpod health` passes for the whole
# cluster, asked from etcd01's network.
wait_healthy() {
	local deadline=$((SECONDS + $1)) next=$((SECONDS + 15))
	while ((SECONDS < deadline)); do
		check_kubelets
		if health >/dev/null 2>&1; then
			return 0
		fi
		if ((SECONDS >= next)); then
			status_line
			next=$((SECONDS + 15))
		fi
		sleep 1
	done
	health || true
	return 1
}

# --- run ------------------------------------------------------------------

main() {
	[[ $(id -u) == 0 ]] || fail "needs root (network and mount namespaces, containerd, kubelet)"
	[[ -x $cli ]] || fail "$cli is missing: run make build"
	mkdir -p "$out"
	sweep_stale
	install_packages
	build

	trap teardown EXIT
	trap 'exit 130' INT TERM
	work=${TMPDIR:-/tmp}/e2e-kubelet.$$
	rm -rf "$work"
	mkdir -m 0700 "$work"
	case $work in /etc/* | /var/* | /run/*) fail "work folder $work would be hidden by the hosts' overlays" ;; esac
	mkdir -p "$work/state"
	log "work folder $work"

	make_images
	make_bundles
	local s
	for s in "${sysctls[@]}"; do
		saved_sysctl[$s]=$(sysctl -n "$s")
	done
	cgroups_before=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d)
	make_network

	local h i
	for h in "${hosts[@]}"; do
		mkdir -p "$(state_of "$h")"
		# nsenter, not `ip netns exec`, which would mount a new /sys without
		# the cgroup hierarchies kubelet and runc need.
		nsenter --net="/run/netns/$(ns_of "$h")" unshare --mount --uts --propagation private -- \
			"$here/host.sh" "$h" "$work/bundles/$h" "$(state_of "$h")" "$work/images" &
		disown
	done
	local deadline=$((SECONDS + 120))
	for h in "${hosts[@]}"; do
		until [[ -f $(state_of "$h")/kubelet.started ]]; do
			((SECONDS < deadline)) || fail "$h's kubelet did not start"
			[[ -f $(state_of "$h")/pid ]] && ! alive "$(state_of "$h")/pid" && fail "$h's host process exited before kubelet started"
			sleep 0.2
		done
	done
	local first last
	first=$(cat "$work"/state/*/kubelet.started | sort -n | head -n 1)
	last=$(cat "$work"/state/*/kubelet.started | sort -n | tail -n 1)
	log "three kubelets started (within $(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.1fs", b - a }')); waiting up to ${ready_timeout}s for a healthy cluster"

	wait_healthy "$ready_timeout" || fail "the cluster was not healthy ${ready_timeout}s after the first kubelet started"
	local took
	took=$(since "$first")
	health
	local cid pid pod
	for h in "${hosts[@]}"; do
		read -r cid pid <<<"$(etcd_task "$h")"
		pod=$(in_host "$h" ctr -n k8s.io containers info "$cid" | sed -n 's/.*"io.kubernetes.pod.name": "\(.*\)".*/\1/p' | head -n 1)
		log "$h: kubelet runs static Pod $pod, etcd container ${cid:0:12} (pid $pid)"
	done
	log "all three kubelet-run members healthy $took after the first kubelet started"
	passed=$((passed + 1))

	# A member dies: its kubelet must start it again and the cluster heal.
	local victim=etcd02 newcid newpid t
	read -r cid pid <<<"$(etcd_task "$victim")"
	[[ -n $cid ]] || fail "no running etcd container on $victim"
	log "killing $victim's etcd container ${cid:0:12} (pid $pid) with SIGKILL"
	t=$(now)
	in_host "$victim" ctr -n k8s.io tasks kill -s SIGKILL "$cid"
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	! kill -0 "$pid" 2>/dev/null || fail "etcd (pid $pid) still runs after SIGKILL"
	deadline=$((SECONDS + restart_timeout))
	while :; do
		check_kubelets
		read -r newcid newpid <<<"$(etcd_task "$victim")"
		[[ -n $newcid && $newcid != "$cid" ]] && break
		((SECONDS < deadline)) || fail "kubelet did not restart $victim's etcd within ${restart_timeout}s"
		sleep 0.5
	done
	log "kubelet started a new etcd container ${newcid:0:12} (pid $newpid) on $victim $(since "$t") after the kill"
	wait_healthy "$restart_timeout" || fail "the cluster was not healthy again ${restart_timeout}s after the kill"
	took=$(since "$t")
	health
	log "cluster healthy again $took after $victim's etcd was killed"
	passed=$((passed + 1))
}

main "$@"
