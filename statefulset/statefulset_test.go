package statefulset

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/etcd.yaml from the current output")

var now = time.Date(2026, 11, 22, 3, 9, 12, 0, time.UTC)

// stsCluster is the defaulted spec of the README's example.
func stsCluster(t testing.TB, mutate ...func(*spec.Cluster)) *spec.Cluster {
	t.Helper()
	c := &spec.Cluster{Runtime: spec.RuntimeStatefulSet, StatefulSet: &spec.StatefulSet{
		Namespace: "apps", Replicas: 3, StorageClass: "fast-ssd", StorageSize: "2Gi",
	}, EncryptionAlgorithm: "ECDSA-P256"} // quick keys; the algorithm is the certificate table's business
	for _, m := range mutate {
		m(c)
	}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// placeholders are credentials whose bytes say what they stand for, so
// that the golden file does not change with every key.
func placeholders(c *spec.Cluster, members int) Credentials {
	n := NamesOf(c)
	p := func(what string) Pair {
		return Pair{Cert: []byte(what + " certificate\n"), Key: []byte(what + " key\n")}
	}
	creds := Credentials{CA: []byte("CA certificate\n"), Healthcheck: p("healthcheck client"), Client: p("application client")}
	for i := range members {
		creds.Members = append(creds.Members, MemberCerts{Server: p(n.Member(i) + " server"), Peer: p(n.Member(i) + " peer")})
	}
	return creds
}

// TestGolden: the object stream for a spec, byte for byte.
func TestGolden(t *testing.T) {
	c := stsCluster(t)
	got, err := Render(c, placeholders(c, 3))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "etcd.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("etcd.yaml differs from %s (-want +got); run go test ./statefulset -update after checking:\n%s", golden, d)
	}
}

// documents splits a YAML stream.
func documents(t testing.TB, stream []byte) [][]byte {
	t.Helper()
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, doc)
	}
}

// decodeStrict decodes each document with the Kubernetes scheme, refusing
// an unknown or duplicate field as the API server's strict field
// validation does.
func decodeStrict(t testing.TB, stream []byte) []runtime.Object {
	t.Helper()
	s := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true, Strict: true})
	var objs []runtime.Object
	for i, doc := range documents(t, stream) {
		obj, gvk, err := s.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("document %d: %v\n%s", i+1, err, doc)
		}
		if gvk.Version == "" || gvk.Kind == "" {
			t.Fatalf("document %d has no apiVersion or kind", i+1)
		}
		objs = append(objs, obj)
	}
	return objs
}

// TestObjectsDecodeStrict: every object of a real init's stream is one of
// the contract's, decodes strictly, and decodes back to what was built.
func TestObjectsDecodeStrict(t *testing.T) {
	c := stsCluster(t)
	creds := issueAll(t, c, 3)
	want, err := Objects(c, creds)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeStrict(t, stream)
	var kinds []string
	for i, o := range got {
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind+"/"+name(o))
		// The scheme's decoder sets TypeMeta as ours does.
		if d := cmp.Diff(want[i], o); d != "" {
			t.Errorf("object %d does not decode to what was built:\n%s", i, d)
		}
	}
	wantKinds := "Service/etcd Service/etcd-client ConfigMap/etcd-cluster Secret/etcd-members Secret/etcd-healthcheck-client Secret/etcd-client StatefulSet/etcd PodDisruptionBudget/etcd"
	if strings.Join(kinds, " ") != wantKinds {
		t.Errorf("objects %v, want %s", kinds, wantKinds)
	}
}

func name(o runtime.Object) string {
	type named interface{ GetName() string }
	return o.(named).GetName()
}

// issueAll signs real credentials for members with a new CA.
func issueAll(t testing.TB, c *spec.Cluster, members int) Credentials {
	t.Helper()
	ca, err := certs.NewAuthority(c.EncryptionAlgorithm, c.CACertificateValidity.Duration, now)
	if err != nil {
		t.Fatal(err)
	}
	return issueWith(t, ca, c, members)
}

