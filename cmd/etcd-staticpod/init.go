package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/etcd-staticpod/etcd-staticpod/archive"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/phases"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

const guideHosts = "etcd01=10.107.88.15,etcd02=10.107.88.16,etcd03=10.107.88.17"

// initCommand is `init` and its `phase` subcommands, generated from the
// phase list the same way kubeadm's workflow does.
func initCommand() *cli.Command {
	list := phases.List()
	flags := append(flagsFor(allGroups()), &cli.StringSliceFlag{
		Name:  "skip-phases",
		Usage: "phases to skip, comma-separated or repeated: " + strings.Join(list.Paths(), ", "),
	})
	return &cli.Command{
		Name:  "init",
		Usage: "make every host's bundle: certificates, kubelet settings, etcd static Pod and kubeadm configs",
		Description: list.Help("init") + "\n\n" +
			"The CA key stays in OUT/pki/etcd; each host gets OUT/NAME (a copy of its filesystem root) and OUT/NAME.tar.gz.\n\n" +
			"Examples:\n" +
			"  # the guide's three hosts\n" +
			"  etcd-staticpod init --hosts " + guideHosts + "\n" +
			"  # from a cluster spec, ECDSA keys, no archives\n" +
			"  etcd-staticpod init --config cluster.yaml --encryption-algorithm ECDSA-P256 --skip-phases bundle\n" +
			"  # with a Prometheus configuration and alerting rules in OUT/monitoring, and a snapshot\n" +
			"  # every night at 03:15 on etcd01, the 14 newest kept (this binary goes into the bundles)\n" +
			"  etcd-staticpod init --hosts " + guideHosts + " --monitoring \\\n" +
			"    --backup-host etcd01 --backup-schedule '*-*-* 03:15:00' --backup-keep 14\n" +
			"  # etcd as a hardened systemd service instead of a static Pod, its binary in the bundles\n" +
			"  etcd-staticpod init --hosts " + guideHosts + " --runtime systemd --etcd-binary ./etcd-v3.6.8-linux-amd64/etcd\n" +
			"  # on the node etcd02 itself, beside kubelet (the CA key is not needed when the certificates exist)\n" +
			"  etcd-staticpod init --config cluster.yaml --node etcd02 --root / --skip-phases certs\n" +
			"  # another run is writing into ./etcd-bundles: wait up to 2 minutes for it instead of refusing\n" +
			"  etcd-staticpod init --config cluster.yaml --wait-lock 2m\n\n" +
			"A run holds OUT/.etcd-staticpod.lock (with --root also ROOT/etc/kubernetes/.etcd-staticpod.lock) while it writes;\n" +
			"SIGINT or SIGTERM before its files are in place rolls it back (exit 130 or 143).",
		Flags: flags,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return badArgs(fmt.Errorf("unexpected argument %q: init takes flags only (its phases: init phase NAME)", c.Args().First()))
			}
			var skip []string
			for _, s := range c.StringSlice("skip-phases") {
				skip = append(skip, strings.Split(s, ",")...)
			}
			r, cl, err := newRunner(c)
			if err != nil {
				return err
			}
			selected, err := list.Select(skip)
			if err != nil {
				return badArgs(err)
			}
			release, err := holdFolders(c, c.String("out"), c.String("root"), c.Bool("dry-run"))
			if err != nil {
				return err
			}
			defer release()
			if err := r.Run(selected); err != nil {
				return err
			}
			if err := saveCluster(c, cl); err != nil {
				return err
			}
			if !c.Bool("dry-run") && c.String("node") == "" {
				printCopyCommands(c.App.Writer, c.String("out"), cl)
			}
			return nil
		},
		Subcommands: []*cli.Command{{
			Name:        "phase",
			Usage:       "run one phase of init",
			Description: "Each phase of init on its own, as kubeadm's `init phase`.",
			Subcommands: phaseCommands("", list),
		}},
	}
}

func newRunner(c *cli.Context) (*phases.Runner, *spec.Cluster, error) {
	cl, err := loadCluster(c)
	if err != nil {
		return nil, nil, badArgs(err)
	}
	r, err := phases.NewRunner(runnerOptions(c, cl))
	if err != nil {
		return nil, nil, badArgs(err)
	}
	return r, cl, nil
}

func groupsOf(ps []phases.Phase) []phases.FlagGroup {
	var gs []phases.FlagGroup
	for _, p := range ps {
		gs = append(gs, p.Flags...)
	}
	return gs
}

