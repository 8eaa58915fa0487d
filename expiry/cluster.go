package expiry

import (
	"context"
	"fmt"

	"github.com/etcd-staticpod/etcd-staticpod/kube"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
	"github.com/etcd-staticpod/etcd-staticpod/statefulset"
)

// InCluster lists the certificates that runtime statefulset's Secrets hold
// in the cluster cl reaches (in the spec's namespace): what the members
// and applications actually use, which `certs renew` in the bundle folder
// replaces only once applied. A Secret that is not there gives missing
// entries; any other failure to read one is an error.
func InCluster(ctx context.Context, cl *kube.Client, out string, c *spec.Cluster) ([]Item, error) {
	n := statefulset.NamesOf(c)
	secrets := map[string]map[string][]byte{}
	for _, name := range []string{n.MembersSecret(), n.HealthcheckSecret(), n.ClientSecret()} {
		s, err := cl.Secret(ctx, name)
		if kube.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read Secret %s/%s: %w", cl.Namespace, name, err)
		}
		secrets[name] = s.Data
	}
	return ClusterSecrets(out, c, secrets), nil
}
