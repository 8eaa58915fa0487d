package snapshot_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// benchValue is the size of each value written: with 1500 of them the
// database holds about 150 MB, as a large Kubernetes cluster's does.
const benchValue = 100 << 10

// benchEnvInt is a positive whole number from the environment, else def.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

// etcdTool is the etcd tool named by env (ETCDCTL_BIN, ETCDUTL_BIN), else
// .bin/NAME; the benchmark is skipped without it.
func etcdTool(b *testing.B, env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	p := filepath.Join(etcdtest.ModuleRoot(b), ".bin", name)
	if _, err := os.Stat(p); err != nil {
		b.Skipf("no %s: set %s or run `make etcd`", name, env)
	}
	return p
}

// run runs a command and returns its stdout and how long it took, from
// exec to exit.
func run(b *testing.B, name string, args ...string) (string, time.Duration) {
	b.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err := cmd.Run()
	took := time.Since(begin)
	if err != nil {
		b.Fatalf("%s %q: %v\n%s", filepath.Base(name), args, err, stderr.String())
	}
	return stdout.String(), took
}

// sideBySide collects the times of our command and of etcd's own tool,
// measured alternately, and reports their medians and ratio.
type sideBySide struct {
	ours, theirs []time.Duration
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (s *sideBySide) report(b *testing.B, tool string, mb float64) {
	ours, theirs := median(s.ours), median(s.theirs)
	b.ReportMetric(float64(ours.Microseconds())/1000, "ms-ours")
	b.ReportMetric(float64(theirs.Microseconds())/1000, "ms-"+tool)
	b.ReportMetric(float64(ours)/float64(theirs), "x-"+tool)
	b.ReportMetric(mb, "db-MB")
	b.Logf("%d rounds on %.1f MB: ours %v, %s %v (medians), ratio %.2f; every round: ours %v, %s %v",
		len(s.ours), mb, ours, tool, theirs, float64(ours)/float64(theirs), rounded(s.ours), tool, rounded(s.theirs))
}

func rounded(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v.Round(time.Millisecond)
	}
	return out
}

// BenchmarkSnapshot fills a real three-member cluster with about
// $SNAPSHOT_BENCH_MB megabytes (150 unless set; make test asks for a few)
// in 100 KiB values and times, side by side in the same run:
//
//   - save: `etcd-staticpod snapshot save` and `etcdctl snapshot save` from
//     the same member with the same certificate;
//   - restore: `etcd-staticpod snapshot restore` of all three members and
//     one `etcdutl snapshot restore` of the same file;
//   - restore-node: `etcd-staticpod snapshot restore --node` of one member,
//     as each host runs it, and the same etcdutl restore.
//
// Each iteration runs $SNAPSHOT_BENCH_ROUNDS rounds (9 unless set), the
// two tools alternating which goes first; the metrics are the medians and
// their ratio (x-etcdctl, x-etcdutl: below 1 is faster than etcd's tool).
// ns/op is the time of a whole iteration and means nothing on its own.
func BenchmarkSnapshot(b *testing.B) {
	etcdctl := etcdTool(b, "ETCDCTL_BIN", "etcdctl")
	etcdutl := etcdTool(b, "ETCDUTL_BIN", "etcdutl")
	mb := benchEnvInt(b, "SNAPSHOT_BENCH_MB", 150)
	rounds := benchEnvInt(b, "SNAPSHOT_BENCH_ROUNDS", 9)
	bin := etcdtest.CLIBinary(b)
	dir := etcdtest.Bundles(b, etcdtest.ExecInit(bin), 3)
	c := etcdtest.Run(b, dir)
	ctx := context.Background()
	tgt, err := etcdops.Resolve(ctx, etcdops.Options{Bundle: filepath.Join(dir, "etcd01")})
	if err != nil {
		b.Fatal(err)
	}
	// 100 KiB values: ten a megabyte, 1500 for 150.
	fill(b, tgt, mb*10)

	// The same member and certificate for both tools; a follower, as
	// save would choose.
	m := c.Member("etcd02")
	tls := []string{"--cacert", tgt.Files.CA, "--cert", tgt.Files.Cert, "--key", tgt.Files.Key}
	work := b.TempDir()
	file := filepath.Join(work, "etcd.db")
	run(b, etcdctl, append([]string{"--endpoints", m.ClientURL, "snapshot", "save", file}, tls...)...)
	fi, err := os.Stat(file)
	if err != nil {
		b.Fatal(err)
	}
	size := float64(fi.Size()) / 1e6

	b.Run("save", func(b *testing.B) {
		var s sideBySide
		alternate(b, rounds, func(string) []func() {
			return []func(){
				func() {
					out := filepath.Join(work, "etcdctl.db")
					_, took := run(b, etcdctl, append([]string{"--endpoints", m.ClientURL, "snapshot", "save", out}, tls...)...)
					s.theirs = append(s.theirs, took)
					remove(b, out)
				},
				func() {
					out := filepath.Join(work, "ours.db")
					_, took := run(b, bin, append([]string{"snapshot", "save", out, "--endpoints", m.ClientURL}, tls...)...)
					s.ours = append(s.ours, took)
					remove(b, out)
				},
			}
		})
		s.report(b, "etcdctl", size)
	})

	// Our restore once first, for the initial cluster and peer URLs
	// etcdutl is given.
	var doc restoredDoc
	out, _ := run(b, bin, "snapshot", "restore", file, "--out", dir, "--token", "warmup", "-o", "json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Members) != 3 {
		b.Fatalf("restore printed %q (%v)", out, err)
	}
	for _, rm := range doc.Members {
		remove(b, rm.Written)
	}
	first := doc.Members[0]
	etcdutlRestore := func(token string) time.Duration {
		data := filepath.Join(work, "etcdutl-"+token)
		_, took := run(b, etcdutl, "snapshot", "restore", file, "--data-dir", data, "--name", first.Name,
			"--initial-cluster", doc.InitialCluster, "--initial-cluster-token", token,
			"--initial-advertise-peer-urls", strings.Join(first.PeerURLs, ","))
		remove(b, data)
		return took
	}

	b.Run("restore", func(b *testing.B) {
		var s sideBySide
		// The disk's share: the file copied three times and synced, as
		// three members' databases must be where the filesystem cannot
		// share blocks, against once, as etcdutl's.
		var once, thrice []time.Duration
		alternate(b, rounds, func(token string) []func() {
			return []func(){
				func() { once = append(once, copies(b, file, work, 1)) },
				func() { thrice = append(thrice, copies(b, file, work, 3)) },
				func() { s.theirs = append(s.theirs, etcdutlRestore(token)) },
				func() {
					out, took := run(b, bin, "snapshot", "restore", file, "--out", dir, "--token", token, "-o", "json")
					s.ours = append(s.ours, took)
					var doc restoredDoc
					if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Members) != 3 {
						b.Fatalf("restore printed %q (%v)", out, err)
					}
					for _, rm := range doc.Members {
						remove(b, rm.Written)
					}
				},
			}
		})
		s.report(b, "etcdutl", size)
		b.ReportMetric(float64(median(once).Microseconds())/1000, "ms-copy1")
		b.ReportMetric(float64(median(thrice).Microseconds())/1000, "ms-copy3")
		b.Logf("the file copied and synced: once %v, three times at once %v (medians); every round: %v, %v",
			median(once).Round(time.Millisecond), median(thrice).Round(time.Millisecond), rounded(once), rounded(thrice))
	})

	// What runs on each host at once when every host restores its own
	// member: one member, ours against etcdutl's.
	b.Run("restore-node", func(b *testing.B) {
		var s sideBySide
		alternate(b, rounds, func(token string) []func() {
			return []func(){
				func() { s.theirs = append(s.theirs, etcdutlRestore(token)) },
				func() {
					root := filepath.Join(work, "root-"+token)
					if err := os.Mkdir(root, 0o755); err != nil {
						b.Fatal(err)
					}
					out, took := run(b, bin, "snapshot", "restore", file, "--config", filepath.Join(dir, "cluster.yaml"),
						"--node", first.Name, "--root", root, "--token", token, "-o", "json")
					s.ours = append(s.ours, took)
					var doc restoredDoc
					if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Members) != 1 || doc.Members[0].Name != first.Name {
						b.Fatalf("restore --node printed %q (%v)", out, err)
					}
					remove(b, root)
				},
			}
		})
		s.report(b, "etcdutl", size)
	})
}

