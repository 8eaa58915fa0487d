package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
	"github.com/etcd-staticpod/etcd-staticpod/expiry"
)

// maxRenewOutage bounds the longest time the writer saw no acknowledged
// write during the rolling renewal. One member down at a time leaves a
// quorum; what remains is the client failing over and, when the leader
// restarts, an election, each a second or two.
const maxRenewOutage = 15 * time.Second

// restartGrace is the SIGTERM-to-SIGKILL time of a restart, as kubelet's
// grace period; etcd stops well within it, after handing leadership over.
const restartGrace = 30 * time.Second

// renewedRow is one entry of `certs renew -o json`.
type renewedRow struct {
	Name      string `json:"name"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	OldSerial string `json:"oldSerial"`
	NewSerial string `json:"newSerial"`
}

// TestRollingRenewal renews every certificate of every member, one member
// at a time, with `certs renew all --node NAME`, restarting each member
// and waiting for the cluster to be healthy before the next, while a
// writer keeps writing through the apiserver-etcd-client certificate.
// Afterwards each member serves its new server and peer certificates, no
// acknowledged write is lost, and the writer was never cut off for long.
func TestRollingRenewal(t *testing.T) {
	r := startCluster(t, 3, harness.IPv4)
	ctx := stepContext(t, 5*time.Minute)
	cli := r.client(t, r.apiserver())
	w := harness.StartWriter(ctx, cli, "/e2e/renew")
	stopped := false
	defer func() {
		if !stopped {
			w.Stop()
		}
	}()

	served := func(m *harness.Member, url string) string {
		t.Helper()
		cert, err := r.lab.ServerCertificate(ctx, url, r.healthcheck())
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		return expiry.Serial(cert.SerialNumber)
	}
	peerURL := func(m *harness.Member) string { return m.Flag("initial-advertise-peer-urls") }

	want := map[string]map[string]string{}
	for _, m := range r.cluster.Members {
		oldServer, oldPeer := served(m, m.ClientURL()), served(m, peerURL(m))
		rows := renewNode(ctx, t, r.tools.CLI, r.bundle.Dir, m.Name)
		want[m.Name] = map[string]string{}
		for _, row := range rows {
			want[m.Name][row.Name] = row.NewSerial
		}
		if want[m.Name]["etcd-server"] == oldServer || want[m.Name]["etcd-peer"] == oldPeer {
			t.Fatalf("%s: the renewed certificates keep the served serials %s and %s", m.Name, oldServer, oldPeer)
		}
		// etcd reads its certificate files again for each new connection,
		// so the new one may be served before the restart; only logged.
		t.Logf("%s: server certificate %s renewed as %s; served before the restart: %s", m.Name, oldServer, want[m.Name]["etcd-server"], served(m, m.ClientURL()))

		begin := time.Now()
		if err := m.Restart(ctx, restartGrace); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if err := waitHealthy(ctx, r); err != nil {
			t.Fatalf("after restarting %s: %v", m.Name, err)
		}
		t.Logf("%s restarted and the cluster healthy again in %s", m.Name, time.Since(begin).Round(time.Millisecond))
	}

	rep := w.Stop()
	stopped = true
	t.Logf("writer: %s", rep)
	if rep.Acked == 0 || len(rep.Stale) > 0 {
		t.Errorf("writer: %s", rep)
	}
	if rep.LongestOutage >= maxRenewOutage {
		t.Errorf("longest outage %s from %s, want under %s", rep.LongestOutage.Round(time.Millisecond), rep.LongestOutageFrom.Format(time.RFC3339Nano), maxRenewOutage)
	}
	if err := w.Verify(ctx, cli); err != nil {
		t.Error(err)
	}
	for _, m := range r.cluster.Members {
		if got := served(m, m.ClientURL()); got != want[m.Name]["etcd-server"] {
			t.Errorf("%s serves server certificate %s, want the renewed %s", m.Name, got, want[m.Name]["etcd-server"])
		}
		if got := served(m, peerURL(m)); got != want[m.Name]["etcd-peer"] {
			t.Errorf("%s serves peer certificate %s, want the renewed %s", m.Name, got, want[m.Name]["etcd-peer"])
		}
	}
	checkHealth(t, r, nil)
	checkExpirationAgrees(ctx, t, r, want)
}

// renewNode runs `etcd-staticpod certs renew all --node NAME` on the bundle
// folder, as the operator would on the machine that holds the CA.
func renewNode(ctx context.Context, t *testing.T, cli, bundleDir, name string) []renewedRow {
	t.Helper()
	cmd := exec.CommandContext(ctx, cli, "certs", "renew", "all", "--node", name, "--out", bundleDir, "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("certs renew all --node %s: %v\n%s", name, err, stderr.String())
	}
	if strings.Contains(string(out)+stderr.String(), "PRIVATE KEY") {
		t.Fatalf("certs renew printed a key")
	}
	var rows []renewedRow
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("certs renew -o json: %v\n%s", err, out)
	}
	var names []string
	for _, row := range rows {
		if row.Host != name || row.NewSerial == "" || row.NewSerial == row.OldSerial {
			t.Fatalf("certs renew --node %s: %+v", name, row)
		}
		names = append(names, row.Name)
	}
	if want := []string{"etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"}; !slices.Equal(names, want) {
		t.Fatalf("certs renew all renewed %v, want %v", names, want)
	}
	return rows
}

// waitHealthy runs `etcd-staticpod health` until every member is healthy.
func waitHealthy(ctx context.Context, r *run) error {
	creds := r.healthcheck()
	var last string
	for {
		attempt, cancel := context.WithTimeout(ctx, 15*time.Second)
		out, err := r.lab.Command(attempt, r.tools.CLI, "health", "--endpoints", strings.Join(r.cluster.Endpoints(), ","),
			"--cacert", creds.CA, "--cert", creds.Cert, "--key", creds.Key, "--timeout", "3s").CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		last = fmt.Sprintf("%v: %s", err, out)
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w; last: %s", ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkExpirationAgrees: `certs check-expiration` on the bundle folder
// names the serials the members serve, and nothing is due within 360 days.
func checkExpirationAgrees(ctx context.Context, t *testing.T, r *run, want map[string]map[string]string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, r.tools.CLI, "certs", "check-expiration", "--out", r.bundle.Dir, "--within", "360d", "-o", "json").Output()
	if err != nil {
		t.Fatalf("certs check-expiration --within 360d: %v\n%s", err, out)
	}
	var doc expiry.Document
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("certs check-expiration -o json: %v\n%s", err, out)
	}
	for _, row := range doc.Certificates {
		if row.Host == expiry.ControlPlaneHost {
			if row.Serial != want[r.bundle.Hosts[0].Name]["apiserver-etcd-client"] {
				t.Errorf("the control plane's apiserver-etcd-client is %s, not the first host's renewed one", row.Serial)
			}
			continue
		}
		if row.Serial != want[row.Host][row.Name] {
			t.Errorf("check-expiration lists %s/%s with serial %s, want %s", row.Host, row.Name, row.Serial, want[row.Host][row.Name])
		}
	}
}
