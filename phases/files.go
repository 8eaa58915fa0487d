package phases

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/kubeletconf"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/manifests"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/workflow"
)

func kubeletPhase() Phase {
	return Phase{
		Name:  "kubelet",
		Short: "Write the standalone kubelet's drop-in and KubeletConfiguration for every host",
		Long: "Writes " + layout.KubeletConfig + " (a KubeletConfiguration: no anonymous or webhook authentication, AlwaysAllow, " +
			"address 127.0.0.1, static Pods from " + layout.StaticPodDir + ") and " + layout.KubeletDropIn +
			", which makes kubelet run with that file alone, as the kubeadm HA etcd guide does. --kubelet-config-patch merges any further field. " +
			"With runtime systemd there is no kubelet and it does nothing.",
		Example: "etcd-staticpod init phase kubelet --config cluster.yaml --cgroup-driver cgroupfs --kubelet-config-patch kubelet-patch.yaml",
		Flags:   []FlagGroup{FlagsKubelet},
		Check: func(r *Runner) error {
			if !r.Cluster().OnHosts() || r.Cluster().Systemd() {
				return nil
			}
			_, err := r.kubeletConfig()
			return err
		},
		Run: func(r *Runner) error {
			if !r.Cluster().OnHosts() || r.Cluster().Systemd() {
				return nil
			}
			conf, err := r.kubeletConfig()
			if err != nil {
				return err
			}
			dropIn := kubeletconf.DropIn(r.Cluster(), layout.KubeletConfig)
			for _, h := range r.Hosts() {
				if err := r.WriteFile(r.HostPath(h, layout.KubeletConfig), conf, layout.ModeFile, layout.ModeDir); err != nil {
					return err
				}
				if err := r.WriteFile(r.HostPath(h, layout.KubeletDropIn), dropIn, layout.ModeFile, layout.ModeDir); err != nil {
					return err
				}
				r.Logf("[kubelet] Wrote %s and %s for %s", layout.KubeletConfig, layout.KubeletDropIn, h.Name)
			}
			return nil
		},
	}
}

func (r *Runner) kubeletConfig() ([]byte, error) {
	var patch []byte
	if path := r.Cluster().Kubelet.ConfigPatch; path != "" {
		var err error
		if patch, err = safefile.Read(path); err != nil {
			return nil, fmt.Errorf("kubelet config patch: %w", err)
		}
	}
	conf, err := kubeletconf.Config(r.Cluster(), patch)
	if err != nil {
		return nil, fmt.Errorf("kubelet config patch %s: %w", r.Cluster().Kubelet.ConfigPatch, err)
	}
	return conf, nil
}

func etcdPhase() Phase {
	return Phase{
		Name:     "etcd",
		Short:    "Write the etcd static Pod manifest",
		Children: []Phase{EtcdLocal()},
	}
}

// EtcdLocal writes every host's etcd static Pod manifest and data folder.
func EtcdLocal() Phase {
	return Phase{
		Name:  "local",
		Short: "Write the etcd static Pod manifest for every host",
		Long: "Writes " + layout.EtcdManifest + " (0600, in a 0700 folder) exactly as `kubeadm init phase etcd local` does with the guide's per-host extraArgs, " +
			"and creates the data folder (0700). With runtime systemd it does nothing (see the systemd phase).",
		Example: "etcd-staticpod init phase etcd local --config cluster.yaml --node etcd02 --root /",
		Flags:   []FlagGroup{FlagsEtcd},
		Check: func(r *Runner) error {
			if !r.Cluster().OnHosts() || r.Cluster().Systemd() {
				return nil
			}
			_, err := r.perHost("etcd manifest", EtcdManifest)
			return err
		},
		Run: func(r *Runner) error {
			if !r.Cluster().OnHosts() || r.Cluster().Systemd() {
				return nil
			}
			docs, err := r.perHost("etcd manifest", EtcdManifest)
			if err != nil {
				return err
			}
			for i, h := range r.Hosts() {
				if err := r.WriteFile(r.HostPath(h, layout.EtcdManifest), docs[i], layout.ModeKey, layout.ModePrivDir); err != nil {
					return err
				}
				if err := r.MkdirAll(r.HostPath(h, r.Cluster().Etcd.DataDir), layout.ModePrivDir); err != nil {
					return err
				}
				r.Logf("[etcd] Wrote the static Pod manifest %s for %s", layout.EtcdManifest, h.Name)
			}
			return nil
		},
	}
}

