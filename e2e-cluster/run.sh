#!/usr/bin/env bash
# `make e2e-cluster` (root only): a Kubernetes control plane made by the real
# `kubeadm init --config kubeadm-config.yaml` on the external etcd cluster of
# `etcd-staticpod init`, then day 2 under it.
#
# Five nodes, each a network namespace on a bridge in a hub namespace
# (10.213.2.0/24, inside those namespaces only), each with its own mount
# namespace, containerd and kubelet v1.36.3 run as systemd runs the kubelet
# package's unit (see host.sh): etcd01-03 with their bundles unpacked at /,
# cp01 with control-plane/ unpacked at /, and etcd04, started later by
# `member add`. On cp01 the real kubeadm v1.36.3 runs `init` with the
# kubeadm-config.yaml our init wrote, unedited. Then, while a writer creates a
# ConfigMap through the apiserver every 100 ms: a rolling `certs renew all
# --node`, `upgrade --etcd-version 3.6.16-0 --exec` swapping each manifest in
# with one rename, `member add etcd04` and `member remove etcd02` with
# kube-apiserver's --etcd-servers changed as those commands print, and
# `snapshot save`. At the end every acknowledged ConfigMap must exist.
# Then the StatefulSet stage on the same control plane (see step_sts).
#
# Needs $BIN/kubeadm, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl and kube-proxy v1.36.3 and CoreDNS (the Makefile builds them from
# the Go module proxy);
# builds kubelet, static etcd v3.6.8 and v3.6.16 and pause for the images;
# installs containerd, runc, umoci and containernetworking-plugins from
# Debian's packages when they are missing.
#
# Environment: GO, BIN (default .bin), E2E_CLUSTER_KEEP=1 keeps the work folder
# (bundles, logs), E2E_CLUSTER_STOP_AFTER=control-plane stops after the
# control plane's checks, E2E_CLUSTER_SKIP_DAY2=1 goes from the control plane
# straight to the StatefulSet stage.
#
# Every check ends the run with its own FAIL line (fail); a command that fails
# where no check looks is named by the ERR trap below. Sourced (as
# e2e-cluster's tests do), the script defines its functions and runs nothing.
set -eEuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
# shellcheck source=e2e-kubelet/lib.sh
. "$top/e2e-kubelet/lib.sh"
tag=e2e-cluster
GO=${GO:-go}
BIN=${BIN:-$top/.bin}
cli=$BIN/etcd-staticpod
kubelet=$BIN/kubelet
kubeadm=$BIN/kubeadm
etcdctl=$BIN/etcdctl
out=$BIN/e2e-cluster
keep=${E2E_CLUSTER_KEEP:-}
stop_after=${E2E_CLUSTER_STOP_AFTER:-}
skip_day2=${E2E_CLUSTER_SKIP_DAY2:-}

etcd_ref=registry.k8s.io/etcd:3.6.8-0
etcd_next_version=3.6.16-0
etcd_next_ref=registry.k8s.io/etcd:$etcd_next_version
# The StatefulSet stage's client images, never pulled (imagePullPolicy Never).
etcdctl_ref=e2e-cluster.local/etcdctl:v3.6.8
lookup_ref=e2e-cluster.local/lookup:v1

prefix=e2ecl-
id=$prefix$$
hub=$id-hub
subnet=10.213.2
cp=cp01
endpoint=$subnet.10:6443
declare -A addr=([cp01]=$subnet.10 [etcd01]=$subnet.11 [etcd02]=$subnet.12 [etcd03]=$subnet.13 [etcd04]=$subnet.14)
hosts=(cp01 etcd01 etcd02 etcd03 etcd04)
# The etcd members, as they change.
members=(etcd01 etcd02 etcd03)

passed=0
work=

# on_error (lib.sh) names a failing command no check covers.
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
cgroups_before=
writer_pid=
pause_ref=
declare -A saved_sysctl=()

teardown() {
	local rc=$?
	set +e
	trap - EXIT INT TERM ERR
	[[ -n $writer_pid ]] && kill -KILL "$writer_pid" 2>/dev/null
	[[ -n $etcdwriter_pid ]] && kill -KILL "$etcdwriter_pid" 2>/dev/null
	if ((rc != 0)) && [[ -n $work && -d $work/state ]]; then
		dump_logs
		[[ -s $work/writer.log ]] && tail -n 20 "$work/writer.log" >&2
	fi
	log "tearing down"
	stop_hosts
	finish "$rc"
	exit "$rc"
}

# --- preparation ----------------------------------------------------------

build() {
	local t b
	for b in kubeadm kube-apiserver kube-controller-manager kube-scheduler kubectl; do
		[[ -x $BIN/$b ]] || fail "$BIN/$b is missing: run make e2e-cluster, which builds it"
	done
	build_kubelet_etcd_pause
	t=$(now)
	(cd "$top/tools" && CGO_ENABLED=0 "$GO" build -mod=mod -modfile=etcd-next.mod -trimpath \
		-o "$out/etcd-next" go.etcd.io/etcd/server/v3)
	(cd "$top" && "$GO" build -o "$out/writer" ./e2e-cluster/writer)
	log "built static etcd $("$out/etcd-next" --version | awk '/etcd Version/ {print $3}') and the writer in $(since "$t")"
	build_statefulset
}

# build_statefulset: what the StatefulSet stage runs besides the control
# plane's images: kube-proxy and CoreDNS (the Makefile builds them), a static
# etcdctl and the lookup program for the client Pods' images, and the writer
# that talks to etcd through the client Service.
build_statefulset() {
	local t b
	for b in kube-proxy coredns; do
		[[ -x $BIN/$b ]] || fail "$BIN/$b is missing: run make e2e-cluster, which builds it"
	done
	t=$(now)
	(cd "$top/tools" && CGO_ENABLED=0 "$GO" build -mod=mod -modfile=etcd.mod -trimpath \
		-o "$out/etcdctl-static" go.etcd.io/etcd/etcdctl/v3)
	(cd "$top" && CGO_ENABLED=0 "$GO" build -trimpath -o "$out/lookup" ./e2e-cluster/lookup)
	(cd "$top" && "$GO" build -o "$out/etcdwriter" ./e2e-cluster/etcdwriter)
	log "built static etcdctl, lookup and etcdwriter in $(since "$t")"
}

