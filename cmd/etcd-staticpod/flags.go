package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// clusterFlags are read by every generating command. Flags are made fresh
// per command because urfave/cli keeps parse state in them.
func clusterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "cluster spec `FILE` (" + spec.APIVersion + ", kind " + spec.Kind + "); flags override it (default: OUT/" + layout.SpecFile + " when it exists)"},
		&cli.StringFlag{Name: "hosts", Usage: "every etcd host as `NAME=ADDRESS,...` (replaces the spec's host list)"},
		&cli.StringSliceFlag{Name: "host", Usage: "one etcd host as `NAME=ADDRESS`; repeatable"},
		&cli.StringFlag{Name: "out", Aliases: []string{"dir"}, Value: "./" + layout.DefaultOut, Usage: "bundle `DIR`: the CA store and one folder per host (or " + layout.StatefulSetDir + "/)"},
		&cli.StringFlag{Name: "runtime", Usage: "how etcd runs: " + strings.Join(spec.Runtimes(), ", ") + " (" + spec.RuntimeSystemd + ": a hardened etcd.service and etcd's config file, no kubelet; " +
			spec.RuntimeStatefulSet + ": a StatefulSet inside a Kubernetes cluster, no --hosts) (default " + spec.DefaultRuntime + ")"},
		&cli.StringFlag{Name: "cert-dir", Usage: "certificate folder on the etcd hosts (default " + layout.DefaultCertDir + ")"},
		&cli.StringFlag{Name: "node", Usage: "write only this host's files (run on the node itself with --root /)"},
		&cli.StringFlag{Name: "root", Usage: "with --node: write the host's files under `DIR` instead of OUT/NAME"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print what would be written and write nothing"},
		waitLockFlag(),
	}
}

