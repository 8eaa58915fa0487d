package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkInitProcess times `etcd-staticpod init` as a whole process, from
// exec to exit, writing every phase's output into an empty folder.
func BenchmarkInitProcess(b *testing.B) {
	bin := binary(b)
	for _, alg := range []string{"ECDSA-P256", "RSA-2048"} {
		for _, hosts := range []int{3, 7} {
			var list []string
			for i := range hosts {
				list = append(list, fmt.Sprintf("etcd%02d=10.107.88.%d", i+1, 15+i))
			}
			b.Run(fmt.Sprintf("%s/hosts=%d", alg, hosts), func(b *testing.B) {
				dir := b.TempDir()
				for i := 0; b.Loop(); i++ {
					out := filepath.Join(dir, fmt.Sprint(i))
					cmd := exec.Command(bin, "init", "--hosts", strings.Join(list, ","), "--encryption-algorithm", alg, "--out", out)
					if o, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("%v\n%s", err, o)
					}
				}
			})
		}
	}
}
