package phases

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

func benchCluster(b *testing.B, hosts int, alg string) *spec.Cluster {
	c := &spec.Cluster{EncryptionAlgorithm: alg}
	for i := range hosts {
		c.Hosts = append(c.Hosts, spec.Host{Name: fmt.Sprintf("etcd%02d", i+1), Address: fmt.Sprintf("10.107.88.%d", 15+i)})
	}
	c.SetDefaults()
	if _, err := c.Validate(); err != nil {
		b.Fatal(err)
	}
	return c
}

func benchRun(b *testing.B, c *spec.Cluster, out string, ps []Phase) {
	r, err := NewRunner(Options{Cluster: c, Out: out, Log: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Run(ps); err != nil {
		b.Fatal(err)
	}
}

func allLeafPhases() []Phase {
	var ps []Phase
	for _, p := range List() {
		ps = append(ps, p.Leaves()...)
	}
	return ps
}

// BenchmarkInit is every phase for N hosts from an empty folder; next to it
// BenchmarkKeyFloor makes the same number of keys (1 CA + 4 per host)
// concurrently on all cores, the least init can take.
func BenchmarkInit(b *testing.B) {
	for _, alg := range []string{"RSA-2048", "ECDSA-P256"} {
		for _, hosts := range []int{3, 7, 25} {
			b.Run(fmt.Sprintf("%s/hosts=%d", alg, hosts), func(b *testing.B) {
				c := benchCluster(b, hosts, alg)
				dir := b.TempDir()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					benchRun(b, c, filepath.Join(dir, fmt.Sprint(i)), allLeafPhases())
				}
			})
		}
	}
}

func BenchmarkKeyFloor(b *testing.B) {
	for _, alg := range []string{"RSA-2048", "ECDSA-P256"} {
		for _, hosts := range []int{3, 7, 25} {
			n := 1 + 4*hosts
			b.Run(fmt.Sprintf("%s/hosts=%d/keys=%d", alg, hosts, n), func(b *testing.B) {
				for b.Loop() {
					var wg sync.WaitGroup
					jobs := make(chan struct{}, n)
					for range n {
						jobs <- struct{}{}
					}
					close(jobs)
					for range runtime.NumCPU() {
						wg.Go(func() {
							for range jobs {
								if _, err := certs.GenerateKey(alg); err != nil {
									b.Error(err)
								}
							}
						})
					}
					wg.Wait()
				}
			})
		}
	}
}

// BenchmarkPhase runs each phase alone for the guide's three hosts, on a
// folder where the phases before it have run.
func BenchmarkPhase(b *testing.B) {
	for _, alg := range []string{"RSA-2048", "ECDSA-P256"} {
		c := benchCluster(b, 3, alg)
		all := allLeafPhases()
		var paths []string
		List().Walk(func(path string, _ int, p Phase) {
			if len(p.Children) == 0 {
				paths = append(paths, path)
			}
		})
		for i, p := range all {
			b.Run(alg+"/"+paths[i], func(b *testing.B) {
				dir := b.TempDir()
				base := filepath.Join(dir, "base")
				// The first phase starts from an empty folder.
				if err := os.Mkdir(base, 0o755); err != nil {
					b.Fatal(err)
				}
				benchRun(b, c, base, all[:i])
				b.ResetTimer()
				for j := 0; b.Loop(); j++ {
					b.StopTimer()
					out := filepath.Join(dir, fmt.Sprint(j))
					if err := os.CopyFS(out, os.DirFS(base)); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					benchRun(b, c, out, []Phase{p})
				}
			})
		}
	}
}
