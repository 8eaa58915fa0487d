package manifests

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// kubeadm's API group; the version is chosen per document.
const kubeadmGroup = "kubeadm.k8s.io/"

// kubeadm's config types cannot be imported (they live in k8s.io/kubernetes),
// so the few fields we write are mirrored here, one set per API version, the
// way kind keeps versioned kubeadm config data. Fields are omitempty so that
// a default input writes exactly the fields the HA etcd guide writes.

// arg is kubeadm v1beta4's name/value form of extraArgs. v1beta3 used a
// map[string]string instead, which cannot hold a repeated flag or an order.
type arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type envVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type nodeRegistration struct {
	Name string `json:"name,omitempty"`
}

type apiEndpoint struct {
	AdvertiseAddress string `json:"advertiseAddress,omitempty"`
}

type initConfigurationV1beta4 struct {
	APIVersion       string           `json:"apiVersion"`
	Kind             string           `json:"kind"`
	NodeRegistration nodeRegistration `json:"nodeRegistration"`
	LocalAPIEndpoint apiEndpoint      `json:"localAPIEndpoint"`
}

type localEtcdV1beta4 struct {
	ImageRepository string   `json:"imageRepository,omitempty"`
	ImageTag        string   `json:"imageTag,omitempty"`
	DataDir         string   `json:"dataDir,omitempty"`
	ExtraArgs       []arg    `json:"extraArgs,omitempty"`
	ExtraEnvs       []envVar `json:"extraEnvs,omitempty"`
	ServerCertSANs  []string `json:"serverCertSANs,omitempty"`
	PeerCertSANs    []string `json:"peerCertSANs,omitempty"`
}

// externalEtcd has the same shape in v1beta3 and v1beta4 (v1beta4 adds
// httpEndpoints, which kubeadm defaults to endpoints).
type externalEtcd struct {
	Endpoints []string `json:"endpoints"`
	CAFile    string   `json:"caFile"`
	CertFile  string   `json:"certFile"`
	KeyFile   string   `json:"keyFile"`
}

type etcdV1beta4 struct {
	Local    *localEtcdV1beta4 `json:"local,omitempty"`
	External *externalEtcd     `json:"external,omitempty"`
}

type networking struct {
	PodSubnet     string `json:"podSubnet,omitempty"`
	ServiceSubnet string `json:"serviceSubnet,omitempty"`
}

// apiServer carries only certSANs. Should extraArgs ever be written here,
// v1beta3 needs a map and v1beta4 a name/value list, so the type must split
// by version then.
type apiServer struct {
	CertSANs []string `json:"certSANs,omitempty"`
}

type clusterConfigurationV1beta4 struct {
	APIVersion                  string      `json:"apiVersion"`
	Kind                        string      `json:"kind"`
	KubernetesVersion           string      `json:"kubernetesVersion,omitempty"`
	ControlPlaneEndpoint        string      `json:"controlPlaneEndpoint,omitempty"`
	CertificatesDir             string      `json:"certificatesDir,omitempty"`
	EncryptionAlgorithm         string      `json:"encryptionAlgorithm,omitempty"`
	CertificateValidityPeriod   string      `json:"certificateValidityPeriod,omitempty"`
	CACertificateValidityPeriod string      `json:"caCertificateValidityPeriod,omitempty"`
	Networking                  *networking `json:"networking,omitempty"`
	APIServer                   *apiServer  `json:"apiServer,omitempty"`
	Etcd                        etcdV1beta4 `json:"etcd"`
}

// HostKubeadmConfig returns h's kubeadmcfg.yaml as the HA etcd guide writes
// it (an InitConfiguration and a ClusterConfiguration, kubeadm v1beta4),
// plus every setting of c that differs from kubeadm's defaults, so that
// `kubeadm init phase etcd local --config` on h writes the same etcd.yaml
// as EtcdPod(c, h, HostExtraArgs(c, h)). It is always v1beta4: v1beta3
// cannot express the key type or the certificate lifetimes.
func HostKubeadmConfig(c *spec.Cluster, h spec.Host) ([]byte, error) {
	repo, tag, err := kubeadmImage(c.EtcdImage())
	if err != nil {
		return nil, fmt.Errorf("kubeadm config for host %q: %w", h.Name, err)
	}
	local := &localEtcdV1beta4{
		ImageRepository: repo,
		ImageTag:        tag,
		ServerCertSANs:  append([]string{h.Address}, h.ServerCertSANs...),
		PeerCertSANs:    append([]string{h.Address}, h.PeerCertSANs...),
	}
	if c.Etcd.DataDir != layout.DefaultDataDir {
		local.DataDir = c.Etcd.DataDir
	}
	for _, a := range HostExtraArgs(c, h) {
		local.ExtraArgs = append(local.ExtraArgs, arg(a))
	}
	for _, e := range c.Etcd.ExtraEnv {
		local.ExtraEnvs = append(local.ExtraEnvs, envVar(e))
	}

	cc := clusterConfigurationV1beta4{
		APIVersion: kubeadmGroup + "v1beta4",
		Kind:       "ClusterConfiguration",
		Etcd:       etcdV1beta4{Local: local},
	}
	if c.CertDir != layout.DefaultCertDir {
		cc.CertificatesDir = c.CertDir
	}
	if c.EncryptionAlgorithm != spec.DefaultEncryptionAlgorithm {
		cc.EncryptionAlgorithm = c.EncryptionAlgorithm
	}
	if d := c.CertificateValidity.Duration; d != spec.DefaultCertificateValidity {
		cc.CertificateValidityPeriod = d.String()
	}
	if d := c.CACertificateValidity.Duration; d != spec.DefaultCACertificateValidity {
		cc.CACertificateValidityPeriod = d.String()
	}

	ic := initConfigurationV1beta4{
		APIVersion:       kubeadmGroup + "v1beta4",
		Kind:             "InitConfiguration",
		NodeRegistration: nodeRegistration{Name: h.Name},
		LocalAPIEndpoint: apiEndpoint{AdvertiseAddress: h.Address},
	}
	out, err := marshalDocuments(ic, cc)
	if err != nil {
		return nil, fmt.Errorf("kubeadm config for host %q: %w", h.Name, err)
	}
	return out, nil
}

