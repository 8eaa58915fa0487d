package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkInitProcess times `etcd-staticpod init` as a whole process, from
// exec to exit, writing every phase's output into an empty folder. The
// folders are removed only at the end: on ext4, files made just after many
// were deleted take longer to create (it skips the inodes freed in the last
// minute), which would time the clean-up rather than init.
func BenchmarkInitProcess(b *testing.B) {
	bin := binary(b)
	root := b.TempDir()
	for _, alg := range []string{"ECDSA-P256", "RSA-2048"} {
		for _, hosts := range []int{3, 7} {
			var list []string
			for i := range hosts {
				list = append(list, fmt.Sprintf("etcd%02d=10.107.88.%d", i+1, 15+i))
			}
			b.Run(fmt.Sprintf("%s/hosts=%d", alg, hosts), func(b *testing.B) {
				dir, err := os.MkdirTemp(root, "")
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; b.Loop(); i++ {
					out := filepath.Join(dir, fmt.Sprint(i))
					cmd := exec.Command(bin, "init", "--hosts", strings.Join(list, ","), "--encryption-algorithm", alg, "--out", out)
					// The progress lines go where a terminal's would, not
					// through a pipe this process has to drain.
					var stderr strings.Builder
					cmd.Stderr = &stderr
					if err := cmd.Run(); err != nil {
						b.Fatalf("%v\n%s", err, stderr.String())
					}
				}
			})
		}
	}
}