func issueWith(t testing.TB, ca *certs.Authority, c *spec.Cluster, members int) Credentials {
	t.Helper()
	creds := Credentials{CA: certs.EncodeCert(ca.Cert)}
	for i := range members {
		mc, err := IssueMember(ca, c, i, now)
		if err != nil {
			t.Fatal(err)
		}
		creds.Members = append(creds.Members, mc)
	}
	for _, x := range []struct {
		p    certs.Profile
		pair *Pair
	}{{HealthcheckProfile(), &creds.Healthcheck}, {certs.ApplicationClient(), &creds.Client}} {
		key, err := certs.GenerateKey(c.EncryptionAlgorithm)
		if err != nil {
			t.Fatal(err)
		}
		if *x.pair, err = IssueClient(ca, c, x.p, key, now); err != nil {
			t.Fatal(err)
		}
	}
	return creds
}

// TestMemberCertificatesVerify: each member's server and peer certificate
// verifies against the CA, with crypto/x509, for every name a client or a
// peer reaches it by, for both server and client authentication, and for
// no other member's names.
func TestMemberCertificatesVerify(t *testing.T) {
	c := stsCluster(t)
	creds := issueAll(t, c, 3)
	roots := x509.NewCertPool()
	ca, err := certs.ParseCert(creds.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(ca)
	names := []string{"etcd-%d", "etcd-%d.etcd", "etcd-%d.etcd.apps", "etcd-%d.etcd.apps.svc", "etcd-%d.etcd.apps.svc.cluster.local",
		"etcd-client", "etcd-client.apps", "etcd-client.apps.svc", "etcd-client.apps.svc.cluster.local", "localhost", "127.0.0.1"}
	at := now.Add(time.Hour)
	for i, m := range creds.Members {
		for what, pair := range map[string]Pair{"server": m.Server, "peer": m.Peer} {
			cert, err := certs.ParseCert(pair.Cert)
			if err != nil {
				t.Fatal(err)
			}
			key, err := certs.ParseKey(pair.Key)
			if err != nil {
				t.Fatal(err)
			}
			if err := certs.KeyMatches(cert, key); err != nil {
				t.Errorf("member %d %s: %v", i, what, err)
			}
			if cert.Subject.CommonName != "etcd-"+itoa(i) {
				t.Errorf("member %d %s: CN %q", i, what, cert.Subject.CommonName)
			}
			for _, pattern := range names {
				dns := strings.ReplaceAll(pattern, "%d", itoa(i))
				_, err := cert.Verify(x509.VerifyOptions{DNSName: dns, Roots: roots, CurrentTime: at,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
				if err != nil {
					t.Errorf("member %d %s for %s: %v", i, what, dns, err)
				}
			}
			other := "etcd-" + itoa((i+1)%3) + ".etcd.apps.svc.cluster.local"
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: other, Roots: roots, CurrentTime: at}); err == nil {
				t.Errorf("member %d %s verifies for %s", i, what, other)
			}
		}
	}
	for what, pair := range map[string]Pair{"healthcheck": creds.Healthcheck, "client": creds.Client} {
		cert, err := certs.ParseCert(pair.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", what, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s verifies as a server certificate", what)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestReadCredentialsRoundTrip: what Render writes, ReadCredentials gives
// back, pair for pair.
func TestReadCredentialsRoundTrip(t *testing.T) {
	c := stsCluster(t)
	want := placeholders(c, 3)
	stream, err := Render(c, want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadCredentials(c, stream)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
	if _, err := ReadCredentials(c, stream[:bytes.Index(stream, []byte("kind: Secret"))]); err == nil {
		t.Error("a stream without the Secrets was read")
	}
}

// TestInitialCluster: the ConfigMap's value for a number of members.
func TestInitialCluster(t *testing.T) {
	c := stsCluster(t)
	want := "etcd-0=https://etcd-0.etcd.apps.svc.cluster.local:2380,etcd-1=https://etcd-1.etcd.apps.svc.cluster.local:2380"
	if got := InitialCluster(c, 2); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	cm := ConfigMap(c, 5, "existing")
	if !strings.HasSuffix(cm.Data[InitialClusterKey], "etcd-4=https://etcd-4.etcd.apps.svc.cluster.local:2380") || cm.Data[InitialClusterStateKey] != "existing" {
		t.Errorf("ConfigMap data %v", cm.Data)
	}
}

// TestRefusedSettings: settings the objects cannot carry are refused
// with the field and the value.
func TestRefusedSettings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*spec.Cluster)
		want   string
	}{
		{"reserved env", func(c *spec.Cluster) { c.Etcd.ExtraEnv = []spec.Arg{{Name: "POD_NAME", Value: "x"}} }, `etcd.extraEnv "POD_NAME"`},
		{"loopback metrics", func(c *spec.Cluster) {
			c.Etcd.ExtraArgs = []spec.Arg{{Name: "listen-metrics-urls", Value: "http://127.0.0.1:2381"}}
		}, `host "127.0.0.1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := stsCluster(t, tc.mutate)
			_, err := Objects(c, placeholders(c, 3))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %s", err, tc.want)
			}
		})
	}
	c := stsCluster(t, func(c *spec.Cluster) {
		c.Etcd.ExtraArgs = []spec.Arg{{Name: "listen-metrics-urls", Value: "http://0.0.0.0:9090"}}
	})
	objs, err := Objects(c, placeholders(c, 3))
	if err != nil {
		t.Fatal(err)
	}
	// Another port on every address moves the probes with it.
	sts := objs[6].(*appsv1.StatefulSet)
	ports := sts.Spec.Template.Spec.Containers[0].Ports
	if p := ports[len(ports)-1]; p.ContainerPort != 9090 || sts.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Host != "" {
		t.Errorf("probe port %+v, probe %+v", p, sts.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet)
	}
}

// TestObjectsPassMetadataValidation: every object's metadata, label
// selectors and Secret and ConfigMap keys pass the API server's own checks
// that apimachinery carries (the rest of the API's validation lives in
// k8s.io/kubernetes; the cluster end-to-end run applies the objects).
func TestObjectsPassMetadataValidation(t *testing.T) {
	c := stsCluster(t, func(c *spec.Cluster) {
		c.StatefulSet.Name = "etcd-apps"
		c.StatefulSet.Replicas = spec.MaxStatefulSetReplicas
	})
	objs, err := Objects(c, placeholders(c, c.StatefulSet.Replicas))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		m, err := apimeta.Accessor(o)
		if err != nil {
			t.Fatal(err)
		}
		kind := o.GetObjectKind().GroupVersionKind().Kind
		nameRule := apivalidation.NameIsDNSSubdomain
		if kind == "Service" {
			nameRule = apivalidation.NameIsDNS1035Label
		}
		errs := apivalidation.ValidateObjectMetaAccessor(m, true, nameRule, field.NewPath("metadata"))
		switch o := o.(type) {
		case *corev1.Secret:
			for k := range o.Data {
				for _, msg := range utilvalidation.IsConfigMapKey(k) {
					errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
				}
			}
		case *corev1.ConfigMap:
			for k := range o.Data {
				for _, msg := range utilvalidation.IsConfigMapKey(k) {
					errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, msg))
				}
			}
		case *appsv1.StatefulSet:
			opts := metav1validation.LabelSelectorValidationOptions{}
			errs = append(errs, metav1validation.ValidateLabelSelector(o.Spec.Selector, opts, field.NewPath("spec", "selector"))...)
			errs = append(errs, metav1validation.ValidateLabels(o.Spec.Template.Labels, field.NewPath("spec", "template", "labels"))...)
			sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(o.Spec.Template.Labels)) {
				t.Errorf("the StatefulSet's selector does not select its template (%v)", err)
			}
			for _, vc := range o.Spec.VolumeClaimTemplates {
				errs = append(errs, apivalidation.ValidateObjectMeta(&vc.ObjectMeta, false, apivalidation.NameIsDNSSubdomain, field.NewPath("spec", "volumeClaimTemplates"))...)
			}
			// A Pod's hostname is its name: a DNS-1123 label.
			for _, msg := range utilvalidation.IsDNS1123Label(NamesOf(c).Member(c.StatefulSet.Replicas - 1)) {
				t.Errorf("Pod name: %s", msg)
			}
		}
		for _, e := range errs {
			t.Errorf("%s %s: %v", kind, m.GetName(), e)
		}
	}
}