func groupFlags(g phases.FlagGroup) []cli.Flag {
	switch g {
	case phases.FlagsCerts:
		return []cli.Flag{
			&cli.StringFlag{Name: "encryption-algorithm", Usage: "key type: " + strings.Join(spec.EncryptionAlgorithms(), ", ") + " (default " + spec.DefaultEncryptionAlgorithm + ")"},
			&cli.StringFlag{Name: "certificate-validity", Usage: "lifetime of the host certificates, e.g. 8760h (default 8760h)"},
			&cli.StringFlag{Name: "ca-certificate-validity", Usage: "lifetime of a new CA, e.g. 87600h (default 87600h)"},
		}
	case phases.FlagsCA:
		return []cli.Flag{
			&cli.StringFlag{Name: "ca-cert", Usage: "use this existing CA certificate `FILE` instead of OUT/pki/etcd/ca.crt"},
			&cli.StringFlag{Name: "ca-key", Usage: "the key `FILE` of --ca-cert"},
		}
	case phases.FlagsEtcd:
		return []cli.Flag{
			&cli.StringFlag{Name: "image", Usage: "etcd image; overrides --image-repository and --etcd-version"},
			&cli.StringFlag{Name: "image-repository", Usage: "registry the etcd image comes from (default " + spec.DefaultImageRepository + ")"},
			&cli.StringFlag{Name: "etcd-version", Usage: "etcd image tag (default " + spec.DefaultEtcdVersion + ")"},
			&cli.StringFlag{Name: "data-dir", Usage: "etcd data folder on the hosts (default " + layout.DefaultDataDir + ")"},
			&cli.StringSliceFlag{Name: "extra-arg", Usage: "extra etcd flag `NAME=VALUE`, like kubeadm's etcd.local.extraArgs (replaces a default of that name); repeatable"},
			&cli.StringSliceFlag{Name: "extra-env", Usage: "environment variable `NAME=VALUE` for etcd; repeatable"},
			&cli.StringFlag{Name: "initial-cluster-state", Usage: "new or existing (default new)"},
			&cli.StringFlag{Name: "etcd-binary", Usage: "with --runtime systemd: put this etcd binary `FILE` into every host's bundle at the unit's " + layout.EtcdBinary},
		}
	case phases.FlagsKubelet:
		return []cli.Flag{
			&cli.StringFlag{Name: "cgroup-driver", Usage: "kubelet cgroup driver: systemd or cgroupfs (default " + spec.DefaultCgroupDriver + ")"},
			&cli.StringFlag{Name: "container-runtime-endpoint", Usage: "CRI socket URL (default " + spec.DefaultContainerRuntimeEndpoint + ")"},
			&cli.StringFlag{Name: "kubelet-path", Usage: "kubelet binary on the hosts (default " + spec.DefaultKubeletPath + ")"},
			&cli.StringFlag{Name: "kubelet-config-patch", Usage: "`FILE` with a partial KubeletConfiguration merged over the generated one"},
		}
	case phases.FlagsAddons:
		return addonFlags()
	case phases.FlagsStatefulSet:
		return []cli.Flag{
			&cli.StringFlag{Name: "namespace", Usage: "with --runtime statefulset: the `NAMESPACE` of every object; it goes into the members' DNS names and certificates (default " + spec.DefaultStatefulSetNamespace + ")"},
			&cli.StringFlag{Name: "name", Usage: "with --runtime statefulset: the StatefulSet's `NAME`; members are the Pods NAME-0, NAME-1, ... (default " + spec.DefaultStatefulSetName + ")"},
			&cli.IntFlag{Name: "replicas", Usage: "with --runtime statefulset: the number of members, 1 to " + fmt.Sprint(spec.MaxStatefulSetReplicas) + ", odd recommended (default " + fmt.Sprint(spec.DefaultStatefulSetReplicas) + ")"},
			&cli.StringFlag{Name: "storage-class", Usage: "with --runtime statefulset: the data volumes' StorageClass (default: the cluster's default class)"},
			&cli.StringFlag{Name: "storage-size", Usage: "with --runtime statefulset: each member's data volume, e.g. 8Gi (default " + spec.DefaultStatefulSetStorage + ")"},
			&cli.StringFlag{Name: "cluster-domain", Usage: "with --runtime statefulset: the Kubernetes cluster's DNS domain (default " + spec.DefaultClusterDomain + ")"},
		}
	case phases.FlagsControlPlane:
		return []cli.Flag{
			&cli.StringFlag{Name: "kubeadm-api-version", Usage: "API version of kubeadm-config.yaml: v1beta4 or v1beta3 for an older kubeadm (default " + spec.DefaultKubeadmAPIVersion + "; the per-host kubeadmcfg.yaml is always v1beta4)"},
			&cli.StringFlag{Name: "control-plane-cert-dir", Usage: "certificate folder on the control-plane nodes (default " + layout.DefaultCertDir + ")"},
			&cli.StringFlag{Name: "kubernetes-version", Usage: "kubernetesVersion for kubeadm-config.yaml, e.g. v1.36.3"},
			&cli.StringFlag{Name: "control-plane-endpoint", Usage: "controlPlaneEndpoint for kubeadm-config.yaml, `HOST[:PORT]`"},
			&cli.StringFlag{Name: "pod-subnet", Usage: "networking.podSubnet for kubeadm-config.yaml (CIDR)"},
			&cli.StringFlag{Name: "service-subnet", Usage: "networking.serviceSubnet for kubeadm-config.yaml (CIDR)"},
			&cli.StringSliceFlag{Name: "apiserver-cert-sans", Usage: "apiServer.certSANs for kubeadm-config.yaml; comma-separated or repeated"},
		}
	}
	return nil
}

// flagsFor returns the common flags plus those of the groups named.
func flagsFor(groups []phases.FlagGroup) []cli.Flag {
	flags := clusterFlags()
	seen := map[phases.FlagGroup]bool{}
	for _, g := range groups {
		if !seen[g] {
			seen[g] = true
			flags = append(flags, groupFlags(g)...)
		}
	}
	return flags
}

// allGroups are what `init` reads.
func allGroups() []phases.FlagGroup {
	return []phases.FlagGroup{phases.FlagsCerts, phases.FlagsCA, phases.FlagsEtcd, phases.FlagsKubelet, phases.FlagsControlPlane, phases.FlagsAddons, phases.FlagsStatefulSet}
}

