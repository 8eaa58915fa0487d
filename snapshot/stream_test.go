package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/etcd-staticpod/etcd-staticpod/certs"
)

// fakeSnapshot is data shaped like etcd's stream: whole 512-byte sectors,
// then their SHA-256.
func fakeSnapshot(sectors int) []byte {
	db := bytes.Repeat([]byte("etcd snapshot data, sector by sector. "), sectors*512/38+1)[:sectors*512]
	sum := sha256.Sum256(db)
	return append(db, sum[:]...)
}

// listDir is every name in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestStreamReaderChecksTheDigest(t *testing.T) {
	good := fakeSnapshot(300)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	wrongDigest := bytes.Clone(good)
	wrongDigest[len(wrongDigest)-1] ^= 0x80

	for _, tc := range []struct {
		name string
		data []byte
		// reader wraps the data as the network might deliver it.
		reader func(io.Reader) io.Reader
		want   string
	}{
		{"whole", good, func(r io.Reader) io.Reader { return r }, ""},
		// A byte at a time: the digest straddles every read.
		{"one byte per read", good, iotest.OneByteReader, ""},
		{"half reads", good, iotest.HalfReader, ""},
		{"damaged data", flipped, func(r io.Reader) io.Reader { return r }, "the data is damaged"},
		{"damaged digest", wrongDigest, iotest.HalfReader, "the data is damaged"},
		{"truncated", good[:len(good)-100], func(r io.Reader) io.Reader { return r }, "no SHA-256 digest at the end"},
		{"broken connection", good, func(r io.Reader) io.Reader {
			return io.MultiReader(io.LimitReader(r, 4096), iotest.ErrReader(errors.New("connection reset")))
		}, "connection reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "etcd.db")
			// A snapshot from before stays until a new one is whole and sound.
			if err := os.WriteFile(dst, []byte("the previous snapshot"), 0o600); err != nil {
				t.Fatal(err)
			}
			var last atomic.Int64
			var reported int64
			sr := &streamReader{r: tc.reader(bytes.NewReader(tc.data)), check: newTrailerCheck(), total: int64(len(good)), last: &last,
				progress: func(done, total int64) { reported = done }}
			err := certs.WriteFileFrom(dst, sr, FileMode)
			names := listDir(t, dir)
			if len(names) != 1 || names[0] != "etcd.db" {
				t.Errorf("folder holds %v, want only etcd.db", names)
			}
			got, rerr := os.ReadFile(dst)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tc.want != "" {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
					t.Fatalf("got %v, want an error with %q", err, tc.want)
				}
				if string(got) != "the previous snapshot" {
					t.Errorf("a failed save replaced the file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.data) || reported != int64(len(tc.data)) {
				t.Errorf("wrote %d bytes, reported %d, want %d", len(got), reported, len(tc.data))
			}
			sum := sha256.Sum256(tc.data)
			if sr.check.fileSum() != hex.EncodeToString(sum[:]) {
				t.Errorf("file SHA-256 %s, want %x", sr.check.fileSum(), sum)
			}
			fi, err := os.Stat(dst)
			if err != nil || fi.Mode().Perm() != FileMode {
				t.Errorf("mode %v (%v), want %v", fi.Mode(), err, os.FileMode(FileMode))
			}
		})
	}
}

func TestWriteFileFromLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	// The target is a folder: the rename fails after the data was written.
	dst := filepath.Join(dir, "taken")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFileFrom(dst, bytes.NewReader(fakeSnapshot(4)), FileMode); err == nil {
		t.Fatal("replaced a folder with a file")
	}
	if names := listDir(t, dir); len(names) != 1 || names[0] != "taken" {
		t.Errorf("folder holds %v after a failed write", names)
	}
	// Temp files a killed run leaves are the kind IsTemp knows.
	tmp, err := certs.TempDir(filepath.Join(dir, "etcd.restore-x"))
	if err != nil {
		t.Fatal(err)
	}
	if !certs.IsTemp(filepath.Base(tmp)) {
		t.Errorf("temp folder %s is not recognised as temp", tmp)
	}
	if fi, err := os.Stat(tmp); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("temp folder mode %v (%v), want 0700", fi.Mode(), err)
	}
}

func TestVerifyRejects(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"empty", write("empty", nil), "0 bytes: no SHA-256 digest"},
		{"no digest", write("nodigest", bytes.Repeat([]byte{1}, 4096)), "4096 bytes: no SHA-256 digest"},
		{"digest matches but no database", write("notbolt", fakeSnapshot(8)), "failed verification"},
		{"damaged", write("damaged", func() []byte { b := fakeSnapshot(8); b[10]++; return b }()), "the data is damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.path)
			var ie *IntegrityError
			if !errors.As(err, &ie) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) || bytes.ContainsAny([]byte(err.Error()), "\n") {
				t.Errorf("got %v, want one line with %q", err, tc.want)
			}
		})
	}
	if _, err := Verify(filepath.Join(dir, "missing")); err == nil || errors.As(err, new(*IntegrityError)) {
		t.Errorf("missing file: %v", err)
	}
}
