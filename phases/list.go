package phases

// List is init's phase tree in the order the phases run. A runtime adds
// its own phases to it (Tree.InsertAfter) rather than to the engine.
func List() Tree {
	return Tree{
		certsPhase(),
		kubeletPhase(),
		etcdPhase(),
		// Runtime systemd's phase: it does nothing with static Pods, as
		// kubelet and etcd local do nothing with systemd.
		Systemd(),
		// Runtime statefulset's phase; the host phases do nothing with it.
		StatefulSet(),
		KubeadmConfig(),
		monitoringPhase(),
		backupPhase(),
		cliPhase(),
		Bundle(),
	}
}
