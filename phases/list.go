package phases

// List is init's phases in the order they run.
func List() []Phase {
	return []Phase{
		certsPhase(),
		kubeletPhase(),
		etcdPhase(),
		kubeadmConfigPhase(),
		monitoringPhase(),
		backupPhase(),
		cliPhase(),
		bundlePhase(),
	}
}