func phaseCommands(prefix string, ps []phases.Phase) []*cli.Command {
	var cmds []*cli.Command
	for _, p := range ps {
		run := p.Leaves()
		cmd := &cli.Command{
			Name:        p.Name,
			Usage:       p.Short,
			Description: p.Long,
			Flags:       flagsFor(groupsOf(run)),
			Action:      runPhases(run),
		}
		if p.Example != "" {
			cmd.Description += "\n\nExample:\n  " + p.Example
		}
		if len(p.Children) > 0 {
			cmd.Subcommands = phaseCommands(prefix+p.Name+"/", p.Children)
			if p.RunAllChildren {
				cmd.Subcommands = append([]*cli.Command{{
					Name:        "all",
					Usage:       "run every " + p.Name + " phase",
					Description: p.Long,
					Flags:       flagsFor(groupsOf(run)),
					Action:      runPhases(run),
				}}, cmd.Subcommands...)
			}
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

func runPhases(ps []phases.Phase) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			return badArgs(fmt.Errorf("unexpected argument %q: %s takes flags only", c.Args().First(), c.Command.HelpName))
		}
		r, cl, err := newRunner(c)
		if err != nil {
			return err
		}
		release, err := holdFolders(c, c.String("out"), c.String("root"), c.Bool("dry-run"))
		if err != nil {
			return err
		}
		defer release()
		if err := r.Run(ps); err != nil {
			return err
		}
		return saveCluster(c, cl)
	}
}

// printCopyCommands tells the user how each bundle reaches its host.
func printCopyCommands(w io.Writer, out string, cl *spec.Cluster) {
	if cl.InKubernetes() {
		printApplyCommands(w, out, cl)
		return
	}
	fmt.Fprintf(w, "\nBundles are ready in %s. The CA key stays in %s/%s: keep it on this machine.\n", out, out, layout.CAStoreDir)
	if line := phases.InstallEtcdLine(cl); line != "" {
		fmt.Fprintf(w, "%s Or give --etcd-binary to ship it in the bundles.\n", strings.Replace(line, "on the host first", "on every host", 1))
	}
	fmt.Fprintln(w, "Copy each host's bundle and unpack it at /:")
	for _, h := range cl.Hosts {
		fmt.Fprintf(w, "  %s\n", archive.CopyCommand(layout.Bundle(out).Archive(h.Name), h.Address, phases.StartCommand(cl)))
	}
	if cl.Systemd() && len(cl.Hosts) > 0 {
		fmt.Fprintf(w, "Then check the cluster: etcd-staticpod health --bundle %s\n", shellcmd.Quote(layout.Bundle(out).Host(cl.Hosts[0].Name)))
	}
	printAddonCommands(w, out, cl)
	fmt.Fprintln(w, "Then, on the first control-plane node:")
	fmt.Fprintf(w, "  scp -rp %s root@CONTROL-PLANE:/\n", shellcmd.Quote(filepath.Join(layout.Bundle(out).ControlPlane(), "etc")))
	fmt.Fprintf(w, "  scp %s root@CONTROL-PLANE: && ssh root@CONTROL-PLANE %s\n", shellcmd.Quote(layout.Bundle(out).KubeadmConfig()), shellcmd.Quote("kubeadm init --config "+layout.KubeadmConfigFile+" --upload-certs"))
}

// printApplyCommands tells the user how the StatefulSet reaches the
// Kubernetes cluster.
func printApplyCommands(w io.Writer, out string, cl *spec.Cluster) {
	b := layout.Bundle(out)
	n := statefulset.NamesOf(cl)
	fmt.Fprintf(w, "\nThe StatefulSet is ready in %s. The CA key stays in %s: keep it on this machine.\n", b.StatefulSetManifest(), b.CAStore())
	fmt.Fprintln(w, "Apply it (its Secrets hold every member's keys):")
	fmt.Fprintf(w, "  kubectl apply -f %s\n", shellcmd.Quote(b.StatefulSetManifest()))
	fmt.Fprintf(w, "  kubectl -n %s rollout status statefulset/%s\n", n.Namespace, n.StatefulSet())
	fmt.Fprintf(w, "Applications reach it at https://%s:%d with the client bundle in %s (or the Secret %s/%s).\n",
		n.ClientServiceHost(), spec.ClientPort, shellcmd.Quote(b.StatefulSetClient()), n.Namespace, n.ClientSecret())
}