// ExternalEtcdConfig returns the ClusterConfiguration a control-plane node
// passes to `kubeadm init --config` to use the etcd cluster of c, in the
// kubeadm API version c.ControlPlane.KubeadmAPIVersion (v1beta4 or v1beta3).
func ExternalEtcdConfig(c *spec.Cluster) ([]byte, error) {
	ext := &externalEtcd{
		CAFile:   layout.CA.Cert(c.ControlPlane.CertDir),
		CertFile: layout.APIServerEtcdClient.Cert(c.ControlPlane.CertDir),
		KeyFile:  layout.APIServerEtcdClient.Key(c.ControlPlane.CertDir),
	}
	for _, h := range c.Hosts {
		ext.Endpoints = append(ext.Endpoints, h.ClientURL())
	}
	cp := c.ControlPlane
	var nw *networking
	if cp.PodSubnet != "" || cp.ServiceSubnet != "" {
		nw = &networking{PodSubnet: cp.PodSubnet, ServiceSubnet: cp.ServiceSubnet}
	}
	var api *apiServer
	if len(cp.APIServerCertSANs) > 0 {
		api = &apiServer{CertSANs: cp.APIServerCertSANs}
	}
	// The client certificate and CA are read from under the control plane's
	// cert dir, so kubeadm must be told about a non-default one.
	certDir := ""
	if cp.CertDir != layout.DefaultCertDir {
		certDir = cp.CertDir
	}

	v := cp.KubeadmAPIVersion
	if v != "v1beta4" && v != "v1beta3" {
		return nil, fmt.Errorf("external etcd config: kubeadm API version %q: want v1beta4 or v1beta3", v)
	}
	// The external-etcd form is the same in both versions: what v1beta4
	// adds (encryptionAlgorithm, the validity periods, local etcd) is not
	// written here, and v1beta3 keeps extraArgs as maps, which only local
	// etcd has.
	doc := clusterConfigurationV1beta4{
		APIVersion:           kubeadmGroup + v,
		Kind:                 "ClusterConfiguration",
		KubernetesVersion:    cp.KubernetesVersion,
		ControlPlaneEndpoint: cp.ControlPlaneEndpoint,
		CertificatesDir:      certDir,
		Networking:           nw,
		APIServer:            api,
		Etcd:                 etcdV1beta4{External: ext},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("external etcd config: %w", err)
	}
	return out, nil
}

// kubeadmImage splits image into kubeadm's etcd.local imageRepository and
// imageTag, leaving each empty where it equals kubeadm's default. kubeadm
// always names the image REPOSITORY/etcd:TAG, so any other image cannot be
// expressed and is an error rather than a config that writes something else.
func kubeadmImage(image string) (repo, tag string, err error) {
	i := strings.LastIndex(image, "/")
	if i <= 0 || !strings.HasPrefix(image[i+1:], "etcd:") || len(image[i+1:]) == len("etcd:") {
		return "", "", fmt.Errorf("etcd image %q: kubeadm can only run an image named REPOSITORY/etcd:TAG", image)
	}
	repo, tag = image[:i], image[i+1+len("etcd:"):]
	if repo == spec.DefaultImageRepository {
		repo = ""
	}
	if tag == spec.DefaultEtcdVersion {
		tag = ""
	}
	return repo, tag, nil
}

// marshalDocuments writes each value as one YAML document, "---" between.
func marshalDocuments(docs ...any) ([]byte, error) {
	var buf bytes.Buffer
	for i, d := range docs {
		out, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("marshal document %d: %w", i+1, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(out)
	}
	return buf.Bytes(), nil
}
