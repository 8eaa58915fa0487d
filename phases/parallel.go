package phases

import (
	"runtime"
	"sync"
)

// forEach calls f(0) … f(n-1) on every core and returns the error of the
// lowest i that failed, the one a loop would have stopped at. Per-host work
// (signing, rendering YAML, packing) is independent, and a run's wall time
// would otherwise be a sum over hosts. f must only write to its own index
// of whatever it fills.
func forEach(n int, f func(i int) error) error {
	if n == 1 {
		return f(0)
	}
	errs := make([]error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), n) {
		wg.Go(func() {
			for i := range next {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
