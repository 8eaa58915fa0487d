package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"
)

// outputFormat is the command's -o, checked against the formats every
// command prints (table, json, yaml) and those it adds (extra).
func outputFormat(c *cli.Context, extra ...string) (string, error) {
	format := c.String("output")
	formats := append([]string{"table", "json", "yaml"}, extra...)
	if !slices.Contains(formats, format) {
		last := len(formats) - 1
		return "", badArgs(fmt.Errorf("--output %q: want %s or %s", format, strings.Join(formats[:last], ", "), formats[last]))
	}
	return format, nil
}

// writeDoc writes v as the -o json document (indented) or, for yaml, the
// YAML one; the field names of v are part of the command-line interface.
func writeDoc(w io.Writer, format string, v any) error {
	if format == "yaml" {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
