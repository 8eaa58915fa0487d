package e2e

import (
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// etcdMember is an entry of the member list.
type etcdMember = etcdserverpb.Member

// endpointHealth is one entry of `etcd-staticpod health -o json`.
type endpointHealth struct {
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	Took     string `json:"took"`
	Error    string `json:"error"`
}

// checkHealth runs `etcd-staticpod health` from the hub against every
// member with the healthcheck-client certificate, as an operator would,
// and expects exactly the members named in down to be reported unhealthy,
// with a non-zero exit status if any is.
func checkHealth(t *testing.T, r *run, down []string) {
	t.Helper()
	creds := r.healthcheck()
	endpoints := r.cluster.Endpoints()
	cmd := r.lab.Command(stepContext(t, time.Minute), r.tools.CLI, "health",
		"--endpoints", strings.Join(endpoints, ","),
		"--cacert", creds.CA, "--cert", creds.Cert, "--key", creds.Key,
		"--timeout", "5s", "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("etcd-staticpod health: %v", err)
	}
	code := cmd.ProcessState.ExitCode()
	if wantFail := len(down) > 0; wantFail != (code != 0) {
		t.Errorf("etcd-staticpod health exited %d with %d members down; stderr: %s", code, len(down), stderr.String())
	}
	var results []endpointHealth
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("etcd-staticpod health -o json: %v\n%s", err, out)
	}
	for _, m := range r.cluster.Members {
		i := slices.IndexFunc(results, func(h endpointHealth) bool { return h.Endpoint == m.ClientURL() })
		if i < 0 {
			t.Errorf("etcd-staticpod health does not report %s (%s): %s", m.Name, m.ClientURL(), out)
			continue
		}
		h := results[i]
		switch wantDown := slices.Contains(down, m.Name); {
		case wantDown && h.Healthy:
			t.Errorf("etcd-staticpod health calls %s healthy, want unhealthy", m.Name)
		case !wantDown && !h.Healthy:
			t.Errorf("etcd-staticpod health calls %s unhealthy: %s", m.Name, h.Error)
		case wantDown:
			t.Logf("etcd-staticpod health reports %s: %s (exit status %d)", m.Name, h.Error, code)
		}
	}
}
