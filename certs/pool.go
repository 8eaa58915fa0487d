package certs

import (
	"crypto"
	"runtime"
	"sync"
)

// KeyPool makes keys ahead of time on every core. Key generation (RSA above
// all) is nearly all of init's work, and a run knows up front how many keys it
// needs, so making them concurrently brings init close to that floor.
type KeyPool struct {
	algorithm string
	keys      chan result // buffered for every key: workers never block
	stop      chan struct{}
	wg        sync.WaitGroup

	mu    sync.Mutex
	taken int
	n     int
}

type result struct {
	key crypto.Signer
	err error
}

// NewKeyPool starts making n keys of algorithm on runtime.NumCPU() workers.
// Close it when done.
func NewKeyPool(algorithm string, n int) *KeyPool {
	p := &KeyPool{algorithm: algorithm, n: n, keys: make(chan result, n), stop: make(chan struct{})}
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	for range min(n, runtime.NumCPU()) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for range jobs {
				select {
				case <-p.stop:
					return
				default:
				}
				k, err := GenerateKey(algorithm)
				p.keys <- result{k, err}
			}
		}()
	}
	return p
}

// Key returns a key of algorithm: the next pooled one while the pool has
// keys of that kind coming, else a fresh one. A nil pool makes fresh keys.
func (p *KeyPool) Key(algorithm string) (crypto.Signer, error) {
	if p == nil || algorithm != p.algorithm {
		return GenerateKey(algorithm)
	}
	p.mu.Lock()
	pooled := p.taken < p.n
	if pooled {
		p.taken++
	}
	p.mu.Unlock()
	if !pooled {
		return GenerateKey(algorithm)
	}
	r := <-p.keys
	return r.key, r.err
}

// Close stops the workers after the key each is making; keys not taken are
// dropped.
func (p *KeyPool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.taken = p.n // later Key calls make fresh keys instead of waiting
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
}