// loadCluster builds the spec from --config (else OUT/cluster.yaml) with
// every flag given on top (see spec.Resolve). Warnings go to stderr; every
// error is bad input (exit 2).
func loadCluster(c *cli.Context) (*spec.Cluster, error) {
	var hosts []spec.Host
	if c.IsSet("hosts") || c.IsSet("host") {
		hosts = []spec.Host{}
		if c.IsSet("hosts") {
			hs, err := spec.ParseHosts(c.String("hosts"))
			if err != nil {
				return nil, badArgs(fmt.Errorf("--hosts: %w", err))
			}
			hosts = hs
		}
		for _, s := range c.StringSlice("host") {
			h, err := spec.ParseHost(s)
			if err != nil {
				return nil, badArgs(fmt.Errorf("--host: %w", err))
			}
			hosts = append(hosts, h)
		}
	}
	r, err := spec.Resolve(spec.Source{
		Config:   c.String("config"),
		Out:      c.String("out"),
		Hosts:    hosts,
		Override: func(cl *spec.Cluster) error { return applyClusterFlags(c, cl) },
		Check:    func(cl *spec.Cluster) error { return validateBackupHost(c, cl) },
	})
	if err != nil {
		return nil, err
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(c.App.ErrWriter, "warning:", w)
	}
	return r.Cluster, nil
}

// applyClusterFlags sets every cluster setting given as a flag.
func applyClusterFlags(c *cli.Context, cl *spec.Cluster) error {
	strs := map[string]*string{
		"runtime":                    &cl.Runtime,
		"cert-dir":                   &cl.CertDir,
		"encryption-algorithm":       &cl.EncryptionAlgorithm,
		"image":                      &cl.Etcd.Image,
		"image-repository":           &cl.Etcd.ImageRepository,
		"etcd-version":               &cl.Etcd.Version,
		"data-dir":                   &cl.Etcd.DataDir,
		"initial-cluster-state":      &cl.Etcd.ClusterState,
		"cgroup-driver":              &cl.Kubelet.CgroupDriver,
		"container-runtime-endpoint": &cl.Kubelet.ContainerRuntimeEndpoint,
		"kubelet-path":               &cl.Kubelet.Path,
		"kubelet-config-patch":       &cl.Kubelet.ConfigPatch,
		"kubeadm-api-version":        &cl.ControlPlane.KubeadmAPIVersion,
		"control-plane-cert-dir":     &cl.ControlPlane.CertDir,
		"kubernetes-version":         &cl.ControlPlane.KubernetesVersion,
		"control-plane-endpoint":     &cl.ControlPlane.ControlPlaneEndpoint,
		"pod-subnet":                 &cl.ControlPlane.PodSubnet,
		"service-subnet":             &cl.ControlPlane.ServiceSubnet,
	}
	for name, field := range strs {
		if c.IsSet(name) {
			*field = c.String(name)
		}
	}
	for name, field := range map[string]*spec.Duration{
		"certificate-validity":    &cl.CertificateValidity,
		"ca-certificate-validity": &cl.CACertificateValidity,
	} {
		if !c.IsSet(name) {
			continue
		}
		d, err := time.ParseDuration(c.String(name))
		if err != nil {
			return badArgs(fmt.Errorf("--%s %q: not a duration such as 8760h", name, c.String(name)))
		}
		// The same bounds as the spec's fields.
		if err := spec.CheckValidity("--"+name, c.String(name), d); err != nil {
			return badArgs(err)
		}
		field.Duration = d
	}
	for name, field := range map[string]*[]spec.Arg{"extra-arg": &cl.Etcd.ExtraArgs, "extra-env": &cl.Etcd.ExtraEnv} {
		if !c.IsSet(name) {
			continue
		}
		var args []spec.Arg
		for _, s := range c.StringSlice(name) {
			a, err := spec.ParseArg("--"+name, s)
			if err != nil {
				return badArgs(err)
			}
			args = append(args, a)
		}
		*field = args
	}
	if c.IsSet("runtime") && c.String("runtime") == "" {
		// Empty would read as the default: say so rather than guess.
		return badArgs(fmt.Errorf("--runtime %q: want one of %s", "", strings.Join(spec.Runtimes(), ", ")))
	}
	if c.IsSet("etcd-binary") {
		// Recorded in the spec, so a relative path must not depend on
		// where a later run starts.
		p := c.String("etcd-binary")
		if p == "" {
			return badArgs(fmt.Errorf("--etcd-binary %q: want the path of an etcd binary", p))
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return badArgs(fmt.Errorf("--etcd-binary %q: %w", p, err))
		}
		cl.EtcdBinary = abs
	}
	if c.IsSet("apiserver-cert-sans") {
		var sans []string
		for _, s := range c.StringSlice("apiserver-cert-sans") {
			sans = append(sans, strings.Split(s, ",")...)
		}
		cl.ControlPlane.APIServerCertSANs = sans
	}
	if err := applyStatefulSetFlags(c, cl); err != nil {
		return err
	}
	return applyAddonFlags(c, cl)
}

