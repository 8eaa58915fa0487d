package etcdops

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/etcd-staticpod/etcd-staticpod/etcdconf"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// AdvertiseClientURLsAnnotation is the annotation kubeadm puts the member's
// client URLs in.
const AdvertiseClientURLsAnnotation = "kubeadm.kubernetes.io/etcd.advertise-client-urls"

// Manifest is what an etcd static Pod tells us about its member.
type Manifest struct {
	// Path is the file read.
	Path string
	// Command is the etcd container's command followed by its args.
	Command []string
	// Name is the member name (--name).
	Name string
	// ClientURLs are the advertised client URLs: the annotation, else
	// --advertise-client-urls.
	ClientURLs []string
	// PeerURLs are --initial-advertise-peer-urls.
	PeerURLs []string
	// CertDir is the node's certificate folder, such as /etc/kubernetes/pki,
	// taken from --trusted-ca-file (which is CERTDIR/etcd/ca.crt).
	CertDir string
}

// pod is the part of a Pod we read; everything else is ignored.
type pod struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Containers []struct {
			Name    string   `yaml:"name"`
			Command []string `yaml:"command"`
			Args    []string `yaml:"args"`
		} `yaml:"containers"`
	} `yaml:"spec"`
}

// ReadHost reads what runs etcd on the host whose filesystem root (or host
// folder) is root: its static Pod manifest, or, when there is none, the
// config file a systemd unit runs etcd from, read back as the flags it
// stands for. An error wrapping os.ErrNotExist means neither is there.
func ReadHost(root string) (*Manifest, error) {
	m, err := ReadManifest(layout.OnHost(root, layout.EtcdManifest))
	if !errors.Is(err, os.ErrNotExist) {
		return m, err
	}
	file := layout.OnHost(root, layout.EtcdConfig)
	data, cerr := safefile.Read(file)
	if errors.Is(cerr, os.ErrNotExist) {
		return nil, fmt.Errorf("neither %s nor %s: %w", layout.Rel(layout.EtcdManifest), layout.Rel(layout.EtcdConfig), os.ErrNotExist)
	}
	if cerr != nil {
		return nil, fmt.Errorf("read etcd config file: %w", cerr)
	}
	flags, cerr := etcdconf.Flags(data)
	if cerr != nil {
		return nil, fmt.Errorf("%s: %w", file, cerr)
	}
	m = fromCommand(append([]string{"etcd"}, flags...), nil)
	m.Path = file
	return m, nil
}

// ReadManifest parses an etcd static Pod manifest.
func ReadManifest(file string) (*Manifest, error) {
	data, err := safefile.Read(file)
	if err != nil {
		return nil, fmt.Errorf("read etcd manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("etcd manifest %s: %w", file, err)
	}
	m.Path = file
	return m, nil
}

// ParseManifest reads the member's name, URLs and certificate folder from
// the static Pod's etcd container.
func ParseManifest(data []byte) (*Manifest, error) {
	var p pod
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, errors.New(strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", " "))
	}
	if p.Kind != "Pod" {
		return nil, fmt.Errorf("kind %q: want Pod", p.Kind)
	}
	found := -1
	for i, c := range p.Spec.Containers {
		if c.Name == "etcd" || (found < 0 && len(c.Command) > 0 && path.Base(c.Command[0]) == "etcd") {
			found = i
		}
	}
	if found < 0 {
		return nil, errors.New("no etcd container")
	}
	c := p.Spec.Containers[found]
	return fromCommand(append(append([]string{}, c.Command...), c.Args...), p.Metadata.Annotations), nil
}

// fromCommand reads the member from etcd's command line (and the Pod's
// annotations, if any).
func fromCommand(command []string, annotations map[string]string) *Manifest {
	m := &Manifest{Command: command}
	m.Name, _ = m.Flag("name")
	if v := annotations[AdvertiseClientURLsAnnotation]; v != "" {
		m.ClientURLs = spec.SplitList(v)
	} else if v, ok := m.Flag("advertise-client-urls"); ok {
		m.ClientURLs = spec.SplitList(v)
	}
	if v, ok := m.Flag("initial-advertise-peer-urls"); ok {
		m.PeerURLs = spec.SplitList(v)
	}
	m.CertDir = layout.DefaultCertDir
	if ca, ok := m.Flag("trusted-ca-file"); ok {
		if dir, ok := layout.CA.DirOf(ca); ok {
			m.CertDir = dir
		}
	}
	return m
}

// Flag returns the value of --name=value in the command; etcd uses the
// last one when a flag is repeated, and so do we.
func (m *Manifest) Flag(name string) (string, bool) {
	value, found := "", false
	for _, a := range m.Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			value, found = v, true
		}
	}
	return value, found
}
