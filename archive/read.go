package archive

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/etcd-staticpod/etcd-staticpod/safefile"
)

// Entry is one member of an archive.
type Entry struct {
	Header *tar.Header
	Data   []byte
}

// ReadTarGz returns every entry of a gzip'd tar, for checking what an archive
// ships before it leaves the machine.
func ReadTarGz(path string) ([]Entry, error) {
	f, _, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read archive %s: %w", path, err)
	}
	tr := tar.NewReader(zr)
	var out []Entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive %s: %w", path, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read archive %s: %s: %w", path, h.Name, err)
		}
		out = append(out, Entry{Header: h, Data: data})
	}
}
