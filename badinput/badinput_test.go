package badinput

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestMarksThroughWrapping(t *testing.T) {
	base := New("--timeout", "5x", "not a duration")
	if got, want := base.Error(), `--timeout "5x": not a duration`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("phase certs: %w", base)
	if !Is(wrapped) {
		t.Error("a wrapped bad input is not recognised")
	}
	if Is(errors.New("disk full")) || Is(nil) {
		t.Error("an ordinary error counts as bad input")
	}
	if Wrap(nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if Wrap(base) != base {
		t.Error("Wrap re-wrapped an error already marked")
	}
	w := Wrap(fs.ErrNotExist)
	if !Is(w) || !errors.Is(w, fs.ErrNotExist) || w.Error() != fs.ErrNotExist.Error() {
		t.Errorf("Wrap changed the error: %v", w)
	}
	if got := Errorf("host %q: bad", "a").Error(); got != `host "a": bad` {
		t.Errorf("Errorf = %q", got)
	}
}
