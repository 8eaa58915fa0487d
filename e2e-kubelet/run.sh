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
#
# Every check ends the run with its own FAIL line (fail); a command that fails
# where no check looks is named by the ERR trap (on_error, lib.sh).
set -eEuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e-kubelet/lib.sh
. "$here/lib.sh"
tag=e2e-kubelet
top=$(dirname "$here")
GO=${GO:-go}
BIN=${BIN:-$top/.bin}
cli=$BIN/etcd-staticpod
kubelet=$BIN/kubelet
out=$BIN/e2e-kubelet
ready_timeout=${E2E_KUBELET_READY_TIMEOUT:-300}
restart_timeout=${E2E_KUBELET_RESTART_TIMEOUT:-180}
keep=${E2E_KUBELET_KEEP:-}

etcd_ref=registry.k8s.io/etcd:3.6.8-0
pause_ref=registry.k8s.io/pause:3.10 # sandbox_image in host.sh

# Every namespace and work folder of a run carries its pid, so that a later
# run can tell a dead run's leftovers from a live one's.
prefix=e2ekl-
id=$prefix$$
hub=$id-hub
subnet=10.213.1
hosts=(etcd01 etcd02 etcd03)

passed=0
work=
cgroups_before=
declare -A saved_sysctl=()
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

# --- teardown -------------------------------------------------------------

teardown() {
	local rc=$?
	set +e
	trap - EXIT INT TERM ERR
	if ((rc != 0)) && [[ -n $work && -d $work/state ]]; then
		dump_logs
	fi
	log "tearing down"
	stop_hosts
	finish "$rc"
	exit "$rc"
}

# --- preparation ----------------------------------------------------------

make_images() {
	etcd_image "$etcd_ref" "$out/etcd"
	pause_image "$pause_ref"
	log "packed $etcd_ref and $pause_ref as OCI archives"
}

# The hosts reach each other and nothing else (see add_host); kubelet then
# logs that it finds no node address, which a standalone kubelet does not
# need.
make_network() {
	local i=0 h
	make_hub
	for h in "${hosts[@]}"; do
		i=$((i + 1))
		add_host "$h" "$subnet.1$i/24"
	done
	log "network: hub namespace $hub with bridge br0; ${hosts[*]} in namespaces $id-NAME at $subnet.11-1$i"
}

make_bundles() {
	local i=0 h spec=()
	for h in "${hosts[@]}"; do
		i=$((i + 1))
		spec+=("$h=$subnet.1$i")
	done
	local IFS=,
	"$cli" init --hosts "${spec[*]}" --out "$work/bundles" \
		--cgroup-driver cgroupfs --kubelet-path "$kubelet" \
		--kubelet-config-patch "$top/e2e-kubelet/kubelet-patch.yaml" >"$work/init.log"
	unset IFS
	log "etcd-staticpod init: bundles for ${spec[*]} in $work/bundles"
	log "kubelet command line: $(grep '^ExecStart=.' "$work/bundles/etcd01/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf")"
}

# --- checks ---------------------------------------------------------------

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
	sweep_stale "${TMPDIR:-/tmp}/e2e-kubelet"
	install_packages containerd:containerd ctr:containerd runc:runc umoci:umoci
	build_kubelet_etcd_pause

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
	save_host_state
	make_network

	local h i
	for h in "${hosts[@]}"; do
		start_host_script "$here/host.sh" "$h" "$work/bundles/$h" "$(state_of "$h")" "$work/images"
	done
	for h in "${hosts[@]}"; do
		wait_kubelet_started "$h" 120
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
