# Shared by the kubelet runs: e2e-kubelet/run.sh and host.sh, and
# e2e-cluster/run.sh and host.sh source it; it only defines functions.
#
# The runner's functions expect: tag (the log prefix), prefix (of every
# namespace a run makes), id (prefix and pid), hub, work, out, top, GO, BIN,
# kubelet, hosts (every host the run may start), saved_sysctl (an associative
# array), cgroups_before, passed and keep (1 keeps the work folder).

kubelet_version=v1.36.3
# The namespace prefixes of both kinds of run (e2e-kubelet, e2e-cluster).
all_prefixes='e2ekl-|e2ecl-'

# Kernel settings kubelet changes at start; put back afterwards.
kubelet_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$tag" "$*" >&2; }
fail() {
	log "FAIL: $*"
	exit 1
}
# on_error STATUS LINE COMMAND: the runs' ERR trap (with set -E). Under set -e
# a failing command that no check covers would end the run with no word of
# what failed. Only the script's own shell reports: a subshell's failure (a
# pipeline's part, a command substitution) reaches it as the failure of the
# command that ran it, on the line that command is on.
on_error() {
	((BASH_SUBSHELL == 0)) || return 0
	log "FAIL: line $2${FUNCNAME[1]:+ (in ${FUNCNAME[1]})}: exit status $1; the command that failed last: $3"
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

# sweep_stale WORK-GLOB: the namespaces (named $prefix<pid>-...) and work
# folders (WORK-GLOB.<pid>) of runs whose process is gone.
sweep_stale() {
	local glob=$1 ns owner dir
	for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
		owner=${ns#"$prefix"}
		owner=${owner%%-*}
		owner_alive "$owner" && continue
		log "removing network namespace $ns of dead run $owner"
		kill_netns_pids "$ns"
		ip netns delete "$ns" || true
	done
	for dir in "$glob".*; do
		[[ -d $dir ]] || continue
		owner=${dir##*.}
		if [[ ! $owner =~ ^[0-9]+$ ]] || owner_alive "$owner"; then continue; fi
		sweep_cgroups "$dir/cgroups.before"
		log "removing work folder $dir of dead run $owner"
		# A dead run's host may have left mounts below its folder.
		grep -F " $dir/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
		rm -rf "$dir"
	done
}

# sweep_cgroups BEFORE: the empty cgroups a dead run's containers left under
# containerd's /k8s.io, those not listed in BEFORE (the run's list from its
# start, see save_host_state). Only while no run of either kind is alive, whose
# containers' cgroups could be empty for a moment; rmdir never removes a cgroup
# that holds a process.
sweep_cgroups() {
	local before=$1 d n=0
	[[ -f $before ]] || return 0
	ip netns list | awk '{print $1}' | grep -qE "^($all_prefixes)" && return 0
	while IFS= read -r d; do
		grep -qxF "$d" "$before" && continue
		rmdir "$d" 2>/dev/null && n=$((n + 1))
	done < <(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -path '*/k8s.io*' | sort -r)
	((n == 0)) || log "removed $n empty cgroups a dead run's containers left"
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

# stop_hosts: every host's kubelet, its namespace and everything in it, the
# cgroups runc made, the hub, and the kernel settings kubelet changed.
stop_hosts() {
	local h ns pid path d pids s
	# The host scripts, which may restart kubelet as systemd would, then the
	# kubelets, so that none restarts what is being stopped.
	for h in "${hosts[@]}"; do
		[[ -n $work ]] && alive "$(state_of "$h")/pid" && kill -KILL "$(cat "$(state_of "$h")/pid")"
	done
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
}

# finish RC: what every teardown ends with: the work folder, the count line.
finish() {
	local rc=$1
	if [[ -n $work ]]; then
		if [[ $keep == 1 ]]; then
			log "kept $work"
		else
			# Host mounts die with their namespaces; a lazy unmount covers
			# any that a process outside still held.
			grep -F " $work/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
			rm -rf "$work"
		fi
	fi
	if ((rc == 0)); then
		log "$passed passed, 0 failed"
	else
		log "$passed passed, 1 failed"
	fi
}

# save_host_state: the kernel settings and cgroups as they are before any
# kubelet starts, for stop_hosts to put back.
save_host_state() {
	local s
	for s in "${kubelet_sysctls[@]}"; do
		saved_sysctl[$s]=$(sysctl -n "$s")
	done
	cgroups_before=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d)
	# For the run after this one, should this one be killed.
	echo "$cgroups_before" >"$work/cgroups.before"
}

# --- preparation ----------------------------------------------------------

# install_packages COMMAND:PACKAGE...: Debian's packages for missing commands
# (or files, given as an absolute path).
install_packages() {
	local need=() cmd pkg
	for cmd in "$@"; do
		pkg=${cmd#*:}
		cmd=${cmd%%:*}
		if [[ $cmd == /* ]]; then
			[[ -e $cmd ]] || need+=("$pkg")
		else
			command -v "$cmd" >/dev/null || need+=("$pkg")
		fi
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

# k8s_ldflags: the version stamp a Kubernetes release build gets from its
# release scripts, so that `--version` says what the binary is.
k8s_ldflags() {
	local p ldflags=""
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$kubelet_version -X $p.gitMajor=1 -X $p.gitMinor=36"
		ldflags+=" -X $p.gitCommit=module-proxy-$kubelet_version -X $p.gitTreeState=clean"
	done
	echo "$ldflags"
}

# build_kubelet_etcd_pause: kubelet v1.36.3 into $kubelet, a static etcd
# v3.6.8 and the pause program into $out.
build_kubelet_etcd_pause() {
	local t
	t=$(now)
	(cd "$top/tools" && CGO_ENABLED=0 "$GO" build -mod=mod -modfile=kubelet.mod -trimpath -ldflags "$(k8s_ldflags)" \
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
# at PATH, listed in $image_list (default images/list) for host.sh to import
# as REF.
image() {
	local ref=$1 bin=$2 dest=$3 layout
	shift 3
	layout=$work/oci/$(basename "${ref%:*}")-${ref##*:}
	mkdir -p "$work/oci" "$work/images"
	umoci init --layout "$layout"
	umoci new --image "$layout:${ref##*:}"
	umoci insert --image "$layout:${ref##*:}" "$bin" "$dest" >/dev/null
	umoci config --image "$layout:${ref##*:}" "$@"
	umoci gc --layout "$layout"
	tar -C "$layout" -cf "$work/images/${layout##*/}.tar" .
	echo "$work/images/${layout##*/}.tar ${ref%:*}" >>"${image_list:-$work/images/list}"
}

# etcd_image REF BINARY: etcd as in the real image, where the manifest's
# plain `etcd` is found through PATH at /usr/local/bin/etcd.
etcd_image() {
	image "$1" "$2" /usr/local/bin/etcd \
		--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--config.cmd /usr/local/bin/etcd
}

pause_image() {
	image "$1" "$out/pause" /pause --config.entrypoint /pause --config.user 65535:65535
}

# --- network --------------------------------------------------------------

make_hub() {
	ip netns add "$hub"
	ip -n "$hub" link set lo up
	ip -n "$hub" link add br0 type bridge
	ip -n "$hub" link set br0 up
}

# add_host NAME ADDRESS/PREFIX: NAME's namespace, wired to the hub's bridge.
# No default route: the hosts reach each other and nothing else, so anything
# addressed elsewhere (cloud metadata probes, say) fails at once instead of
# waiting for a timeout.
add_host() {
	local h=$1 addr=$2 ns n
	ns=$(ns_of "$h")
	n=$(ip -n "$hub" -o link show type veth | wc -l)
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$hub" link add "v$((n + 1))" type veth peer name eth0 netns "$ns"
	ip -n "$hub" link set "v$((n + 1))" master br0 up
	ip -n "$ns" addr add "$addr" dev eth0
	ip -n "$ns" link set eth0 up
}

# start_host_script SCRIPT NAME ARGS...: SCRIPT in NAME's network namespace
# and in a mount and UTS namespace of its own. nsenter, not `ip netns exec`,
# which would mount a new /sys without the cgroup hierarchies kubelet and runc
# need.
start_host_script() {
	local script=$1 h=$2
	shift 2
	mkdir -p "$(state_of "$h")"
	nsenter --net="/run/netns/$(ns_of "$h")" unshare --mount --uts --propagation private -- \
		"$script" "$h" "$@" &
	disown
}

# wait_kubelet_started HOST SECONDS
wait_kubelet_started() {
	local h=$1 deadline=$((SECONDS + $2))
	until [[ -f $(state_of "$h")/kubelet.started ]]; do
		((SECONDS < deadline)) || fail "$h's kubelet did not start"
		[[ -f $(state_of "$h")/pid ]] && ! alive "$(state_of "$h")/pid" && fail "$h's host process exited before kubelet started"
		sleep 0.2
	done
}

# etcd_task HOST: "CONTAINER-ID PID" of HOST's running etcd container.
etcd_task() {
	container_task "$1" etcd
}

# container_task HOST NAME: "CONTAINER-ID PID" of HOST's running container
# NAME (the Pod spec's container name).
container_task() {
	local ids
	ids=$(in_host "$1" ctr -n k8s.io containers ls -q "labels.\"io.kubernetes.container.name\"==$2" 2>/dev/null) || return 0
	[[ -n $ids ]] || return 0
	in_host "$1" ctr -n k8s.io tasks ls 2>/dev/null |
		awk 'NR > 1 && $3 == "RUNNING" {print $1, $2}' | grep -F -f <(echo "$ids") || true
}

# --- inside a host (host.sh) ----------------------------------------------

hlog() { printf '%s %s[%s]: %s\n' "$(date -u +%H:%M:%S)" "$tag" "$name" "$*" >&2; }

# host_mounts SOURCE:TARGET...: bind each SOURCE, a folder or a file (or a
# fresh tmpfs for "tmpfs"), at TARGET in this mount namespace. The real filesystem is never
# written: a missing mount point is made inside an overlay whose writable
# layer is a tmpfs (under $state/stage).
host_mounts() {
	local binds=("$@") b target anc i inside done_dir source
	local stage=$state/stage
	mkdir -p "$stage"
	mount -t tmpfs -o mode=0700 e2ekl-stage "$stage"

	# Overlay the nearest existing ancestor of every missing mount point, outer
	# folders first; a folder inside an overlay made here is writable already.
	local ancestors=()
	for b in "${binds[@]}"; do
		target=${b#*:}
		[[ -e $target ]] && continue
		anc=$(dirname "$target")
		while [[ ! -e $anc ]]; do anc=$(dirname "$anc"); done
		if [[ $anc == / ]]; then
			hlog "mount point $target needs a new top-level folder; refusing"
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
		if [[ -f $source ]]; then
			mkdir -p "$(dirname "$target")"
			[[ -e $target ]] || touch "$target"
			mount --bind "$source" "$target"
			continue
		fi
		mkdir -p "$target"
		if [[ $source == tmpfs ]]; then
			mount -t tmpfs -o mode=0711 e2ekl-run "$target"
		else
			mkdir -p "$source"
			mount --bind "$source" "$target"
		fi
	done
}

# host_containerd SANDBOX-IMAGE CNI-BIN-DIR CNI-CONF-DIR: containerd with
# the node's defaults (socket /run/containerd/containerd.sock, root
# /var/lib/containerd, state /run/containerd, all private here), the sandbox
# image we built, cgroupfs, and OOM scores never below containerd's own,
# since this process cannot lower its OOM score. Then the OCI archives listed
# in $image_list (default $images/list) imported: no registry is reachable, and
# imagePullPolicy IfNotPresent finds them here.
host_containerd() {
	local sandbox=$1 cni_bin=$2 cni_conf=$3 i archive repository
	cat >"$state/containerd.toml" <<EOF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$state/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$sandbox"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$cni_conf"
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

	while read -r archive repository; do
		ctr -n k8s.io images import --base-name "$repository" "$archive" >/dev/null
	done <"${image_list:-$images/list}"
	hlog "containerd $(containerd --version | awk '{print $3}') up; images: $(ctr -n k8s.io images ls -q | grep -v -e '@' -e '^sha256:' | tr '\n' ' ')"
}

# run_unit UNIT-FILE DROPIN-DIR...: runs the unit's ExecStart as systemd
# would, for ever: the unit's [Service] section and then its drop-ins (*.conf
# of every DROPIN-DIR, by file name), Environment= and EnvironmentFile= (a
# leading "-" for optional), "ExecStart=" emptying the list, $VAR split into
# words and ${VAR} kept as one, restarted RestartSec= (default 100ms) after it
# exits when Restart= is set. The process's pid goes to $state/kubelet.pid,
# the time of the first start to $state/kubelet.started.
run_unit() {
	local unit=$1 f files=() line key value section exec="" restart="" restart_sec=0.1 envs=() envfiles=()
	shift
	files=("$unit")
	for f in $(for d in "$@"; do ls "$d"/*.conf 2>/dev/null; done | awk -F/ '{print $NF, $0}' | sort -k1,1 -s | cut -d' ' -f2-); do
		files+=("$f")
	done
	for f in "${files[@]}"; do
		section=
		while IFS= read -r line || [[ -n $line ]]; do
			case $line in
			'[Service]') section=service ;;
			'['*) section=other ;;
			[A-Za-z]*=*)
				[[ $section == service ]] || continue
				key=${line%%=*} value=${line#*=}
				case $key in
				ExecStart) exec=$value ;;
				Restart) restart=$value ;;
				RestartSec) restart_sec=$value ;;
				Environment) envs+=("$value") ;;
				EnvironmentFile) envfiles+=("$value") ;;
				esac
				;;
			esac
		done <"$f"
	done
	[[ -n $exec ]] || {
		hlog "no ExecStart in ${files[*]}"
		return 1
	}
	local first=1 pid
	while :; do
		local -A env=()
		local e w argv=()
		for e in "${envs[@]}"; do
			# Environment="A=B" "C=D": each quoted assignment.
			while [[ $e =~ ^[[:space:]]*\"([A-Za-z_][A-Za-z0-9_]*)=([^\"]*)\"(.*)$ ]]; do
				env[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
				e=${BASH_REMATCH[3]}
			done
		done
		for e in "${envfiles[@]}"; do
			f=${e#-}
			if [[ ! -f $f ]]; then
				[[ $e == -* ]] && continue
				hlog "EnvironmentFile $f is missing"
				return 1
			fi
			while IFS= read -r line || [[ -n $line ]]; do
				[[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
				value=${BASH_REMATCH[2]}
				value=${value#\"} value=${value%\"}
				env[${BASH_REMATCH[1]}]=$value
			done <"$f"
		done
		for w in $exec; do
			if [[ $w =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
				# shellcheck disable=SC2206
				argv+=(${env[${BASH_REMATCH[1]}]:-})
			elif [[ $w =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$ ]]; then
				argv+=("${env[${BASH_REMATCH[1]}]:-}")
			else
				argv+=("$w")
			fi
		done
		if ((first)); then
			hlog "starting kubelet as systemd would: ${argv[*]}"
			date +%s.%N >"$state/kubelet.started"
			first=0
		else
			hlog "restarting kubelet (Restart=$restart): ${argv[*]}"
		fi
		"${argv[@]}" >>"$state/kubelet.log" 2>&1 &
		pid=$!
		echo "$pid" >"$state/kubelet.pid"
		wait "$pid" || true
		[[ -n $restart && $restart != no ]] || return 0
		sleep "${restart_sec%s}"
	done
}
