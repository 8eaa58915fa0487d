package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"go.yaml.in/yaml/v3"
)

// Load reads a cluster document from a file.
func Load(path string) (*Cluster, error) {
	data, err := safefile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster spec: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cluster spec %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a cluster document strictly: an unknown field or a value of
// the wrong type is an error that names the line.
func Parse(data []byte) (*Cluster, error) {
	if err := checkDurations(data); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Cluster
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the document is empty")
		}
		return nil, oneLine(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("more than one YAML document; want exactly one " + Kind)
	} else if !errors.Is(err, io.EOF) {
		return nil, oneLine(err)
	}
	if c.APIVersion != APIVersion {
		return nil, fmt.Errorf("apiVersion %q: want %q", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		return nil, fmt.Errorf("kind %q: want %q", c.Kind, Kind)
	}
	return &c, nil
}

// checkDurations refuses a certificate lifetime the document gives but
// that is not a duration, or too short: an explicit 0s would otherwise read
// as unset and become the default. Anything else wrong with the document is
// left to the strict decode.
func checkDurations(data []byte) error {
	var d struct {
		CertificateValidity   *string `yaml:"certificateValidity"`
		CACertificateValidity *string `yaml:"caCertificateValidity"`
	}
	if yaml.Unmarshal(data, &d) != nil {
		return nil
	}
	for _, f := range []struct {
		field string
		value *string
	}{{"certificateValidity", d.CertificateValidity}, {"caCertificateValidity", d.CACertificateValidity}} {
		if f.value == nil {
			continue
		}
		v, err := time.ParseDuration(*f.value)
		if err != nil {
			return fmt.Errorf("%s %q: not a duration such as 8760h", f.field, *f.value)
		}
		if err := CheckValidity(f.field, *f.value, v); err != nil {
			return err
		}
	}
	return nil
}

// oneLine folds yaml.v3's multi-line error lists into one line; a newline
// quoted from the input is shown escaped.
func oneLine(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	return errors.New(strings.ReplaceAll(msg, "\n", `\n`))
}

// Marshal writes the spec as a cluster document that Parse reads back.
func Marshal(c *Cluster) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# The cluster spec these bundles were made from; later commands read it from here.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode cluster spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode cluster spec: %w", err)
	}
	return buf.Bytes(), nil
}
