package phases

// List is init's phase tree in the order the phases run. A runtime adds
// its own phases to it (Tree.InsertAfter) rather than to the engine.
func List() Tree {
	return Tree{
		certsPhase(),
		kubeletPhase(),
		etcdPhase(),
		KubeadmConfig(),
		monitoringPhase(),
		backupPhase(),
		cliPhase(),
		Bundle(),
	}
}