# kube_proxy_rootfs DIR: kube-proxy and what its iptables mode runs, from
# Debian's iptables package: xtables-nft-multi under the names kube-proxy
# calls, the extensions it loads at run time and every library of both.
kube_proxy_rootfs() {
	local dir=$1 xt n f
	xt=$(dirname "$(readlink -f /usr/lib/x86_64-linux-gnu/xtables/libxt_comment.so)")
	[[ -x /usr/sbin/xtables-nft-multi && -d $xt ]] || fail "Debian's iptables package is missing (xtables-nft-multi, $xt)"
	mkdir -p "$dir/usr/local/bin" "$dir/usr/sbin" "$dir$xt"
	cp "$BIN/kube-proxy" "$dir/usr/local/bin/kube-proxy"
	cp /usr/sbin/xtables-nft-multi "$dir/usr/sbin/"
	for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
		ln -s xtables-nft-multi "$dir/usr/sbin/$n"
	done
	cp "$xt"/*.so "$dir$xt/"
	for f in /usr/sbin/xtables-nft-multi "$xt"/*.so; do
		ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
	done | sort -u | while read -r f; do
		mkdir -p "$dir$(dirname "$f")"
		cp -L "$f" "$dir$f"
	done
}

# make_images: the control plane's images under exactly the names
# `kubeadm config images list` prints for our kubeadm-config.yaml, and the
# two etcd releases for the etcd hosts.
make_images() {
	local ref name t
	t=$(now)
	mkdir -p "$work/images"
	ip netns exec "$hub" "$kubeadm" config images list --config "$work/bundles/kubeadm-config.yaml" >"$work/images.txt" 2>"$work/images.err" || {
		cat "$work/images.err" >&2
		fail "kubeadm config images list"
	}
	log "kubeadm config images list --config kubeadm-config.yaml: $(tr '\n' ' ' <"$work/images.txt")"
	while read -r ref; do
		name=${ref%:*}
		name=${name##*/}
		case $name in
		kube-apiserver | kube-controller-manager | kube-scheduler)
			# As in the release images: the manifest's command is the plain
			# name, found through PATH.
			image_list=$work/images/cp.list image "$ref" "$BIN/$name" "/usr/local/bin/$name" \
				--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
			;;
		pause)
			pause_ref=$ref
			image_list=$work/images/cp.list pause_image "$ref"
			;;
		kube-proxy)
			# kubeadm's DaemonSet runs /usr/local/bin/kube-proxy; its
			# iptables mode runs iptables-restore and friends.
			kube_proxy_rootfs "$work/rootfs/kube-proxy"
			image_list=$work/images/cp.list image "$ref" "$work/rootfs/kube-proxy" / \
				--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
			;;
		coredns)
			# kubeadm's Deployment gives only args: the binary is the entrypoint.
			image_list=$work/images/cp.list image "$ref" "$BIN/coredns" /coredns --config.entrypoint /coredns
			;;
		*) fail "kubeadm names an image this run does not build: $ref" ;;
		esac
	done <"$work/images.txt"
	[[ -n $pause_ref ]] || fail "kubeadm names no pause image"
	grep " ${pause_ref%:*}\$" "$work/images/cp.list" >"$work/images/etcd.list"
	image_list=$work/images/etcd.list etcd_image "$etcd_ref" "$out/etcd"
	image_list=$work/images/etcd.list etcd_image "$etcd_next_ref" "$out/etcd-next"
	# The StatefulSet stage's: etcd for its Pods, etcdctl and lookup for the
	# client Pods, on cp01 (imported at its start, used only in that stage).
	grep -F "/etcd-${etcd_ref##*:}.tar " "$work/images/etcd.list" >>"$work/images/cp.list"
	image_list=$work/images/cp.list image "$etcdctl_ref" "$out/etcdctl-static" /usr/local/bin/etcdctl \
		--config.entrypoint /usr/local/bin/etcdctl
	image_list=$work/images/cp.list image "$lookup_ref" "$out/lookup" /usr/local/bin/lookup \
		--config.entrypoint /usr/local/bin/lookup
	log "packed $(awk '{print $2}' "$work/images/cp.list" | tr '\n' ' ')for $cp and $(awk '{print $2}' "$work/images/etcd.list" | tr '\n' ' ')for the etcd hosts in $(since "$t")"
}

make_bundles() {
	"$cli" init --hosts "etcd01=${addr[etcd01]},etcd02=${addr[etcd02]},etcd03=${addr[etcd03]}" --out "$work/bundles" \
		--cgroup-driver cgroupfs --kubelet-config-patch "$top/e2e-kubelet/kubelet-patch.yaml" \
		--control-plane-endpoint "$endpoint" --kubernetes-version "$kubelet_version" >"$work/init.log" 2>&1 ||
		{
			cat "$work/init.log" >&2
			fail "etcd-staticpod init"
		}
	log "etcd-staticpod init --hosts etcd01=${addr[etcd01]},etcd02=${addr[etcd02]},etcd03=${addr[etcd03]} --control-plane-endpoint $endpoint --kubernetes-version $kubelet_version: bundles in $work/bundles"
}

# cp01 is the only node with a default route: kubeadm picks the address it
# advertises from the default route's interface. Anything sent elsewhere goes
# out on the hub's bridge, where nobody answers. Every node resolves every
# node's name through its own /etc/hosts (state/hosts) and has no DNS server.
make_network() {
	local h
	make_hub
	for h in cp01 "${members[@]}"; do
		add_host "$h" "${addr[$h]}/24"
	done
	for h in "${!addr[@]}"; do
		echo "${addr[$h]} $h"
	done | sort >"$work/state/hosts"
	ip -n "$(ns_of "$cp")" route add default dev eth0
	# kubeadm's preflight requires IP forwarding on a control-plane node; a
	# namespace has its own.
	ip netns exec "$(ns_of "$cp")" sysctl -q -w net.ipv4.ip_forward=1
	log "network: hub namespace $hub with bridge br0; cp01 at ${addr[cp01]}, etcd01-03 at ${addr[etcd01]}-${addr[etcd03]##*.}, in namespaces $id-NAME"
}

# start_node NAME ARCHIVE IMAGE-LIST
start_node() {
	start_host_script "$here/host.sh" "$1" "$(state_of "$1")" "$3" "$2" "$BIN" "$pause_ref"
}

# --- checks ---------------------------------------------------------------

check_nodes() {
	local h
	for h in "${hosts[@]}"; do
		[[ -f $(state_of "$h")/pid ]] || continue
		alive "$(state_of "$h")/pid" || fail "$h's host process is gone"
		alive "$(state_of "$h")/containerd.pid" || fail "$h's containerd is not running"
	done
}

# health [BUNDLE-HOST]: `etcd-staticpod health` from etcd01's network.
health() {
	ip netns exec "$(ns_of etcd01)" "$cli" health --bundle "$work/bundles/${1:-etcd01}" --timeout 3s
}

# wait_healthy SECONDS [BUNDLE-HOST]
wait_healthy() {
	local deadline=$((SECONDS + $1))
	while ((SECONDS < deadline)); do
		check_nodes
		health "${2:-}" >/dev/null 2>&1 && return 0
		sleep 1
	done
	health "${2:-}" || true
	return 1
}

# kubectl ARGS...: kubectl on cp01 with admin.conf, as its administrator.
kubectl() {
	in_host "$cp" env KUBECONFIG=/etc/kubernetes/admin.conf kubectl --request-timeout=10s "$@"
}

# etcd_get_everywhere KEY: the key read from every member's own store
# (serializable reads, each member asked alone).
etcd_get_everywhere() {
	local key=$1 h m deadline c=$work/bundles/etcd01/etc/kubernetes/pki/etcd
	for m in "${members[@]}"; do
		deadline=$((SECONDS + 30))
		until ip netns exec "$(ns_of etcd01)" "$etcdctl" --endpoints "https://${addr[$m]}:2379" \
			--cacert "$c/ca.crt" --cert "$c/healthcheck-client.crt" --key "$c/healthcheck-client.key" \
			get "$key" --consistency=s --keys-only 2>/dev/null | grep -qxF "$key"; do
			((SECONDS < deadline)) || fail "$key is not in $m's store"
			sleep 1
		done
		h+=" $m"
	done
	log "etcdctl get $key --consistency=s: found on${h}"
}

# --- the control plane ----------------------------------------------------

