package expiry

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// Source says where the certificates to check are, as check-expiration's
// flags name them.
type Source struct {
	// Out is a bundle folder; Root, when set, a node's root instead.
	Out, Root string
	// Config is a cluster spec; empty means OUT/cluster.yaml when there is
	// one (for a node: the etcd manifest's settings).
	Config string
	// CertDir, when set, is the hosts' certificate folder, over the spec's.
	CertDir string
}

// Items lists the certificates of src; every error it returns is about
// the input.
func Items(src Source) ([]Item, error) {
	if src.Root != "" {
		return nodeItems(src)
	}
	return bundleItems(src)
}

// bundleItems lists a bundle folder's certificates: the hosts of the spec,
// else the folders that hold certificates.
func bundleItems(src Source) ([]Item, error) {
	out := src.Out
	if fi, err := os.Stat(out); err != nil {
		return nil, fmt.Errorf("--out %q: no such folder; give the bundle folder init wrote, or --root / on a node", out)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("--out %q: not a folder; give the bundle folder init wrote, or --root / on a node", out)
	}
	certDir, cpCertDir := layout.DefaultCertDir, layout.DefaultCertDir
	var hosts []string
	// Validated, so that a host name in it cannot lead outside the folder.
	r, err := spec.Resolve(spec.Source{Config: src.Config, Out: out})
	if err != nil {
		return nil, err
	}
	if r != nil && r.InKubernetes() {
		return StatefulSet(out, r.Cluster), nil
	}
	if r != nil {
		for _, h := range r.Hosts {
			hosts = append(hosts, h.Name)
		}
		certDir, cpCertDir = r.CertDir, r.ControlPlane.CertDir
	}
	if src.CertDir != "" {
		certDir = src.CertDir
	}
	if r == nil {
		dirs, err := os.ReadDir(out)
		if err != nil {
			return nil, fmt.Errorf("--out %q: %w", out, err)
		}
		for _, d := range dirs {
			if d.IsDir() && d.Name() != "pki" && d.Name() != ControlPlaneHost && fileExists(filepath.Join(out, d.Name(), certDir, "etcd")) {
				hosts = append(hosts, d.Name())
			}
		}
		if len(hosts) == 0 && !fileExists(filepath.Join(out, "pki", "etcd")) {
			return nil, fmt.Errorf("--out %q: no bundles here (no %s, no pki/etcd, no host folder with %s); give the bundle folder init wrote, or --root / on a node", out, layout.SpecFile, certDir)
		}
	}
	return Bundle(out, hosts, certDir, cpCertDir), nil
}

// nodeItems lists a node's certificates; the host's name and certificate
// folder come from its etcd manifest (or a systemd member's etcd.conf.yml)
// when there is one.
func nodeItems(src Source) ([]Item, error) {
	root := src.Root
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("--root %q: no such folder", root)
	}
	certDir, host := layout.DefaultCertDir, ""
	if m, err := etcdops.ReadHost(root); err == nil {
		certDir, host = m.CertDir, m.Name
	}
	r, err := spec.Resolve(spec.Source{Config: src.Config})
	if err != nil {
		return nil, err
	}
	if r != nil {
		certDir = r.CertDir
	}
	if src.CertDir != "" {
		certDir = src.CertDir
	}
	return Node(root, host, certDir), nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