// applyStatefulSetFlags sets the statefulset block from its flags. They
// need runtime statefulset (from --runtime or the spec).
func applyStatefulSetFlags(c *cli.Context, cl *spec.Cluster) error {
	strs := []struct {
		flag  string
		field func(*spec.StatefulSet) *string
	}{
		{"namespace", func(s *spec.StatefulSet) *string { return &s.Namespace }},
		{"name", func(s *spec.StatefulSet) *string { return &s.Name }},
		{"storage-class", func(s *spec.StatefulSet) *string { return &s.StorageClass }},
		{"storage-size", func(s *spec.StatefulSet) *string { return &s.StorageSize }},
		{"cluster-domain", func(s *spec.StatefulSet) *string { return &s.ClusterDomain }},
	}
	given := ""
	for _, f := range []string{"namespace", "name", "replicas", "storage-class", "storage-size", "cluster-domain"} {
		if c.IsSet(f) && given == "" {
			given = f
		}
	}
	if given == "" {
		return nil
	}
	if cl.Runtime != spec.RuntimeStatefulSet {
		return badArgs(fmt.Errorf("--%s: only with --runtime %s", given, spec.RuntimeStatefulSet))
	}
	if c.IsSet("hosts") || c.IsSet("host") {
		return badArgs(fmt.Errorf("--hosts: runtime %s takes no hosts (its members are the Pods NAME-0, NAME-1, ...)", spec.RuntimeStatefulSet))
	}
	if cl.StatefulSet == nil {
		cl.StatefulSet = &spec.StatefulSet{}
	}
	for _, s := range strs {
		if c.IsSet(s.flag) {
			v := c.String(s.flag)
			if v == "" {
				return badArgs(fmt.Errorf("--%s %q: must not be empty", s.flag, v))
			}
			*s.field(cl.StatefulSet) = v
		}
	}
	if c.IsSet("replicas") {
		n := c.Int("replicas")
		if n < 1 || n > spec.MaxStatefulSetReplicas {
			return badArgs(fmt.Errorf("--replicas %d: want 1 to %d", n, spec.MaxStatefulSetReplicas))
		}
		cl.StatefulSet.Replicas = n
	}
	return nil
}

// runnerOptions turns the parsed flags into phase options.
func runnerOptions(c *cli.Context, cl *spec.Cluster) phases.Options {
	return phases.Options{
		Cluster:    cl,
		Out:        c.String("out"),
		Node:       c.String("node"),
		Root:       c.String("root"),
		CACert:     c.String("ca-cert"),
		CAKey:      c.String("ca-key"),
		DryRun:     c.Bool("dry-run"),
		Log:        c.App.Writer,
		Context:    c.Context,
		WriteDelay: testWriteDelay(),
		Warn:       c.App.ErrWriter,
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// saveCluster records the spec beside the bundles, so that later commands
// (and a later init) start from what the bundles were made from.
func saveCluster(c *cli.Context, cl *spec.Cluster) error {
	if c.Bool("dry-run") || c.String("node") != "" {
		return nil
	}
	b, err := spec.Marshal(cl)
	if err != nil {
		return err
	}
	out := c.String("out")
	if _, err := atomicfile.MkdirAll(out, layout.ModeDir); err != nil {
		return err
	}
	return atomicfile.WriteFile(layout.Bundle(out).Spec(), b, layout.ModeSpec)
}