# kubeadm_init: the real `kubeadm init --config kubeadm-config.yaml` on cp01,
# with the file our init wrote, as it is. What this machine lacks goes through
# kubeadm's own means:
#   /etc/default/kubelet: kubeadm v1.36 refuses --patches beside --config
#     (patches belong in an InitConfiguration, which the file does not have),
#     so this machine's kubelet settings (cgroupfs, cgroup v1 allowed, no QoS
#     cgroups, the plugin folder under /var/lib/kubelet, no image garbage
#     collection and eviction only on a nearly full disk, which others share;
#     the etcd hosts get the same through --kubelet-config-patch) go where kubeadm's 10-kubeadm.conf
#     drop-in takes the node's own kubelet flags, KUBELET_EXTRA_ARGS;
#   --skip-phases addon/coredns,addon/kube-proxy: the control plane and day 2
#     do not need them; the StatefulSet stage adds them afterwards through
#     kubeadm's own addon phase (see step_sts_node);
#   --ignore-preflight-errors names each check this machine cannot pass (see
#     preflight_ignores); every other check runs, ExternalEtcdVersion among
#     them, which asks every endpoint of kubeadm-config.yaml for its version.
preflight_ignores=(
	# cgroup v1 without systemd: kubeadm's system verification fails on the
	# cgroup version, which kubelet accepts through --fail-cgroupv1=false.
	SystemVerification
)
kubeadm_init() {
	local st t rc
	st=$(state_of "$cp")
	echo 'KUBELET_EXTRA_ARGS="--cgroup-driver=cgroupfs --fail-cgroupv1=false --cgroups-per-qos=false --enforce-node-allocatable= --volume-plugin-dir=/var/lib/kubelet/volume-plugins --image-gc-high-threshold=100 --eviction-hard=memory.available<100Mi,nodefs.available<1%,imagefs.available<1%"' |
		in_host "$cp" sh -c 'cat >/etc/default/kubelet'
	log "$cp: /etc/default/kubelet: $(in_host "$cp" cat /etc/default/kubelet)"
	# scp etcd-bundles/kubeadm-config.yaml root@CONTROL-PLANE:
	install -m 0600 "$work/bundles/kubeadm-config.yaml" "$st/kubeadm-config.yaml"
	local ignores
	ignores=$(
		IFS=,
		echo "${preflight_ignores[*]}"
	)
	# --v=1 shows the checks as they run.
	local cmd=(kubeadm init --config "$st/kubeadm-config.yaml"
		--skip-phases addon/coredns,addon/kube-proxy --ignore-preflight-errors "$ignores" --v=1)
	log "on $cp: ${cmd[*]}"
	t=$(now)
	rc=0
	in_host "$cp" "${cmd[@]}" > >(tee "$work/kubeadm-init.log" | sed -u "s/^/    [$cp] /" >&2) 2>&1 || rc=$?
	sleep 0.2
	((rc == 0)) || fail "kubeadm init exited $rc"
	cmp -s "$work/bundles/kubeadm-config.yaml" "$st/kubeadm-config.yaml" || fail "kubeadm-config.yaml changed"
	grep -q 'validating the external etcd version' "$work/kubeadm-init.log" || fail "kubeadm did not check the external etcd"
	log "kubeadm init succeeded in $(since "$t") with kubeadm-config.yaml as etcd-staticpod init wrote it; its preflight checked the external etcd's version"
}

