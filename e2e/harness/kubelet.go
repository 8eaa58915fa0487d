package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// kubeletPoll is how often the kubelet emulation reads the manifests;
// kubelet itself notices a changed staticPodPath file within seconds.
const kubeletPoll = 200 * time.Millisecond

// defaultGrace is a Pod's terminationGracePeriodSeconds when unset.
const defaultGrace = 30 * time.Second

// Kubelet follows every member's manifest as kubelet follows its
// staticPodPath: a manifest whose content changes restarts its member
// from the new content (SIGTERM, the Pod's grace period, SIGKILL, start),
// a removed manifest stops its member and a manifest that appears again
// starts it. A manifest that does not parse is reported and leaves the
// member as it is. Unlike kubelet, it does not restart a member whose
// process exits, so that tests keep Stop and Kill for themselves.
type Kubelet struct {
	c      *Cluster
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	busy   map[*Member]bool
	seen   map[*Member][]byte
	events []KubeletEvent
}

// KubeletEvent is one action of the kubelet emulation.
type KubeletEvent struct {
	Member string
	// At is when the changed manifest was seen.
	At time.Time
	// Action is "restart", "stop", "start" or "ignore" (a manifest that
	// does not parse).
	Action string
	// Image is the etcd image the member runs after the action, or the
	// one that failed to start.
	Image string
	// Took is the time from seeing the change to the new process.
	Took time.Duration
	Err  error
}

func (e KubeletEvent) String() string {
	s := fmt.Sprintf("%s: %s %s in %s", e.Member, e.Action, e.Image, e.Took.Round(time.Millisecond))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Kubelet starts following the members' manifests until ctx ends, Stop is
// called or the test ends. Members added later are followed too.
func (c *Cluster) Kubelet(ctx context.Context) *Kubelet {
	ctx, cancel := context.WithCancel(ctx)
	k := &Kubelet{c: c, cancel: cancel, done: make(chan struct{}), busy: map[*Member]bool{}, seen: map[*Member][]byte{}}
	// Before the cluster's own cleanup, which kills the members.
	c.t.Cleanup(k.Stop)
	go k.loop(ctx)
	return k
}

// Stop ends the emulation and waits for restarts under way.
func (k *Kubelet) Stop() {
	k.cancel()
	<-k.done
	k.wg.Wait()
}

// Events returns what the emulation did so far.
func (k *Kubelet) Events() []KubeletEvent {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]KubeletEvent(nil), k.events...)
}

func (k *Kubelet) loop(ctx context.Context) {
	defer close(k.done)
	tick := time.NewTicker(kubeletPoll)
	defer tick.Stop()
	for {
		for _, m := range k.c.members() {
			k.check(ctx, m)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check compares the member's manifest with what was last acted on and
// starts the action in the background, one at a time per member.
func (k *Kubelet) check(ctx context.Context, m *Member) {
	data, err := os.ReadFile(m.ManifestFile())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return // unreadable for now; kubelet retries too
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.busy[m] {
		return
	}
	seen, ok := k.seen[m]
	if !ok {
		seen = m.Manifest()
		k.seen[m] = seen
	}
	if bytes.Equal(seen, data) && (seen == nil) == (data == nil) {
		return
	}
	k.seen[m] = data
	at := time.Now()
	image := ""
	if data != nil {
		pod, err := parsePod(m.ManifestFile(), data)
		if err != nil {
			k.record(KubeletEvent{Member: m.Name, At: at, Action: "ignore", Image: m.Image(), Err: err})
			return
		}
		if c, err := etcdContainer(pod); err == nil {
			image = c.Image
		}
	}
	k.busy[m] = true
	k.wg.Go(func() {
		ev := k.apply(ctx, m, data)
		ev.At, ev.Took = at, time.Since(at)
		if ev.Err != nil && image != "" {
			ev.Image = image // the image that failed to start
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		k.busy[m] = false
		if ev.Err == nil && data != nil {
			// What Start really read, should the file have changed again.
			k.seen[m] = m.Manifest()
		}
		k.record(ev)
	})
}

// apply stops the member if it runs and starts it again from data, unless
// the manifest is gone.
func (k *Kubelet) apply(ctx context.Context, m *Member, data []byte) KubeletEvent {
	ev := KubeletEvent{Member: m.Name}
	grace := defaultGrace
	if g := m.Pod().Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	// The restart finishes even when the emulation stops meanwhile: a
	// member left half-restarted would confuse the test's cleanup.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace+30*time.Second)
	defer cancel()
	wasRunning := m.Running()
	if err := m.Stop(stopCtx, grace); err != nil {
		ev.Action, ev.Err = "stop", err
		return ev
	}
	switch {
	case data == nil:
		ev.Action = "stop"
		return ev
	case wasRunning:
		ev.Action = "restart"
	default:
		ev.Action = "start"
	}
	ev.Err = m.Start()
	ev.Image = m.Image()
	return ev
}

// record keeps the event and logs it; k.mu is held.
func (k *Kubelet) record(ev KubeletEvent) {
	k.events = append(k.events, ev)
	k.c.t.Logf("kubelet: %s", ev)
}
