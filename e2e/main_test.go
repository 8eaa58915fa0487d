package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/e2e/harness"
)

// TestMain removes namespaces that an earlier, killed run left behind.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := harness.SweepStale(ctx, func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
		})
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stale namespace sweep:", err)
		}
	}
	os.Exit(m.Run())
}
