package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"runtime/debug"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	bolt "go.etcd.io/bbolt"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"google.golang.org/protobuf/encoding/protowire"
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
	// A named pipe must not hang the open; the file is streamed, never
	// read whole.
	f, fi, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	info := &Info{Path: path, Size: fi.Size()}
	if !hasTrailer(info.Size) {
		return nil, &IntegrityError{Path: path, Err: fmt.Errorf("%d bytes: no SHA-256 digest at the end, so not a snapshot as etcd streams it (a copied member/snap/db file has none)", info.Size)}
	}
	tr := newTrailerCheck()
	var readErr error
	st, err := dbStatus(path, func() error {
		if _, err := io.CopyBuffer(tr, f, make([]byte, chunkSize)); err != nil {
			readErr = err
			return err
		}
		return tr.check()
	})
	if readErr != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", path, readErr)
	}
	if err != nil {
		return nil, &IntegrityError{Path: path, Err: err}
	}
	info.SHA256 = tr.fileSum()
	info.setStatus(st)
	return info, nil
}

// setStatus copies what etcdutl's status found.
func (i *Info) setStatus(st etcdutl.Status) {
	i.Revision, i.TotalKeys, i.DBSize, i.Hash, i.StorageVersion = st.Revision, st.TotalKey, st.TotalSize, st.Hash, st.Version
}

// dbStatus is what `etcdutl snapshot status` reports, computed as it
// does: bbolt's consistency check of every page must pass, and a CRC-32C
// over every bucket's name and every key and value in order gives Hash,
// the last key of the key bucket the revision, and the keys not deleted
// since their last write TotalKey. One thing differs, for speed: the walk
// reads only the key out of each stored KeyValue where etcdutl decodes
// (and copies) the whole value. Errors stay on one line.
//
// digest, when set, checks the file's digest while the walk runs, and
// bbolt's check runs only once both passed; without it (the digest matched
// already) the check and the walk run at once.
func dbStatus(path string, digest func() error) (etcdutl.Status, error) {
	digested := make(chan error, 1)
	if digest == nil {
		digested <- nil
	} else {
		go func() { digested <- digest() }()
	}
	var st etcdutl.Status
	err := walkAndCheck(path, &st, digested, digest == nil)
	// A wrong digest says more than whatever bbolt made of damaged pages.
	if derr := <-digested; derr != nil {
		return st, derr
	}
	if err != nil {
		return st, oneLineErr(err)
	}
	return st, nil
}

// walkAndCheck walks the database, then, once the digest is in and
// matched, runs bbolt's check. It puts the digest's result back.
func walkAndCheck(path string, st *etcdutl.Status, digested chan error, digestKnown bool) (err error) {
	// bbolt reads the file through a memory map: damage that points past
	// its end faults, which becomes a panic here instead of a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverDB(&err)
	// The free list is read here rather than in the check's goroutine,
	// where a damaged one would crash the process.
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		return err
	}
	defer db.Close()
	// Every page bbolt's check reads is read here first, so that damage
	// the check would crash on (it asserts in a goroutine of its own) is
	// an error instead. Without the values this takes little.
	if err := db.View(readTree); err != nil {
		return err
	}
	if digestKnown {
		// The digest matched already: the check and the walk at once.
		checked := make(chan error, 1)
		go func() { checked <- check(db) }()
		werr := walk(db, st)
		if cerr := <-checked; cerr != nil {
			return cerr
		}
		return werr
	}
	if err := walk(db, st); err != nil {
		return err
	}
	derr := <-digested
	digested <- derr
	if derr != nil {
		return nil
	}
	return check(db)
}

// check is bbolt's consistency check of every page.
func check(db *bolt.DB) (err error) {
	defer recoverDB(&err)
	var problems []string
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		return nil
	})
	if err == nil && len(problems) > 0 {
		err = fmt.Errorf("snapshot file integrity check failed. %d errors found: %s", len(problems), strings.Join(problems, "; "))
	}
	return err
}

// readTree reads every bucket's branch and leaf pages.
func readTree(tx *bolt.Tx) error {
	c := tx.Cursor()
	for name, _ := c.First(); name != nil; name, _ = c.Next() {
		if err := readAll(tx.Bucket(name)); err != nil {
			return err
		}
	}
	return nil
}

// recoverDB turns a panic of bbolt's into an error: it panics on some
// damage its checks do not catch first.
func recoverDB(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("database unreadable: %v", r)
	}
}

// walk hashes every bucket, key and value and counts the live keys.
func walk(db *bolt.DB, st *etcdutl.Status) (err error) {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	live := map[string]struct{}{}
	err = db.View(func(tx *bolt.Tx) error {
		st.TotalSize = tx.Size()
		if v := schema.ReadStorageVersionFromSnapshot(tx); v != nil {
			st.Version = v.String()
		}
		c := tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("nil bucket: %q", name)
			}
			h.Write(name)
			isKey := bytes.Equal(name, schema.Key.Name())
			err := b.ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write(v)
				if !isKey {
					return nil
				}
				rev, err := revision(k)
				if err != nil {
					return fmt.Errorf("cannot parse revision key: %q err: %w", k, err)
				}
				st.Revision = rev.Main
				key, err := kvKey(v)
				if err != nil {
					return fmt.Errorf("cannot unmarshal value, key: %q err: %w", k, err)
				}
				if mvcc.IsTombstone(k) {
					delete(live, string(key))
				} else {
					live[string(key)] = struct{}{}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("error during bucket key iteration, name: %q err: %w", name, err)
			}
		}
		return nil
	})
	st.TotalKey = len(live)
	st.Hash = h.Sum32()
	return err
}

// readAll reads every branch and leaf page of a bucket and the buckets in
// it (etcd nests none).
func readAll(b *bolt.Bucket) error {
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return readAll(b.Bucket(k))
		}
		return nil
	})
}

// revision decodes a key of the key bucket; mvcc panics on a bad one.
func revision(k []byte) (rev mvcc.Revision, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return mvcc.BytesToRev(k), nil
}

// kvKey is the key field of an encoded mvccpb.KeyValue, reading past the
// other fields without decoding them.
func kvKey(b []byte) ([]byte, error) {
	var key []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			key, b = v, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return key, nil
}

// oneLineErr keeps an error on one line.
func oneLineErr(err error) error {
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// chunkSize is how much a snapshot is read or written at a time: large
// enough that system calls cost little next to hashing the data.
const chunkSize = 1 << 20

// trailerCheck is an io.Writer that hashes everything written to it but
// the last trailerSize bytes (the database, whose digest those last bytes
// should be). The file's own SHA-256 continues from the same state, so
// both take one pass over the data.
type trailerCheck struct {
	db   hash.Cloner
	tail []byte
	n    int64
}

func newTrailerCheck() *trailerCheck {
	return &trailerCheck{db: sha256.New().(hash.Cloner), tail: make([]byte, 0, 2*trailerSize)}
}

func (t *trailerCheck) Write(p []byte) (int, error) {
	t.n += int64(len(p))
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

// fileSum is the hex SHA-256 of everything written.
func (t *trailerCheck) fileSum() string {
	h, err := t.db.Clone()
	if err != nil {
		// The standard library's SHA-256 always clones.
		panic(err)
	}
	h.Write(t.tail)
	return hex.EncodeToString(h.Sum(nil))
}