// alternate runs the benchmark's iterations, each of rounds rounds of the
// tools made for the round's own token, every other round in reverse
// order so that no tool always goes first.
func alternate(b *testing.B, rounds int, tools func(token string) []func()) {
	for i := 0; b.Loop(); i++ {
		for r := range rounds {
			fs := tools(fmt.Sprintf("bench%d-%d", i, r))
			if r%2 == 1 {
				slices.Reverse(fs)
			}
			for _, f := range fs {
				f()
			}
		}
	}
}

// copies copies file into n new files under dir at once, each synced, and
// returns how long that took; the files are removed.
func copies(b *testing.B, file, dir string, n int) time.Duration {
	b.Helper()
	begin := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			src, err := os.Open(file)
			if err != nil {
				errs[i] = err
				return
			}
			defer src.Close()
			dst, err := os.Create(filepath.Join(dir, fmt.Sprintf("copy-%d", i)))
			if err != nil {
				errs[i] = err
				return
			}
			defer dst.Close()
			if _, err := io.Copy(dst, src); err != nil {
				errs[i] = err
				return
			}
			errs[i] = dst.Sync()
		})
	}
	wg.Wait()
	took := time.Since(begin)
	for i := range n {
		remove(b, filepath.Join(dir, fmt.Sprintf("copy-%d", i)))
		if errs[i] != nil {
			b.Fatal(errs[i])
		}
	}
	return took
}

// fill writes n values of benchValue bytes with a few writers at once.
func fill(b *testing.B, tgt *etcdops.Target, n int) {
	b.Helper()
	cli, err := tgt.Client()
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	begin := time.Now()
	const writers = 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			value := make([]byte, benchValue)
			for i := w; i < n; i += writers {
				// Random bytes: nothing on the way may shrink them.
				rand.Read(value)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := cli.Put(ctx, fmt.Sprintf("/registry/bench/%05d", i), string(value))
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("fill: %v", err)
	}
	b.Logf("wrote %d values of %d bytes in %v", n, benchValue, time.Since(begin).Round(time.Millisecond))
}

func remove(b *testing.B, path string) {
	b.Helper()
	if err := os.RemoveAll(path); err != nil {
		b.Fatal(err)
	}
}
