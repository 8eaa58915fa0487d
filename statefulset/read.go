package statefulset

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// SecretData returns the data of every Secret in an object stream, by
// the Secret's name.
func SecretData(stream []byte) (map[string]map[string][]byte, error) {
	out := map[string]map[string][]byte{}
	err := eachSecret(stream, func(s *corev1.Secret) { out[s.Name] = s.Data })
	return out, err
}

// eachSecret calls fn with every Secret of an object stream.
func eachSecret(stream []byte, fn func(*corev1.Secret)) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return err
		}
		if tm.Kind != "Secret" {
			continue
		}
		var s corev1.Secret
		if err := yaml.Unmarshal(doc, &s); err != nil {
			return fmt.Errorf("Secret: %w", err)
		}
		fn(&s)
	}
}

// ReadCredentials takes the certificates back out of a stream Render
// wrote for c: the Secrets NAME-members, NAME-healthcheck-client and
// NAME-client. Members are read from ordinal 0 up to the first missing.
// A stream without those Secrets is an error.
func ReadCredentials(c *spec.Cluster, stream []byte) (Credentials, error) {
	n := NamesOf(c)
	secrets := map[string]*corev1.Secret{}
	err := eachSecret(stream, func(s *corev1.Secret) {
		if s.Namespace == n.Namespace {
			secrets[s.Name] = s
		}
	})
	if err != nil {
		return Credentials{}, err
	}
	get := func(name string) (*corev1.Secret, error) {
		s, ok := secrets[name]
		if !ok {
			return nil, fmt.Errorf("no Secret %s/%s", n.Namespace, name)
		}
		return s, nil
	}
	var creds Credentials
	members, err := get(n.MembersSecret())
	if err != nil {
		return Credentials{}, err
	}
	creds.CA = members.Data[CACertKey]
	for i := 0; ; i++ {
		m := n.Member(i)
		mc := MemberCerts{
			Server: Pair{Cert: members.Data[ServerCertKey(m)], Key: members.Data[ServerKeyKey(m)]},
			Peer:   Pair{Cert: members.Data[PeerCertKey(m)], Key: members.Data[PeerKeyKey(m)]},
		}
		if mc.Server.Cert == nil && mc.Server.Key == nil && mc.Peer.Cert == nil && mc.Peer.Key == nil {
			break
		}
		creds.Members = append(creds.Members, mc)
	}
	for _, t := range []struct {
		name string
		pair *Pair
	}{{n.HealthcheckSecret(), &creds.Healthcheck}, {n.ClientSecret(), &creds.Client}} {
		s, err := get(t.name)
		if err != nil {
			return Credentials{}, err
		}
		*t.pair = Pair{Cert: s.Data[corev1.TLSCertKey], Key: s.Data[corev1.TLSPrivateKeyKey]}
	}
	return creds, nil
}