check_control_plane() {
	local deadline c pods p
	kubectl wait --for=condition=Ready "node/$cp" --timeout=300s >/dev/null || fail "node $cp is not Ready"
	log "node Ready: $(kubectl get node "$cp" --no-headers | tr -s ' ')"
	deadline=$((SECONDS + 300))
	for c in kube-apiserver kube-controller-manager kube-scheduler; do
		until [[ $(kubectl -n kube-system get pod "$c-$cp" -o 'jsonpath={.status.phase}/{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == Running/True ]]; do
			((SECONDS < deadline)) || fail "$c-$cp is not Running and Ready"
			sleep 2
		done
	done
	kubectl -n kube-system get pods -o wide | indent || fail "kubectl -n kube-system get pods"
	log "the control-plane Pods are Running and Ready"
	local r
	r=$(kubectl get --raw /readyz/etcd) || fail "kubectl get --raw /readyz/etcd: $r"
	[[ $r == ok ]] || fail "/readyz/etcd said: $r"
	log "kubectl get --raw /readyz/etcd: $r"
	kubectl create configmap e2e-cluster-probe --from-literal=made-by=kubectl >/dev/null || fail "kubectl create configmap e2e-cluster-probe"
	etcd_get_everywhere /registry/configmaps/default/e2e-cluster-probe
	passed=$((passed + 1))
}

# --- day 2 ----------------------------------------------------------------

# etcd_cli ARGS...: etcd-staticpod from etcd01's network, as on the machine
# that ran init.
etcd_cli() {
	ip netns exec "$(ns_of etcd01)" "$cli" "$@"
}

start_writer() {
	nsenter --net="/run/netns/$(ns_of "$cp")" "$out/writer" \
		-kubeconfig "$(state_of "$cp")/root/etc/kubernetes/admin.conf" -interval 100ms \
		>"$work/writer.out" 2> >(tee "$work/writer.log" | sed -u 's/^/    /' >&2) &
	writer_pid=$!
	sleep 3
	kill -0 "$writer_pid" 2>/dev/null || fail "the writer exited at once"
	log "writer started (pid $writer_pid): a ConfigMap every 100 ms through https://$endpoint"
}

stop_writer() {
	local rc=0
	kill -TERM "$writer_pid" || fail "the writer (pid $writer_pid) is gone"
	wait "$writer_pid" || rc=$?
	writer_pid=
	sed 's/^/    /' "$work/writer.out" >&2
	((rc == 0)) || fail "the writer exited $rc"
	grep -q '^writer: 0 lost of [0-9]* acknowledged writes' "$work/writer.out" || fail "acknowledged writes were lost"
}

# restart_etcd HOST SIGNAL: kills HOST's etcd container and waits for its
# kubelet to start a new one (the static Pod's restartPolicy is Always).
restart_etcd() {
	local h=$1 sig=$2 cid pid newcid newpid t deadline
	read -r cid pid <<<"$(etcd_task "$h")"
	[[ -n $cid ]] || fail "no running etcd container on $h"
	t=$(now)
	in_host "$h" ctr -n k8s.io tasks kill -s "$sig" "$cid"
	deadline=$((SECONDS + 180))
	while :; do
		check_nodes
		read -r newcid newpid <<<"$(etcd_task "$h")"
		[[ -n $newcid && $newcid != "$cid" ]] && break
		((SECONDS < deadline)) || fail "kubelet did not restart $h's etcd within 180s"
		sleep 0.5
	done
	log "$h: etcd container ${cid:0:12} (pid $pid) killed with $sig; kubelet started ${newcid:0:12} (pid $newpid) $(since "$t") later"
}

# served_serial HOST: the serial of the certificate HOST's etcd serves.
served_serial() {
	local c=$work/bundles/etcd01/etc/kubernetes/pki/etcd
	ip netns exec "$(ns_of etcd01)" openssl s_client -connect "${addr[$1]}:2379" -CAfile "$c/ca.crt" \
		-cert "$c/healthcheck-client.crt" -key "$c/healthcheck-client.key" </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}

step_renew() {
	local h i=0 want got sig deadline
	log "day 2, step 1: rolling certs renew all --node NAME, one etcd host at a time"
	for h in "${members[@]}"; do
		i=$((i + 1))
		log "etcd-staticpod certs renew all --node $h --out $work/bundles"
		"$cli" certs renew all --node "$h" --out "$work/bundles" 2>&1 | indent || fail "etcd-staticpod certs renew all --node $h failed"
		want=$(openssl x509 -noout -serial -in "$work/bundles/$h/etc/kubernetes/pki/etcd/server.crt" | sed 's/^serial=//') ||
			fail "no serial in $h's renewed server.crt"
		# scp etcd-bundles/$h.tar.gz root@$h:/tmp/ && ssh root@$h 'tar --no-overwrite-dir -C / -xzf /tmp/$h.tar.gz'
		in_host "$h" tar --no-overwrite-dir -C / -xzf "$work/bundles/$h.tar.gz" || fail "unpacking $h.tar.gz on $h"
		# The first etcd is killed outright, the others stopped as `crictl
		# stop` would; either way kubelet starts it again.
		sig=SIGTERM
		((i == 1)) && sig=SIGKILL
		restart_etcd "$h" "$sig"
		deadline=$((SECONDS + 60))
		until got=$(served_serial "$h") && [[ $got == "$want" ]]; do
			((SECONDS < deadline)) || fail "$h serves certificate $got, not the renewed $want"
			sleep 1
		done
		wait_healthy 180 "$h" || fail "the cluster was not healthy after $h's renewal"
		log "$h serves its renewed certificate (serial $got); etcd-staticpod health --bundle $work/bundles/$h:"
		health "$h" 2>&1 | indent || fail "etcd-staticpod health --bundle $work/bundles/$h failed"
	done
	# As renew prints: etcd01's renewal refreshed control-plane/ (the
	# apiserver-etcd-client pair). kube-apiserver reads it when it starts
	# again, which the --etcd-servers change of step 3 makes it do; the old
	# pair stays valid until then.
	in_host "$cp" tar --no-overwrite-dir -C / -xzf "$work/bundles/control-plane.tar.gz" || fail "unpacking control-plane.tar.gz on $cp"
	cmp -s "$(state_of "$cp")/root/etc/kubernetes/pki/apiserver-etcd-client.crt" \
		"$work/bundles/control-plane/etc/kubernetes/pki/apiserver-etcd-client.crt" || fail "$cp did not get the renewed apiserver-etcd-client"
	log "$cp: unpacked the renewed control-plane.tar.gz at / (apiserver-etcd-client serial $(openssl x509 -noout -serial -in "$(state_of "$cp")/root/etc/kubernetes/pki/apiserver-etcd-client.crt" | sed 's/^serial=//'))"
	passed=$((passed + 1))
}

step_upgrade() {
	local h v hook
	log "day 2, step 2: etcd-staticpod upgrade --etcd-version $etcd_next_version --exec, each manifest swapped in with one rename"
	# scp -p {manifest} {scp-target}:/etc/kubernetes/etcd.yaml.new &&
	# ssh {ssh-target} mv /etc/kubernetes/etcd.yaml.new /etc/kubernetes/manifests/etcd.yaml
	hook="cp -p {manifest} $work/state/{name}/root/etc/kubernetes/etcd.yaml.new &&"
	hook+=" nsenter -t \$(cat $work/state/{name}/pid) -m mv /etc/kubernetes/etcd.yaml.new /etc/kubernetes/manifests/etcd.yaml"
	log "etcd-staticpod upgrade --etcd-version $etcd_next_version --out $work/bundles --exec '$hook'"
	etcd_cli upgrade --etcd-version "$etcd_next_version" --out "$work/bundles" --exec "$hook" 2>&1 | indent || fail "etcd-staticpod upgrade failed"
	for h in "${members[@]}"; do
		v=$(in_host "$h" ctr -n k8s.io containers info "$(etcd_task "$h" | awk '{print $1}')" | sed -n 's/.*"Image": "\(.*\)".*/\1/p' | head -n 1) ||
			fail "ctr containers info of $h's etcd"
		[[ $v == "$etcd_next_ref" ]] || fail "$h runs $v, not $etcd_next_ref"
	done
	log "every member runs $etcd_next_ref"
	passed=$((passed + 1))
}

# set_etcd_servers LOG: --etcd-servers as the command that wrote LOG printed
# it, written into cp01's kube-apiserver manifest with one rename; waits for
# kubelet to run the new apiserver and for it to be ready.
set_etcd_servers() {
	local servers old cid t deadline
	servers=$(grep -o -- '--etcd-servers=[^ ]*' "$1" | tail -n 1)
	servers=${servers#--etcd-servers=}
	[[ -n $servers ]] || fail "no --etcd-servers line in $1"
	old=$(grep -o -- '--etcd-servers=[^ ]*' "$(state_of "$cp")/root/etc/kubernetes/manifests/kube-apiserver.yaml")
	read -r cid _ <<<"$(container_task "$cp" kube-apiserver)"
	t=$(now)
	in_host "$cp" sh -c "sed 's#--etcd-servers=.*#--etcd-servers=$servers#' /etc/kubernetes/manifests/kube-apiserver.yaml >/etc/kubernetes/kube-apiserver.yaml.new &&
		mv /etc/kubernetes/kube-apiserver.yaml.new /etc/kubernetes/manifests/kube-apiserver.yaml"
	log "$cp: kube-apiserver.yaml ${old} -> --etcd-servers=$servers"
	deadline=$((SECONDS + 300))
	local newcid
	until read -r newcid _ <<<"$(container_task "$cp" kube-apiserver)" && [[ -n $newcid && $newcid != "$cid" ]] &&
		[[ $(kubectl get --raw /readyz 2>/dev/null) == ok ]]; do
		((SECONDS < deadline)) || fail "the new kube-apiserver was not ready within 300s"
		sleep 1
	done
	in_host "$cp" cat "/proc/$(container_task "$cp" kube-apiserver | awk '{print $2}')/cmdline" | tr '\0' '\n' | grep -qxF -- "--etcd-servers=$servers" ||
		fail "the running kube-apiserver does not have --etcd-servers=$servers"
	log "$cp: kubelet runs the new kube-apiserver ${newcid:0:12} with --etcd-servers=$servers, ready $(since "$t") after the rename"
	# The endpoint list in the cluster's own copy of the configuration, for
	# later kubeadm runs.
	in_host "$cp" kubeadm init phase upload-config kubeadm --config "$work/bundles/kubeadm-config.yaml" 2>&1 | sed "s/^/    [$cp] /" >&2 ||
		fail "kubeadm init phase upload-config kubeadm on $cp failed"
}

step_member_add() {
	local new=etcd04 pid deadline
	log "day 2, step 3: member add $new=${addr[$new]}, a fourth kubelet host"
	add_host "$new" "${addr[$new]}/24"
	etcd_cli member add "$new=${addr[$new]}" --out "$work/bundles" >"$work/member-add.log" 2>&1 &
	pid=$!
	deadline=$((SECONDS + 120))
	until grep -q "^Start $new" "$work/member-add.log"; do
		kill -0 "$pid" 2>/dev/null || break
		((SECONDS < deadline)) || fail "member add did not print how to start $new"
		sleep 0.5
	done
	local shown
	shown=$(grep -c '' "$work/member-add.log")
	sed 's/^/    /' "$work/member-add.log" >&2
	# scp etcd-bundles/etcd04.tar.gz ... && ssh ... 'tar --no-overwrite-dir -C / -xzf ... && systemctl restart kubelet'
	start_node "$new" "$work/bundles/$new.tar.gz" "$work/images/etcd.list"
	wait_kubelet_started "$new" 180
	wait "$pid" || {
		tail -n +"$((shown + 1))" "$work/member-add.log" | sed 's/^/    /' >&2
		fail "member add $new failed"
	}
	tail -n +"$((shown + 1))" "$work/member-add.log" | sed 's/^/    /' >&2
	members+=("$new")
	wait_healthy 120 || fail "the cluster was not healthy after adding $new"
	set_etcd_servers "$work/member-add.log"
	passed=$((passed + 1))
}

step_member_remove() {
	local gone=etcd02 deadline m
	log "day 2, step 4: member remove $gone"
	etcd_cli member remove "$gone" --out "$work/bundles" >"$work/member-remove.log" 2>&1 || {
		sed 's/^/    /' "$work/member-remove.log" >&2
		fail "member remove $gone failed"
	}
	sed 's/^/    /' "$work/member-remove.log" >&2
	# ssh root@etcd02 'rm /etc/kubernetes/manifests/etcd.yaml', then its data once the Pod is gone.
	in_host "$gone" rm /etc/kubernetes/manifests/etcd.yaml
	deadline=$((SECONDS + 120))
	while [[ -n $(etcd_task "$gone") ]]; do
		((SECONDS < deadline)) || fail "kubelet did not stop $gone's etcd Pod"
		sleep 1
	done
	# /var/lib/etcd is a mount point here: empty it rather than remove it.
	in_host "$gone" find /var/lib/etcd -mindepth 1 -delete
	log "$gone: kubelet stopped its etcd Pod; its data is removed"
	for m in "${!members[@]}"; do
		[[ ${members[$m]} == "$gone" ]] && unset 'members[m]'
	done
	members=("${members[@]}")
	wait_healthy 120 || fail "the cluster was not healthy after removing $gone"
	set_etcd_servers "$work/member-remove.log"
	passed=$((passed + 1))
}

step_snapshot() {
	log "day 2, step 5: snapshot save while the writer runs"
	etcd_cli snapshot save "$work/snapshot.db" --bundle "$work/bundles/etcd01" 2>&1 | indent || fail "etcd-staticpod snapshot save failed"
	"$cli" snapshot status "$work/snapshot.db" 2>&1 | indent || fail "etcd-staticpod snapshot status failed"
	passed=$((passed + 1))
}

day2() {
	start_writer
	step_renew
	step_upgrade
	step_member_add
	step_member_remove
	step_snapshot
	# Let the writer go on a little under the final membership.
	sleep 5
	log "stopping the writer"
	stop_writer
	kubectl wait --for=condition=Ready "node/$cp" --timeout=60s >/dev/null || fail "node $cp is not Ready at the end"
	[[ $(kubectl get --raw /readyz/etcd) == ok ]] || fail "/readyz/etcd is not ok at the end"
	etcd_get_everywhere /registry/configmaps/default/e2e-cluster-probe
	log "at the end: node $cp Ready, /readyz/etcd ok, members ${members[*]}"
	passed=$((passed + 1))
}

# --- the StatefulSet stage ------------------------------------------------
#
# On the same control plane, after day 2: what a StatefulSet needs (kube-proxy
# and CoreDNS by kubeadm's own addon phase, the node untainted, local
# PersistentVolumes), then `init --runtime statefulset`, its objects applied,
# a client Pod, refused clients, no CA key in any Secret, `statefulset scale`
# 3 -> 5 -> 3 under a writer, and a member's Pod deleted and back.

sts_ns=etcd-e2e
sts_name=etcd
sts_class=e2e-local
sts_volumes=6
sts=
etcdwriter_pid=

# kubectl_wait ARGS...: kubectl on cp01 without the request timeout, for the
# commands that watch (rollout status).
kubectl_wait() {
	in_host "$cp" env KUBECONFIG=/etc/kubernetes/admin.conf kubectl "$@"
}

indent() { sed 's/^/    /' >&2; }

# pod_run NAME IMAGE SECRET ARGS...: a Pod in $sts_ns running IMAGE with
# ARGS (never pulled: the image was imported on cp01), SECRET (unless empty)
# mounted at /etc/etcd-client; waits until it ends and keeps its log in
# $work/pods/NAME.log. Returns 0 when it succeeded, 1 when it failed.
pod_run() {
	local name=$1 image=$2 secret=$3 args phase deadline
	shift 3
	args=$(printf '%s\n' "$@" | jq -R . | jq -cs .)
	mkdir -p "$work/pods"
	{
		cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $sts_ns
spec:
  restartPolicy: Never
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $image
    imagePullPolicy: Never
    args: $args
EOF
		if [[ -n $secret ]]; then
			cat <<EOF
    volumeMounts: [{name: certs, mountPath: /etc/etcd-client, readOnly: true}]
  volumes: [{name: certs, secret: {secretName: $secret}}]
EOF
		fi
	} | kubectl apply -f - >/dev/null || fail "creating Pod $name"
	deadline=$((SECONDS + 180))
	while :; do
		phase=$(kubectl -n "$sts_ns" get pod "$name" -o 'jsonpath={.status.phase}' 2>/dev/null) || true
		[[ $phase == Succeeded || $phase == Failed ]] && break
		((SECONDS < deadline)) || {
			kubectl -n "$sts_ns" describe pod "$name" | tail -n 20 | indent
			fail "Pod $name did not end within 180s"
		}
		sleep 1
	done
	kubectl -n "$sts_ns" logs "$name" >"$work/pods/$name.log" 2>&1 || true
	kubectl -n "$sts_ns" delete pod "$name" --wait=false >/dev/null 2>&1 || true
	[[ $phase == Succeeded ]]
}

# sts_etcdctl NAME SECRET ARGS...: etcdctl in a Pod through the client
# Service, with SECRET's CA and client certificate (a kubernetes.io/tls Secret).
sts_etcdctl() {
	local name=$1 secret=$2
	shift 2
	pod_run "$name" "$etcdctl_ref" "$secret" --endpoints="https://$sts_name-client.$sts_ns.svc:2379" \
		--cacert=/etc/etcd-client/ca.crt --cert=/etc/etcd-client/tls.crt --key=/etc/etcd-client/tls.key \
		--dial-timeout=5s --command-timeout=15s "$@"
}

# sts_members NAME: etcdctl member list (simple format: ID, status, name,
# peer URLs, client URLs, is learner) into $work/pods/NAME.log.
sts_members() {
	sts_etcdctl "$1" "$sts_name-healthcheck-client" member list || {
		indent <"$work/pods/$1.log"
		fail "etcdctl member list failed"
	}
}

step_sts_node() {
	local t st i cip got corefile plugins dirs d
	st=$(state_of "$cp")
	log "StatefulSet stage, step 1: kube-proxy and CoreDNS by kubeadm's addon phase, $cp untainted, local PersistentVolumes"
	t=$(now)
	# CoreDNS forwards what is not the cluster's to the node's resolver
	# (kubeadm's Corefile: forward . /etc/resolv.conf) and refuses to start
	# without one; an address on the hub that nobody holds keeps every
	# query inside the run's namespaces.
	echo "nameserver $subnet.1" >"$st/etc/resolv.conf"
	log "$cp: /etc/resolv.conf: $(in_host "$cp" cat /etc/resolv.conf)"
	# kubeadm-config.yaml as day 2 left it, and kube-proxy's settings for
	# this machine in the KubeProxyConfiguration kubeadm takes beside it: a
	# network namespace's nf_conntrack_max is read-only, so kube-proxy
	# leaves conntrack's limits and timeouts as they are (0: do not set).
	{
		cat "$work/bundles/kubeadm-config.yaml"
		cat <<EOF
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
	} >"$st/kubeadm-addons.yaml"
	log "on $cp: kubeadm init phase addon all --config kubeadm-addons.yaml (kubeadm-config.yaml and a KubeProxyConfiguration: conntrack maxPerCore, tcpEstablishedTimeout and tcpCloseWaitTimeout 0)"
	in_host "$cp" kubeadm init phase addon all --config "$st/kubeadm-addons.yaml" 2>&1 | sed "s/^/    [$cp] /" >&2 || fail "kubeadm init phase addon all"
	# A single node runs the workloads too.
	kubectl taint node "$cp" node-role.kubernetes.io/control-plane:NoSchedule- | indent || fail "removing the control-plane taint"
	kubectl_wait -n kube-system rollout status daemonset/kube-proxy --timeout=180s | indent || fail "kube-proxy did not roll out"
	# Our CoreDNS has only the plugins of kubeadm's Corefile (tools/coredns):
	# each directive of the Corefile the addon phase wrote must be one of them.
	corefile=$(kubectl -n kube-system get configmap coredns -o 'jsonpath={.data.Corefile}') || fail "kubectl get configmap coredns"
	plugins=$("$BIN/coredns" -plugins) || fail "$BIN/coredns -plugins"
	dirs=$(awk '{ sub(/^[ \t]+/, "") } depth == 1 && $0 != "" && !/^}/ { print $1 } { depth += gsub(/{/, "{") - gsub(/}/, "}") }' <<<"$corefile")
	[[ -n $dirs ]] || fail "no directives in kubeadm's Corefile: $corefile"
	for d in $dirs; do
		grep -qxF "$d" <<<"$plugins" || fail "kubeadm's Corefile uses $d, which $BIN/coredns does not have (tools/coredns/main.go)"
	done
	log "kubeadm's Corefile uses $(echo $dirs); $BIN/coredns has each"
	kubectl_wait -n kube-system rollout status deployment/coredns --timeout=300s | indent || fail "CoreDNS did not roll out"
	kubectl -n kube-system get pods -o wide -l 'k8s-app in (kube-proxy,kube-dns)' | indent || fail "kubectl -n kube-system get pods"
	log "kube-proxy and CoreDNS Running $(since "$t") after the addon phase"

	# Local volumes on cp01 for the volumeClaimTemplates: a StorageClass
	# without a provisioner, bound when a Pod is scheduled.
	{
		cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $sts_class
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
		for ((i = 0; i < sts_volumes; i++)); do
			install -d -m 0700 "$st/volumes/$i"
			cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $sts_class-$i
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $sts_class
  local: {path: $st/volumes/$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$cp]}
EOF
		done
	} | kubectl apply -f - | indent || fail "the StorageClass and PersistentVolumes"
	kubectl create namespace "$sts_ns" | indent || fail "kubectl create namespace $sts_ns"

	# Cluster DNS from a Pod: the kubernetes Service's name resolves to
	# its ClusterIP.
	cip=$(kubectl get service kubernetes -o 'jsonpath={.spec.clusterIP}')
	pod_run lookup "$lookup_ref" "" kubernetes.default.svc.cluster.local kube-dns.kube-system || {
		indent <"$work/pods/lookup.log"
		fail "a Pod could not resolve Service names"
	}
	indent <"$work/pods/lookup.log"
	got=$(awk '$1 == "kubernetes.default.svc.cluster.local" {print $2}' "$work/pods/lookup.log")
	[[ $got == "$cip" ]] || fail "kubernetes.default.svc.cluster.local resolved to '$got', not the Service's ClusterIP $cip"
	log "a Pod resolved kubernetes.default.svc.cluster.local to $got, the kubernetes Service's ClusterIP, through CoreDNS"
	passed=$((passed + 1))
}

# sts_ready_members: the StatefulSet's Pods that are Ready, "NAME NAME...".
sts_ready_members() {
	kubectl -n "$sts_ns" get pods -l "app.kubernetes.io/instance=$sts_name,app.kubernetes.io/name=etcd" -o json |
		jq -r '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True")) | .metadata.name] | join(" ")'
}

step_sts_apply() {
	local t f
	log "StatefulSet stage, step 2: init --runtime statefulset, its objects applied, three members Ready"
	sts=$work/sts
	log "etcd-staticpod init --runtime statefulset --namespace $sts_ns --name $sts_name --replicas 3 --storage-class $sts_class --storage-size 1Gi --out $sts"
	"$cli" init --runtime statefulset --namespace "$sts_ns" --name "$sts_name" --replicas 3 \
		--storage-class "$sts_class" --storage-size 1Gi --out "$sts" >"$work/sts-init.log" 2>&1 || {
		indent <"$work/sts-init.log"
		fail "etcd-staticpod init --runtime statefulset"
	}
	indent <"$work/sts-init.log"
	f=$sts/statefulset/etcd.yaml
	[[ -s $f ]] || fail "$f is missing"
	kubectl apply --dry-run=server -f "$f" | indent || fail "kubectl apply --dry-run=server refused $f"
	log "kubectl apply --dry-run=server -f $f: the apiserver accepted every object"
	t=$(now)
	kubectl apply -f "$f" | indent || fail "kubectl apply -f $f"
	kubectl_wait -n "$sts_ns" rollout status "statefulset/$sts_name" --timeout=600s | indent || {
		kubectl -n "$sts_ns" get pods,pvc -o wide | indent
		kubectl -n "$sts_ns" logs "$sts_name-0" --tail=30 | indent
		fail "the StatefulSet did not roll out"
	}
	kubectl -n "$sts_ns" get pods,pvc -o wide | indent || fail "kubectl -n $sts_ns get pods,pvc"
	log "Ready members: $(sts_ready_members) ($(since "$t") after kubectl apply)"
	sts_etcdctl health "$sts_name-healthcheck-client" endpoint health --cluster || {
		indent <"$work/pods/health.log"
		fail "etcdctl endpoint health --cluster failed"
	}
	indent <"$work/pods/health.log"
	[[ $(grep -c 'is healthy' "$work/pods/health.log") == 3 ]] || fail "not three healthy members"
	sts_members members-3
	indent <"$work/pods/members-3.log"
	log "one healthy TLS cluster of three members, each checked on its own client URL (etcdctl endpoint health --cluster through https://$sts_name-client.$sts_ns.svc:2379)"
	passed=$((passed + 1))
}

# secret_file SECRET KEY: one key of a Secret in $sts_ns, decoded.
secret_file() {
	kubectl -n "$sts_ns" get secret "$1" -o json | jq -r --arg k "$2" '.data[$k] // empty' | base64 -d
}

step_sts_clients() {
	local c=$sts/statefulset/client other=$work/other-ca line server
	log "StatefulSet stage, step 3: a client Pod with the client bundle; a client without a certificate and one from another CA refused; no Secret holds the CA key"
	secret_file "$sts_name-client" tls.crt | cmp -s - "$c/client.crt" || fail "Secret $sts_name-client does not hold $c/client.crt"
	secret_file "$sts_name-client" ca.crt | cmp -s - "$c/ca.crt" || fail "Secret $sts_name-client does not hold $c/ca.crt"
	sts_etcdctl client-put "$sts_name-client" put /e2e-cluster/client-pod "written by a client Pod" || {
		indent <"$work/pods/client-put.log"
		fail "the client Pod could not write"
	}
	sts_etcdctl client-get "$sts_name-client" get /e2e-cluster/client-pod --print-value-only || {
		indent <"$work/pods/client-get.log"
		fail "the client Pod could not read"
	}
	[[ $(cat "$work/pods/client-get.log") == "written by a client Pod" ]] || fail "the client Pod read '$(cat "$work/pods/client-get.log")'"
	log "client Pods with Secret $sts_name-client (the bundle of $c) through https://$sts_name-client.$sts_ns.svc:2379: put $(cat "$work/pods/client-put.log"), get '$(cat "$work/pods/client-get.log")'"

	# No client certificate: only the CA, to trust the server.
	if pod_run no-cert "$etcdctl_ref" "$sts_name-client" --endpoints="https://$sts_name-client.$sts_ns.svc:2379" \
		--cacert=/etc/etcd-client/ca.crt --dial-timeout=5s --command-timeout=15s get /e2e-cluster/client-pod; then
		indent <"$work/pods/no-cert.log"
		fail "a client without a certificate read etcd"
	fi
	line=$(grep -v '^$' "$work/pods/no-cert.log" | tail -n 1)
	sts_rejected "client didn't provide a certificate"
	log "refused, a client without a certificate: etcdctl: ${line:0:200}; etcd: $server"

	# A client certificate from another CA.
	mkdir -p "$other"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$other/ca.key" -out "$other/ca.crt" -days 1 -subj /CN=other-ca 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -keyout "$other/client.key" -out "$other/client.csr" -subj /CN=intruder 2>/dev/null
	printf 'extendedKeyUsage=clientAuth\n' >"$other/ext"
	openssl x509 -req -in "$other/client.csr" -CA "$other/ca.crt" -CAkey "$other/ca.key" -CAcreateserial \
		-days 1 -extfile "$other/ext" -out "$other/client.crt" 2>/dev/null
	kubectl -n "$sts_ns" create secret generic e2e-other-ca --from-file=ca.crt="$c/ca.crt" \
		--from-file=tls.crt="$other/client.crt" --from-file=tls.key="$other/client.key" >/dev/null
	if sts_etcdctl other-ca e2e-other-ca get /e2e-cluster/client-pod; then
		indent <"$work/pods/other-ca.log"
		fail "a client with a certificate from another CA read etcd"
	fi
	line=$(grep -v '^$' "$work/pods/other-ca.log" | tail -n 1)
	sts_rejected "certificate signed by unknown authority"
	log "refused, a client certificate from another CA: etcdctl: ${line:0:200}; etcd: $server"
	kubectl -n "$sts_ns" delete secret e2e-other-ca >/dev/null

	sts_no_ca_key
	passed=$((passed + 1))
}

# sts_rejected TEXT: the error of a member's "rejected connection on client
# endpoint" log line that holds TEXT: the server's own word that it refused
# the handshake (etcdctl only sees its deadline pass), into $server. Not
# echoed: a fail inside a command substitution would end only the subshell.
sts_rejected() {
	local line
	line=$(kubectl -n "$sts_ns" logs -l "app.kubernetes.io/instance=$sts_name,app.kubernetes.io/name=etcd" --tail=-1 --prefix 2>/dev/null |
		grep -F '"rejected connection on client endpoint"' | grep -F -- "$1" | tail -n 1) ||
		fail "no member logged a rejected connection with \"$1\""
	server="${line%% *} rejected connection on client endpoint, $(grep -o '"error":"[^"]*"' <<<"$line")"
}

# sts_no_ca_key: every value of every Secret in the cluster, decoded, is
# searched for the CA key: its PEM body, its DER bytes (as the value's own
# base64), and every private key a value holds is compared with the CA's by
# its public key.
sts_no_ca_key() {
	local ca_key=$sts/pki/etcd/ca.key body pub n=0 keys=0 name key value d=$work/secrets
	[[ -s $ca_key ]] || fail "$ca_key is missing"
	body=$(grep -v -- '-----' "$ca_key" | tr -d '\n')
	pub=$(openssl pkey -in "$ca_key" -pubout)
	mkdir -p "$d"
	kubectl get secrets -A -o json >"$d/all.json"
	while read -r name key value; do
		n=$((n + 1))
		if [[ $value == *"$body"* ]]; then fail "Secret $name holds the CA key's DER bytes in $key"; fi
		printf '%s' "$value" | base64 -d >"$d/value"
		if grep -qF -- "$body" "$d/value"; then fail "Secret $name holds the CA key in $key"; fi
		grep -q 'PRIVATE KEY-----' "$d/value" || continue
		keys=$((keys + 1))
		if [[ $(openssl pkey -in "$d/value" -pubout 2>/dev/null) == "$pub" ]]; then fail "Secret $name holds the CA's private key in $key"; fi
	done < <(jq -r '.items[] | (.metadata.namespace + "/" + .metadata.name) as $n | (.data // {}) | to_entries[] | "\($n) \(.key) \(.value)"' "$d/all.json")
	((n > 0)) || fail "no Secret values found"
	log "no Secret holds the CA key: $(jq '.items | length' "$d/all.json") Secrets, $n values, $keys private keys, none the CA's ($(jq -r --arg ns "$sts_ns" '[.items[] | select(.metadata.namespace == $ns) | .metadata.name] | join(" ")' "$d/all.json") in $sts_ns)"
}

# sts_cli ARGS...: etcd-staticpod from etcd01's network (the machine that
# keeps the CA), with the administrator's kubeconfig.
sts_cli() {
	ip netns exec "$(ns_of etcd01)" env KUBECONFIG="$(state_of "$cp")/root/etc/kubernetes/admin.conf" "$cli" "$@"
}

start_etcdwriter() {
	local cip
	cip=$(kubectl -n "$sts_ns" get service "$sts_name-client" -o 'jsonpath={.spec.clusterIP}')
	[[ -n $cip ]] || fail "Service $sts_name-client has no ClusterIP"
	# From cp01's network, where kube-proxy's rules lead the ClusterIP to
	# the members; the certificate names the Service, not its address.
	nsenter --net="/run/netns/$(ns_of "$cp")" "$out/etcdwriter" -endpoint "https://$cip:2379" \
		-server-name "$sts_name-client.$sts_ns.svc" -bundle "$sts/statefulset/client" -interval 100ms \
		>"$work/etcdwriter.out" 2> >(tee "$work/etcdwriter.log" | sed -u 's/^/    /' >&2) &
	etcdwriter_pid=$!
	sleep 3
	kill -0 "$etcdwriter_pid" 2>/dev/null || fail "the etcd writer exited at once"
	log "etcd writer started (pid $etcdwriter_pid): a key every 100 ms through Service $sts_name-client (https://$cip:2379) with the client bundle"
}

stop_etcdwriter() {
	local rc=0
	kill -TERM "$etcdwriter_pid" || fail "the etcd writer (pid $etcdwriter_pid) is gone"
	wait "$etcdwriter_pid" || rc=$?
	etcdwriter_pid=
	indent <"$work/etcdwriter.out"
	((rc == 0)) || fail "the etcd writer exited $rc"
	grep -q '^etcdwriter: 0 lost of [0-9]* acknowledged writes' "$work/etcdwriter.out" || fail "acknowledged writes were lost"
	if grep -q '^etcdwriter: 0 lost of 0 ' "$work/etcdwriter.out"; then fail "etcd acknowledged no write"; fi
}

# sts_scale N: statefulset scale --replicas N, its log shown and kept in
# $work/scale-N.log.
sts_scale() {
	local n=$1 t
	t=$(now)
	log "etcd-staticpod statefulset scale --replicas $n --out $sts --namespace $sts_ns"
	sts_cli statefulset scale --replicas "$n" --out "$sts" --namespace "$sts_ns" > >(tee "$work/scale-$n.log" | indent) 2>&1 || {
		sleep 0.2
		fail "statefulset scale --replicas $n failed"
	}
	sleep 0.2
	log "statefulset scale --replicas $n done in $(since "$t")"
}

# sts_health: statefulset health, through a port-forward to each member's Pod.
sts_health() {
	sts_cli statefulset health --out "$sts" --namespace "$sts_ns" 2>&1 | indent || fail "statefulset health failed"
}

# check_members N: the member list has exactly N started voting members,
# NAME-0 to NAME-(N-1), and the StatefulSet N Ready Pods.
check_members() {
	local n=$1 want i got
	sts_members "members-$n"
	indent <"$work/pods/members-$n.log"
	want=$(for ((i = 0; i < n; i++)); do echo "$sts_name-$i"; done)
	got=$(awk -F', ' '{print $3}' "$work/pods/members-$n.log" | sort)
	[[ $got == "$want" ]] || fail "members are $(echo $got), not $(echo $want)"
	if grep -q ', true$' "$work/pods/members-$n.log"; then fail "a learner is left in the member list"; fi
	if grep -v -q ', started, ' "$work/pods/members-$n.log"; then fail "a member is not started"; fi
	[[ $(kubectl -n "$sts_ns" get statefulset "$sts_name" -o 'jsonpath={.spec.replicas}/{.status.readyReplicas}') == "$n/$n" ]] ||
		fail "StatefulSet $sts_name is not at $n Ready replicas"
	log "member list: $(echo $got), all voting members, none a learner; StatefulSet $sts_name at $n/$n Ready"
}

step_sts_scale() {
	local pvcs m mid added=() removed=()
	log "StatefulSet stage, step 5: statefulset scale 3 -> 5 -> 3 while a writer puts a key every 100 ms"
	start_etcdwriter
	sts_scale 5
	for m in "$sts_name-3" "$sts_name-4"; do
		mid=$(sed -n "s/.*Added $m to the cluster as a learner (ID \([0-9a-f]*\).*/\1/p" "$work/scale-5.log")
		[[ -n $mid ]] || fail "statefulset scale did not add $m as a learner"
		grep -qF "Promoted $m to a voting member (ID $mid)" "$work/scale-5.log" || fail "statefulset scale did not promote $m"
		added+=("$m=$mid")
	done
	check_members 5
	log "learners added and promoted: ${added[*]}"
	sts_health
	sts_scale 3
	check_members 3
	for m in "$sts_name-4" "$sts_name-3"; do
		mid=$(sed -n "s/.*Removed $m (ID \([0-9a-f]*\)) from the cluster.*/\1/p" "$work/scale-3.log")
		[[ -n $mid ]] || fail "statefulset scale did not remove $m"
		# etcdctl prints IDs in hex without leading zeros.
		if grep -q "^$(printf '%x' "$((16#$mid))")," "$work/pods/members-3.log"; then fail "removed member $m ($mid) is still in the member list"; fi
		if kubectl -n "$sts_ns" get pod "$m" >/dev/null 2>&1; then fail "Pod $m is still there"; fi
		removed+=("$m=$mid")
	done
	pvcs=$(kubectl -n "$sts_ns" get pvc -o 'jsonpath={range .items[*]}{.metadata.name}{" "}{end}')
	log "removed ${removed[*]}: gone from the member list, their Pods gone; PersistentVolumeClaims kept (no --delete-volumes): $pvcs"
	sts_health
	sleep 5
	log "stopping the etcd writer"
	stop_etcdwriter
	passed=$((passed + 1))
}

step_sts_pod_back() {
	local p=$sts_name-1 mid newid uid newuid pv newpv t deadline line
	log "StatefulSet stage, step 4: delete member Pod $p; it comes back with its data and member ID"
	sts_members members-before
	mid=$(awk -F', ' -v n="$p" '$3 == n {print $1}' "$work/pods/members-before.log")
	[[ -n $mid ]] || fail "$p is not in the member list"
	uid=$(kubectl -n "$sts_ns" get pod "$p" -o 'jsonpath={.metadata.uid}')
	pv=$(kubectl -n "$sts_ns" get pvc "data-$p" -o 'jsonpath={.spec.volumeName}')
	t=$(now)
	kubectl -n "$sts_ns" delete pod "$p" | indent || fail "kubectl delete pod $p"
	deadline=$((SECONDS + 300))
	until newuid=$(kubectl -n "$sts_ns" get pod "$p" -o 'jsonpath={.metadata.uid}' 2>/dev/null) && [[ -n $newuid && $newuid != "$uid" ]] &&
		[[ $(kubectl -n "$sts_ns" get pod "$p" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]; do
		((SECONDS < deadline)) || fail "$p did not come back Ready within 300s"
		sleep 1
	done
	newpv=$(kubectl -n "$sts_ns" get pvc "data-$p" -o 'jsonpath={.spec.volumeName}')
	log "$p deleted (Pod $uid) and back Ready as Pod $newuid $(since "$t") later, on the same volume $newpv (was $pv)"
	[[ $newpv == "$pv" ]] || fail "$p came back on volume $newpv, not $pv"
	sts_members members-after
	newid=$(awk -F', ' -v n="$p" '$3 == n {print $1}' "$work/pods/members-after.log")
	[[ $newid == "$mid" ]] || fail "$p came back as member $newid, not $mid"
	# Its own store, asked alone: the key the client Pod wrote before.
	pod_run read-back "$etcdctl_ref" "$sts_name-healthcheck-client" --endpoints="https://$p.$sts_name.$sts_ns.svc:2379" \
		--cacert=/etc/etcd-client/ca.crt --cert=/etc/etcd-client/tls.crt --key=/etc/etcd-client/tls.key \
		--dial-timeout=5s --command-timeout=15s get /e2e-cluster/client-pod --consistency=s --print-value-only || {
		indent <"$work/pods/read-back.log"
		fail "reading from $p failed"
	}
	[[ $(cat "$work/pods/read-back.log") == "written by a client Pod" ]] || fail "$p's own store has '$(cat "$work/pods/read-back.log")'"
	line=$(kubectl -n "$sts_ns" logs "$p" 2>/dev/null | grep -m1 -o '"msg":"restarting local member"[^}]*' || true)
	log "$p is back as the same member $mid with its data: /e2e-cluster/client-pod read from its own store (--consistency=s); etcd: ${line:-no restart line found}"
	passed=$((passed + 1))
}

step_sts() {
	step_sts_node
	step_sts_apply
	step_sts_clients
	step_sts_pod_back
	step_sts_scale
}

# --- run ------------------------------------------------------------------

main() {
	local t0 h
	t0=$(now)
	[[ $(id -u) == 0 ]] || fail "needs root (network and mount namespaces, containerd, kubelet)"
	[[ -x $cli ]] || fail "$cli is missing: run make build"
	mkdir -p "$out"
	sweep_stale "${TMPDIR:-/tmp}/e2e-cluster"
	install_packages containerd:containerd ctr:containerd runc:runc umoci:umoci \
		/usr/lib/cni/bridge:containernetworking-plugins
	build

	trap teardown EXIT
	trap 'exit 130' INT TERM
	work=${TMPDIR:-/tmp}/e2e-cluster.$$
	rm -rf "$work"
	mkdir -m 0700 "$work"
	case $work in /etc/* | /var/* | /run/* | /usr/*) fail "work folder $work would be hidden by the hosts' overlays" ;; esac
	mkdir -p "$work/state"
	log "work folder $work"

	make_bundles
	save_host_state
	make_network
	make_images

	for h in "${members[@]}"; do
		start_node "$h" "$work/bundles/$h.tar.gz" "$work/images/etcd.list"
	done
	# scp -rp etcd-bundles/control-plane/etc root@CONTROL-PLANE:/ (the same
	# files, from the archive)
	start_node "$cp" "$work/bundles/control-plane.tar.gz" "$work/images/cp.list"
	for h in "${members[@]}" "$cp"; do
		wait_kubelet_started "$h" 180
	done
	log "kubelets started on ${members[*]} and $cp; waiting for a healthy etcd cluster"
	wait_healthy 300 || fail "the etcd cluster was not healthy within 300s"
	health || fail "etcd-staticpod health failed"
	local cid pid
	for h in "${members[@]}"; do
		read -r cid pid <<<"$(etcd_task "$h")"
		log "$h: kubelet runs etcd container ${cid:0:12} (pid $pid), image $(in_host "$h" ctr -n k8s.io containers info "$cid" | sed -n 's/.*"Image": "\(.*\)".*/\1/p' | head -n 1)"
	done

	kubeadm_init
	check_control_plane
	log "control plane up on the external etcd cluster $(since "$t0") after the start"
	[[ $stop_after == control-plane ]] && return 0
	[[ $skip_day2 == 1 ]] || day2
	step_sts
	log "whole run: $(since "$t0")"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
