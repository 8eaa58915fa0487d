package workflow

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-staticpod/etcd-staticpod/badinput"
)

// testRun is a run's data as the engine sees it: the queue, and what it did.
type testRun struct {
	*Queue
	steps []string
}

func (r *testRun) Before() error             { r.steps = append(r.steps, "before"); return nil }
func (r *testRun) Ready() (func(), error)    { r.steps = append(r.steps, "ready"); return func() {}, nil }
func (r *testRun) Verify(files []File) error { r.steps = append(r.steps, "verify"); return nil }
func (r *testRun) step(s string) func(*testRun) error {
	return func(r *testRun) error { r.steps = append(r.steps, s); return nil }
}

func tree(r *testRun) Tree[*testRun] {
	write := func(name string) func(*testRun) error {
		return func(r *testRun) error {
			r.steps = append(r.steps, "run "+name)
			return r.WriteFile(filepath.Join(r.opts.Out, name), []byte(name), 0o600, 0o700)
		}
	}
	return Tree[*testRun]{
		{Name: "certs", Short: "Make certificates", Children: []Phase[*testRun]{
			{Name: "ca", Short: "Make the CA", Check: r.step("check ca"), Run: write("ca")},
			{Name: "server-certificate", Short: "Make the server's", Check: r.step("check server-certificate"), Run: write("server")},
		}},
		{Name: "bundle", Short: "Pack", Run: write("bundle")},
	}
}

func TestHelpLikeKubeadm(t *testing.T) {
	want := "The \"init\" command executes the following phases:\n" +
		"```\n" +
		"certs                Make certificates\n" +
		"  /ca                  Make the CA\n" +
		"  /server-certificate  Make the server's\n" +
		"bundle               Pack\n" +
		"```"
	if got := tree(&testRun{}).Help("init"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSelect(t *testing.T) {
	tr := tree(&testRun{})
	for _, tc := range []struct {
		skip []string
		want string
	}{
		{nil, "ca server-certificate bundle"},
		{[]string{"certs"}, "bundle"},
		{[]string{"certs/ca", "bundle"}, "server-certificate"},
	} {
		ps, err := tr.Select(tc.skip)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range ps {
			names = append(names, p.Name)
		}
		if got := strings.Join(names, " "); got != tc.want {
			t.Errorf("skip %v: got %q, want %q", tc.skip, got, tc.want)
		}
	}
	_, err := tr.Select([]string{"certs/nope"})
	if err == nil || err.Error() != `--skip-phases "certs/nope": no such phase (known: bundle, certs, certs/ca, certs/server-certificate)` {
		t.Errorf("got %v", err)
	}
}

func TestInsertAfter(t *testing.T) {
	tr := tree(&testRun{})
	got, err := tr.InsertAfter("certs", Phase[*testRun]{Name: "unit"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Names(), " ") != "certs unit bundle" || strings.Join(tr.Names(), " ") != "certs bundle" {
		t.Errorf("got %v from %v", got.Names(), tr.Names())
	}
	if _, err := tr.InsertAfter("nope", Phase[*testRun]{Name: "unit"}); err == nil {
		t.Error("inserted after a phase that is not there")
	}
	if _, err := tr.InsertAfter("", Phase[*testRun]{Name: "bundle"}); err == nil {
		t.Error("a second phase of the same name accepted")
	}
}

// TestRunOrder: every check before any phase runs, the files committed
// together at the end.
func TestRunOrder(t *testing.T) {
	out := t.TempDir()
	r := &testRun{Queue: NewQueue(QueueOptions{Out: out})}
	ps, err := tree(r).Select(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(r, ps); err != nil {
		t.Fatal(err)
	}
	want := "before,check ca,check server-certificate,ready,run ca,run server,run bundle,verify"
	if got := strings.Join(r.steps, ","); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, name := range []string{"ca", "server", "bundle"} {
		if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(b) != name {
			t.Errorf("%s: %q, %v", name, b, err)
		}
	}
}

// TestRunRefusesOrRollsBack: a failed check is bad input and nothing runs;
// a failed phase leaves nothing of what the run queued or made.
func TestRunRefusesOrRollsBack(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := &testRun{Queue: NewQueue(QueueOptions{Out: out})}
	ps, _ := tree(r).Select(nil)
	ps[1].Check = func(*testRun) error { return errors.New("does not fit") }
	err := Run(r, ps)
	if !badinput.Is(err) || strings.Contains(strings.Join(r.steps, ","), "run") {
		t.Errorf("got %v after %v", err, r.steps)
	}
	r = &testRun{Queue: NewQueue(QueueOptions{Out: out})}
	ps, _ = tree(r).Select(nil)
	ps[0].Run = func(r *testRun) error { return r.MkdirAll(filepath.Join(out, "made"), 0o700) }
	ps[2].Run = func(*testRun) error { return errors.New("disk on fire") }
	err = Run(r, ps)
	if err == nil || err.Error() != "phase bundle: disk on fire" || badinput.Is(err) {
		t.Errorf("got %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the failed run left %s: %v", out, err)
	}
}
