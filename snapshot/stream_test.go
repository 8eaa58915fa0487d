package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"
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
			sr := &streamReader{next: readerStream(tc.reader(bytes.NewReader(tc.data))), check: newTrailerCheck(), total: int64(len(good)), last: &last,
				progress: func(done, total int64) { reported = done }}
			err := atomicfile.WriteFileFrom(dst, sr, FileMode)
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
	if err := atomicfile.WriteFileFrom(dst, bytes.NewReader(fakeSnapshot(4)), FileMode); err == nil {
		t.Fatal("replaced a folder with a file")
	}
	if names := listDir(t, dir); len(names) != 1 || names[0] != "taken" {
		t.Errorf("folder holds %v after a failed write", names)
	}
	// Temp files a killed run leaves are the kind IsTemp knows.
	tmp, err := atomicfile.TempDir(filepath.Join(dir, "etcd.restore-x"))
	if err != nil {
		t.Fatal(err)
	}
	if !atomicfile.IsTemp(filepath.Base(tmp)) {
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
		// bbolt asserts on such a page in its check's own goroutine.
		{"damaged page with a digest to match", write("badpage", func() []byte {
			b, leaf := boltSnapshot(t)
			b[leaf+8] = 0x40
			sum := sha256.Sum256(b[:len(b)-trailerSize])
			return append(b[:len(b)-trailerSize], sum[:]...)
		}()), "has unexpected type/flags"},
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

// boltSnapshot is a real bbolt database laid out as etcd stores one, with
// live, overwritten and deleted keys, followed by its SHA-256 as etcd
// streams it, and the offset of a leaf page of the key bucket near its
// middle.
func boltSnapshot(t *testing.T) (snap []byte, leaf int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(schema.Meta.Name())
		if err != nil {
			return err
		}
		if err := meta.Put(schema.MetaStorageVersionName, []byte("3.6.0")); err != nil {
			return err
		}
		keys, err := tx.CreateBucket(schema.Key.Name())
		if err != nil {
			return err
		}
		for rev := int64(1); rev <= 3000; rev++ {
			key := fmt.Sprintf("/registry/pods/%04d", rev%1200)
			kv := &mvccpb.KeyValue{Key: []byte(key), Value: bytes.Repeat([]byte{byte(rev)}, 200), ModRevision: rev}
			rb := mvcc.RevToBytes(mvcc.Revision{Main: rev}, mvcc.NewRevBytes())
			// Every seventh write deletes the key.
			if rev%7 == 0 {
				rb = append(rb, 't')
				kv.Value = nil
			}
			v, err := kv.Marshal()
			if err != nil {
				return err
			}
			if err := keys.Put(rb, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	pages := len(data) / pageSize
	for i := pages / 2; i < pages && leaf == 0; i++ {
		hdr := data[i*pageSize:]
		// A page header: its id, then its flags (0x02: leaf).
		if binary.LittleEndian.Uint64(hdr) == uint64(i) && binary.LittleEndian.Uint16(hdr[8:]) == 0x02 {
			leaf = i * pageSize
		}
	}
	if leaf == 0 {
		t.Fatalf("no leaf page in the second half of %d pages", pages)
	}
	sum := sha256.Sum256(data)
	return append(data, sum[:]...), leaf
}

// TestSaveChecksBeforeTheRename streams a real database into a file as
// Save does: a page damaged in the middle of the stream is caught by the
// digest computed as the data arrives, the same damage with a digest to
// match by bbolt's check of the written pages, and either way the file
// from before stays.
func TestSaveChecksBeforeTheRename(t *testing.T) {
	good, leaf := boltSnapshot(t)
	damaged := bytes.Clone(good)
	// The page's flags: no longer a page type.
	damaged[leaf+8] = 0x40
	resummed := bytes.Clone(damaged)
	sum := sha256.Sum256(resummed[:len(resummed)-trailerSize])
	copy(resummed[len(resummed)-trailerSize:], sum[:])

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"sound", good, ""},
		{"page damaged in the stream", damaged, "the data is damaged"},
		{"page damaged before the digest was made", resummed, "page"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "etcd.db")
			if err := os.WriteFile(dst, []byte("the previous snapshot"), 0o600); err != nil {
				t.Fatal(err)
			}
			var last atomic.Int64
			checked := false
			var st etcdutl.Status
			sr := &streamReader{next: readerStream(iotest.HalfReader(bytes.NewReader(tc.data))), check: newTrailerCheck(), last: &last}
			check := structure(&st)
			err := atomicfile.WriteFileFromChecked(dst, sr, FileMode, func(tmp string) error {
				checked = true
				return check(tmp)
			})
			got, _ := os.ReadFile(dst)
			if names := listDir(t, dir); len(names) != 1 {
				t.Errorf("folder holds %v", names)
			}
			if tc.want == "" {
				if err != nil || !bytes.Equal(got, tc.data) {
					t.Fatalf("saving a sound stream: %v", err)
				}
				// The walk reports what etcdutl's status does.
				want, err := etcdutl.NewV3(zap.NewNop()).Status(dst)
				if err != nil {
					t.Fatal(err)
				}
				if st != want || st.TotalKey == 0 || st.Version != "3.6.0" {
					t.Errorf("status %+v, etcdutl says %+v", st, want)
				}
				return
			}
			var ie *IntegrityError
			t.Logf("refused: %v", err)
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line with %q", err, tc.want)
			}
			if string(got) != "the previous snapshot" {
				t.Errorf("a refused stream replaced the file")
			}
			// A wrong digest stops the save before bbolt reads anything.
			if wantChecked := tc.data[len(tc.data)-1] != good[len(good)-1]; checked != wantChecked {
				t.Errorf("structural check ran: %v, want %v", checked, wantChecked)
			}
		})
	}
}

// TestStreamStopsOnAWriteError: when the file cannot take more, a receive
// still pending is aborted and WriteTo returns only once it has ended.
func TestStreamStopsOnAWriteError(t *testing.T) {
	var last atomic.Int64
	release := make(chan struct{})
	sent := 0
	sr := &streamReader{
		next: func() ([]byte, error) {
			if sent < 3 {
				sent++
				return make([]byte, 32<<10), nil
			}
			<-release
			return nil, errors.New("aborted")
		},
		abort: func() { close(release) },
		check: newTrailerCheck(),
		last:  &last,
	}
	full := errors.New("no space left on device")
	_, err := sr.WriteTo(failingWriter{full})
	if !errors.Is(err, full) {
		t.Fatalf("got %v, want %v", err, full)
	}
	select {
	case <-release:
	default:
		t.Error("the pending receive was not aborted")
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// TestStreamReaderRead reads the stream without WriteTo, as a plain
// io.Reader: the same data and the same digest check.
func TestStreamReaderRead(t *testing.T) {
	good := fakeSnapshot(40)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"sound", good, ""},
		{"damaged", func() []byte { b := bytes.Clone(good); b[700]++; return b }(), "the data is damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last atomic.Int64
			sr := &streamReader{next: readerStream(iotest.HalfReader(bytes.NewReader(tc.data))), check: newTrailerCheck(), last: &last}
			got, err := io.ReadAll(iotest.OneByteReader(sr))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Errorf("read %d bytes (%v), want %d", len(got), err, len(tc.data))
			}
		})
	}
}
