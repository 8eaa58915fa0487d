package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// trailerSize is the SHA-256 digest etcd appends to the database in a
// snapshot stream; etcdutl refuses a restore whose digest does not match.
const trailerSize = sha256.Size

// hasTrailer mirrors etcd's own test for a digest at the end of a file:
// the database is a whole number of 512-byte sectors, the digest is not.
func hasTrailer(size int64) bool { return size%512 == trailerSize }

// Info describes a verified snapshot file.
type Info struct {
	// Path is the file.
	Path string `json:"path"`
	// Size is the file's size in bytes, digest included.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the whole file, as sha256sum prints it.
	SHA256 string `json:"sha256"`
	// Revision is the highest revision in the snapshot.
	Revision int64 `json:"revision"`
	// TotalKeys is the number of live keys.
	TotalKeys int `json:"totalKeys"`
	// DBSize is the database's size as bbolt counts it.
	DBSize int64 `json:"dbSize"`
	// Hash is etcd's CRC-32C of every bucket, as `etcdutl snapshot status`
	// prints it.
	Hash uint32 `json:"hash"`
	// StorageVersion is the storage version recorded in the database, such
	// as 3.6.0; empty for snapshots of etcd before v3.6.
	StorageVersion string `json:"storageVersion"`
}

// IntegrityError says a snapshot file is damaged or not a snapshot.
type IntegrityError struct {
	Path string
	Err  error
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("snapshot %s failed verification: %v", e.Path, e.Err)
}

func (e *IntegrityError) Unwrap() error { return e.Err }

// Verify checks a snapshot file the way a restore will: the SHA-256 digest
// etcd appended must match the database before it, and bbolt's consistency
// check must pass on every page. It returns what `etcdutl snapshot status`
// shows, and the file's own SHA-256.
func Verify(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &IntegrityError{Path: path, Err: errors.New("not a regular file")}
	}
	info := &Info{Path: path, Size: fi.Size()}
	if !hasTrailer(info.Size) {
		return nil, &IntegrityError{Path: path, Err: fmt.Errorf("%d bytes: no SHA-256 digest at the end, so not a snapshot as etcd streams it (a copied member/snap/db file has none)", info.Size)}
	}
	tr := newTrailerCheck()
	if _, err := io.Copy(tr, f); err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	if err := tr.check(); err != nil {
		return nil, &IntegrityError{Path: path, Err: err}
	}
	info.SHA256 = tr.fileSum()

	st, err := dbStatus(path)
	if err != nil {
		return nil, &IntegrityError{Path: path, Err: err}
	}
	info.Revision, info.TotalKeys, info.DBSize, info.Hash, info.StorageVersion = st.Revision, st.TotalKey, st.TotalSize, st.Hash, st.Version
	return info, nil
}

// dbStatus runs etcdutl's status, which walks every bucket inside bbolt's
// consistency check. Its errors span lines; ours stay on one.
func dbStatus(path string) (st etcdutl.Status, err error) {
	defer func() {
		// bbolt panics on some damage its checks do not catch first.
		if r := recover(); r != nil {
			err = fmt.Errorf("database unreadable: %v", r)
		}
	}()
	st, err = etcdutl.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return st, errors.New(strings.Join(strings.Fields(err.Error()), " "))
	}
	return st, nil
}

// trailerCheck is an io.Writer that hashes everything written to it (the
// file's SHA-256) and, separately, everything but the last trailerSize
// bytes (the database, whose digest those last bytes should be).
type trailerCheck struct {
	file, db hash.Hash
	tail     []byte
	n        int64
}

func newTrailerCheck() *trailerCheck {
	return &trailerCheck{file: sha256.New(), db: sha256.New(), tail: make([]byte, 0, 2*trailerSize)}
}

func (t *trailerCheck) Write(p []byte) (int, error) {
	t.n += int64(len(p))
	t.file.Write(p)
	// Hold back the last trailerSize bytes seen: they may be the digest.
	if len(p) >= trailerSize {
		t.db.Write(t.tail)
		t.db.Write(p[:len(p)-trailerSize])
		t.tail = append(t.tail[:0], p[len(p)-trailerSize:]...)
		return len(p), nil
	}
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - trailerSize; over > 0 {
		t.db.Write(t.tail[:over])
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return len(p), nil
}

// check reports whether what was written ends in the digest of the rest.
func (t *trailerCheck) check() error {
	if !hasTrailer(t.n) {
		return fmt.Errorf("%d bytes: no SHA-256 digest at the end", t.n)
	}
	if sum := t.db.Sum(nil); !bytes.Equal(sum, t.tail) {
		return fmt.Errorf("the SHA-256 of the database is %s but the digest at the end says %s: the data is damaged", hex.EncodeToString(sum), hex.EncodeToString(t.tail))
	}
	return nil
}

func (t *trailerCheck) fileSum() string { return hex.EncodeToString(t.file.Sum(nil)) }