// perHost renders one document per host (in Hosts order) on every core, once
// a run: Check renders what Run then writes.
func (r *Runner) perHost(kind string, render func(*spec.Cluster, spec.Host) ([]byte, error)) ([][]byte, error) {
	if docs, ok := r.rendered[kind]; ok {
		return docs, nil
	}
	hosts := r.Hosts()
	docs := make([][]byte, len(hosts))
	err := forEach(len(hosts), func(i int) error {
		var err error
		docs[i], err = render(r.Cluster(), hosts[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	if r.rendered == nil {
		r.rendered = map[string][][]byte{}
	}
	r.rendered[kind] = docs
	return docs, nil
}

func hostKubeadmConfig(c *spec.Cluster, h spec.Host) ([]byte, error) {
	b, err := manifests.HostKubeadmConfig(c, h)
	if err != nil {
		return nil, fmt.Errorf("host %q: kubeadm config: %w", h.Name, err)
	}
	return b, nil
}

// EtcdManifest is host h's etcd static Pod manifest, as the etcd/local
// phase writes it: kubeadm's Pod with the guide's per-host extraArgs.
func EtcdManifest(c *spec.Cluster, h spec.Host) ([]byte, error) {
	pod, err := manifests.EtcdPod(c, h, manifests.HostExtraArgs(c, h))
	if err != nil {
		return nil, fmt.Errorf("host %q: etcd manifest: %w", h.Name, err)
	}
	b, err := manifests.MarshalPod(pod)
	if err != nil {
		return nil, fmt.Errorf("host %q: etcd manifest: %w", h.Name, err)
	}
	return b, nil
}

// KubeadmConfig writes the per-host kubeadm configs and, for the whole
// cluster, the external-etcd kubeadm-config.yaml and control-plane/.
func KubeadmConfig() Phase {
	return Phase{
		Name:  "kubeadm-config",
		Short: "Write the per-host kubeadm configs and the external-etcd kubeadm-config.yaml",
		Long: "Writes " + layout.HostKubeadmConfig + " on every host (the guide's InitConfiguration and ClusterConfiguration, so kubeadm's own phases still work), " +
			"OUT/" + layout.KubeadmConfigFile + " (the external-etcd ClusterConfiguration for `kubeadm init --config` on the first control-plane node) and " +
			"OUT/" + layout.ControlPlaneDir + "/ with the etcd CA certificate and the apiserver-etcd-client certificate and key that node needs.",
		Example: "etcd-staticpod init phase kubeadm-config --config cluster.yaml --control-plane-endpoint 10.107.88.9:6443 --pod-subnet 10.244.0.0/16",
		Flags:   []FlagGroup{FlagsControlPlane, FlagsEtcd},
		Check: func(r *Runner) error {
			if !r.Cluster().OnHosts() {
				return nil
			}
			if _, err := r.perHost("kubeadm config", hostKubeadmConfig); err != nil {
				return err
			}
			_, err := manifests.ExternalEtcdConfig(r.Cluster())
			return err
		},
		Run: func(r *Runner) error {
			if !r.Cluster().OnHosts() {
				return nil
			}
			docs, err := r.perHost("kubeadm config", hostKubeadmConfig)
			if err != nil {
				return err
			}
			for i, h := range r.Hosts() {
				if err := r.WriteFile(r.HostPath(h, layout.HostKubeadmConfig), docs[i], layout.ModeKey, layout.ModeDir); err != nil {
					return err
				}
				r.Logf("[kubeadm-config] Wrote %s for %s", layout.HostKubeadmConfig, h.Name)
			}
			if r.NodeMode() {
				return nil
			}
			if err := r.writeKubeadmConfig(); err != nil {
				return err
			}
			if err := r.writeControlPlane(); err != nil {
				return err
			}
			r.Logf("[kubeadm-config] Wrote %s and %s/ for the first control-plane node", r.bundle().KubeadmConfig(), r.bundle().ControlPlane())
			return nil
		},
	}
}

// writeKubeadmConfig queues OUT/kubeadm-config.yaml, the external-etcd
// ClusterConfiguration of the run's spec.
func (r *Runner) writeKubeadmConfig() error {
	b, err := manifests.ExternalEtcdConfig(r.Cluster())
	if err != nil {
		return err
	}
	return r.WriteFile(r.bundle().KubeadmConfig(), b, layout.ModeKey, layout.ModeDir)
}

// Record writes the run's spec to OUT/cluster.yaml and, from it,
// OUT/kubeadm-config.yaml as the kubeadm-config phase writes it, in one
// batch, the spec first: the commands that change the host list keep both
// in step with the cluster. It is no phase of init, which records its spec
// once every phase has run.
func Record() Phase {
	return Phase{
		Name:  "record",
		Short: "Record the spec in OUT/" + layout.SpecFile + " and write OUT/" + layout.KubeadmConfigFile + " from it",
		Run: func(r *Runner) error {
			b, err := spec.Marshal(r.Cluster())
			if err != nil {
				return err
			}
			if err := r.WriteFile(r.bundle().Spec(), b, layout.ModeSpec, layout.ModeDir); err != nil {
				return err
			}
			return r.writeKubeadmConfig()
		},
	}
}

// writeControlPlane copies what the guide copies to the first control-plane
// node: the CA certificate and the apiserver-etcd-client pair (the same on
// every host, since it names no host).
func (r *Runner) writeControlPlane() error {
	client := certs.APIServerClient()
	root := r.bundle().ControlPlane()
	cpDir := r.Cluster().ControlPlane.CertDir
	dst := client.Files.Base(layout.OnHost(root, cpDir))
	caDst := certs.CA().Files.Cert(layout.OnHost(root, cpDir))
	if r.opts.DryRun {
		// The certificates to copy may exist only in this dry run's imagination.
		for _, p := range []string{caDst + " (0644)", dst + ".key (0600)", dst + ".crt (0644)"} {
			r.Logf("[dry-run] would write %s", p)
		}
		return nil
	}
	ca, err := r.authority(false)
	if err != nil {
		return err
	}
	src := r.CertPath(r.Hosts()[0], client)
	crt, errCrt := r.ReadFile(src + layout.CertExt)
	key, errKey := r.ReadFile(src + layout.KeyExt)
	if err := errors.Join(errCrt, errKey); err != nil {
		return fmt.Errorf("the control plane's client certificate: run `etcd-staticpod init phase certs apiserver-etcd-client` first: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{caDst, certs.EncodeCert(ca.Cert), layout.ModeFile},
		{dst + layout.KeyExt, key, layout.ModeKey},
		{dst + layout.CertExt, crt, layout.ModeFile},
	} {
		if err := r.WriteFile(f.path, f.data, f.mode, layout.ModeDir); err != nil {
			return err
		}
	}
	return nil
}

// Bundle packs every host's folder and lists the archives in SHA256SUMS.
func Bundle() Phase {
	return Phase{
		Name:  "bundle",
		Short: "Pack every host's folder as OUT/NAME.tar.gz and list them in OUT/SHA256SUMS",
		Long: "Each archive holds the host's folder with its modes, owned by root, to unpack with `tar -C / -xzf NAME.tar.gz` on that host. " +
			"A host folder that holds a copy of the CA key, under any name, is refused: the CA key never leaves the CA store. " +
			"etcd data is left out: the data folder ships empty, and folders beside it such as a restore's DATADIR.restore-TOKEN stay behind.",
		Example: "etcd-staticpod init phase bundle --config cluster.yaml",
		Run: func(r *Runner) error {
			if !r.Cluster().OnHosts() {
				return nil
			}
			if r.NodeMode() {
				r.Logf("[bundle] Nothing to pack: --node writes in place")
				return nil
			}
			return r.pack(r.Hosts())
		},
	}
}

// pack queues the archive of each host's folder and of the control-plane
// folder (when there is one), and SHA256SUMS listing them. The folders are
// read as they will be once the run's queued files are written, so init
// writes the folders and their archives in one go.
func (r *Runner) pack(hosts []spec.Host) error {
	view, err := r.View()
	if err != nil {
		return err
	}
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	if _, err := fs.Stat(view.Dir(r.Out()), layout.ControlPlaneDir); err == nil || r.opts.DryRun {
		names = append(names, layout.ControlPlaneDir)
	}
	trees := make([]fs.FS, len(names))
	for i, name := range names {
		dir := r.bundle().Host(name)
		staged := view.Dir(dir)
		tree := staged
		if name != layout.ControlPlaneDir {
			var hidden func(string) bool
			tree, hidden = r.withoutEtcdData(staged)
			if left := leftOut(staged, hidden); len(left) > 0 {
				r.Logf("[bundle] Left etcd data out of %s.tar.gz: %s (copy it to the host by hand)", name, strings.Join(left, ", "))
			}
		}
		if err := r.prepareForShipping(tree, dir); err != nil {
			return err
		}
		trees[i] = tree
	}
	if r.opts.DryRun {
		for _, name := range names {
			r.Logf("[dry-run] would write %s (0600)", r.bundle().Archive(name))
		}
		r.Logf("[dry-run] would write %s (0644)", r.bundle().Sums())
		return nil
	}
	// Archives are independent: pack them on every core, each worker with
	// its own compressor.
	packed := make([][]byte, len(names))
	packers := make(chan *archive.Packer, runtime.NumCPU())
	check := r.ShippingCheck()
	for range runtime.NumCPU() {
		packers <- &archive.Packer{Check: check}
	}
	err = forEach(len(names), func(i int) error {
		p := <-packers
		defer func() { packers <- p }()
		var err error
		packed[i], err = p.Pack(trees[i], r.bundle().Host(names[i]))
		return err
	})
	if err != nil {
		return err
	}
	var sums []archive.Sum
	var archives []string
	for i, name := range names {
		file := name + layout.ArchiveExt
		if err := r.WriteFile(filepath.Join(r.Out(), file), packed[i], layout.ModeArchive, layout.ModeDir); err != nil {
			return err
		}
		sums = append(sums, archive.Sum{Name: file, Data: packed[i]})
		archives = append(archives, file)
	}
	list, err := archive.SHA256Sums(sums)
	if err != nil {
		return err
	}
	if err := r.WriteFile(r.bundle().Sums(), list, layout.ModeSums, layout.ModeDir); err != nil {
		return err
	}
	r.Logf("[bundle] Wrote %s and %s", strings.Join(archives, ", "), layout.SumsFile)
	return nil
}

// withoutEtcdData hides a member's data from a host folder about to be
// packed: what is inside the data folder (restored or copied data; the empty
// folder itself ships, with its mode) and the folders beside it named after
// it, such as the data folder.restore-TOKEN a snapshot restore writes.
// Archives carry configuration; a data folder is copied and swapped in by
// hand, as `snapshot restore` says.
func (r *Runner) withoutEtcdData(tree fs.FS) (fs.FS, func(name string) bool) {
	rel := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(r.Cluster().Etcd.DataDir)), "/")
	hidden := func(name string) bool {
		return strings.HasPrefix(name, rel+"/") ||
			(path.Dir(name) == path.Dir(rel) && strings.HasPrefix(path.Base(name), path.Base(rel)+"."))
	}
	return workflow.Without(tree, hidden), hidden
}

// leftOut lists the top names in tree that hidden leaves out.
func leftOut(tree fs.FS, hidden func(string) bool) []string {
	var out []string
	_ = fs.WalkDir(tree, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || name == "." || !hidden(name) {
			return nil
		}
		out = append(out, name)
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	return out
}

// prepareForShipping readies a folder that is about to leave this machine:
// it fails if the folder holds a CA key, and removes temp files a killed run
// left behind (they may hold parts of a key; with --dry-run it only says
// so). tree is the folder dir as the run will leave it.
func (r *Runner) prepareForShipping(tree fs.FS, dir string) error {
	err := fs.WalkDir(tree, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		path := filepath.Join(dir, filepath.FromSlash(name))
		switch {
		case d.IsDir():
		case layout.IsCAKeyName(d.Name()):
			return fmt.Errorf("%s is a CA key inside a host folder; remove it, the CA key must stay in the CA store", path)
		case atomicfile.IsTemp(d.Name()) && r.opts.DryRun:
			r.Logf("[dry-run] would remove the stale temp file %s", path)
		case atomicfile.IsTemp(d.Name()):
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove the stale temp file %s: %w", path, err)
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
