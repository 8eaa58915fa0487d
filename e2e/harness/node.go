package harness

import (
	"context"
	"os/exec"
)

// Command runs a program from the member's host: in its network namespace
// (namespace mode), so that it reaches the cluster as a program on that
// host would.
func (m *Member) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if m.net.ns.Name == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return m.net.ns.Command(ctx, name, args...)
}
