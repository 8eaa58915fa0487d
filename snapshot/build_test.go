package snapshot

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestPatchMakesTheCopyEqual: the pages finishing changed, and what it
// added at the end, are found and copied into a raw copy, which then holds
// exactly the finished database; a copy longer than it is cut to its size.
func TestPatchMakesTheCopyEqual(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, 3*chunkSize+5*pageSize)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name    string
		changed []int // pages changed
		size    int   // of the finished database
	}{
		{"nothing changed", nil, len(raw)},
		{"meta pages and one in the middle", []int{0, 1, 158}, len(raw)},
		{"pages across a chunk's end", []int{255, 256, 257}, len(raw)},
		{"grown by three pages", []int{3}, len(raw) + 3*pageSize},
		{"the last page, and shorter", []int{2}, len(raw) - 2*pageSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			built := append([]byte{}, raw...)
			for len(built) < tc.size {
				built = append(built, byte(rng.Uint32()))
			}
			built = built[:tc.size]
			for _, p := range tc.changed {
				built[p*pageSize+7] ^= 0xff
			}
			builtPath, rawPath := filepath.Join(dir, "built"), filepath.Join(dir, "raw")
			if err := os.WriteFile(builtPath, built, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(rawPath, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			src, err := os.Open(builtPath)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			spans, err := changedPages(src, rawPath)
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, s := range spans {
				n += s.n
			}
			if want := int64(len(tc.changed))*pageSize + int64(max(0, tc.size-len(raw))); n != want {
				t.Errorf("spans %v: %d bytes, want %d", spans, n, want)
			}
			dst, err := os.OpenFile(rawPath, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := patch(dst, src, spans); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(rawPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, built) {
				t.Errorf("the patched copy (%d bytes) differs from the finished database (%d bytes)", len(got), len(built))
			}
		})
	}
}
