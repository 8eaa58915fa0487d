// Package archive packs a host's staged files into the tarball a user copies
// to that host and unpacks with "tar -C / -xzf", and writes the SHA256SUMS
// that lets them check the copy.
package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/etcd-staticpod/etcd-staticpod/atomicfile"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
	"github.com/etcd-staticpod/etcd-staticpod/safefile"
	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
)

// modTimeUnix (2000-01-01T00:00:00Z) is the time stamp of every entry. A
// fixed value makes identical input give identical bytes; not the Unix epoch,
// which some tools read as "unset".
const modTimeUnix = 946684800

// MaxFile bounds a file packed into an archive, and an archive read back:
// archives are built in memory. A host folder holds certificates, keys and
// configuration of a few kilobytes each, and at most this command's own
// binary (tens of megabytes).
const MaxFile = 256 << 20

// Modes of what this package writes.
const ()

// WriteTarGz writes dst, a gzip'd tar of every folder and regular file under
// srcDir, named relative to srcDir ("etc/kubernetes/pki/etcd/ca.crt"), so that
// "tar -C / -xzf dst" puts them in place. Entries are owned by root (uid and
// gid 0, names root) and keep their mode as on disk; srcDir itself is not an
// entry, since extracting "./" would set the mode of / to that of srcDir.
// Order is by name within each folder, a folder before what it holds, and
// every entry has the same time stamp, so the same tree gives the same bytes.
// Anything else (symlink, device, socket, pipe) is an error naming it.
// Temp files (atomicfile.IsTemp) and the lock file are never packed.
//
// Extracting as root, GNU tar gives a folder that already exists the mode and
// time stamp of its entry, /etc included: the staged folders must carry the
// modes they should have on the host.
//
// dst is written with mode 0600 through a temp file in its folder that is
// synced and renamed over it, so a reader never sees half an archive and a
// failure leaves no temp file.
func WriteTarGz(srcDir, dst string) error { return new(Packer).WriteTarGz(srcDir, dst) }

// WriteTarGz is WriteTarGz with p's compressor and Check.
func (p *Packer) WriteTarGz(srcDir, dst string) error {
	if err := checkOutside(srcDir, dst); err != nil {
		return err
	}
	// Lstat: a link in place of the folder is refused, where os.DirFS would
	// follow it.
	fi, err := os.Lstat(srcDir)
	if err != nil {
		return fmt.Errorf("archive %s: %w", srcDir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("archive %s: %s, not a folder", srcDir, kind(fi.Mode()))
	}
	// The archive is built in memory: host bundles are a few certificates and
	// config files, and the bytes can then go through the one atomic write.
	data, err := p.Pack(os.DirFS(srcDir), srcDir)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(dst, data, layout.ModeArchive); err != nil {
		return fmt.Errorf("archive %s: %w", srcDir, err)
	}
	return nil
}

// checkOutside refuses a dst inside srcDir: a second run would pack the
// first run's archive.
func checkOutside(srcDir, dst string) error {
	src, err := filepath.Abs(srcDir)
	if err != nil {
		return fmt.Errorf("archive %s: %w", srcDir, err)
	}
	d, err := filepath.Abs(dst)
	if err != nil {
		return fmt.Errorf("archive %s: %w", dst, err)
	}
	if rel, err := filepath.Rel(src, d); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("archive %s: destination %s is inside the folder being archived", srcDir, dst)
	}
	return nil
}

// A Packer makes archives one after another, reusing its compressor, whose
// buffers cost more to allocate and clear than packing a host's few files.
// It is not safe for concurrent use; give each goroutine its own.
type Packer struct {
	zw *gzip.Writer
	// Check, when set, sees every regular file before it is packed, with
	// its path (dir joined with its name); an error stops the packing.
	Check func(path string, data []byte) error
}

// Pack returns what WriteTarGz writes, for the tree fsys holds: every folder
// and regular file under its root, in the same order and with the same
// headers. dir is the folder fsys stands for, used only in error messages.
// The tree can be one that is not on disk yet, such as files queued for
// writing laid over the folder that will receive them.
func (p *Packer) Pack(fsys fs.FS, dir string) ([]byte, error) {
	fail := func(err error) ([]byte, error) { return nil, fmt.Errorf("archive %s: %w", dir, err) }
	fi, err := fs.Stat(fsys, ".")
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return fail(pe.Err) // the path is dir itself
	}
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() {
		return fail(fmt.Errorf("%s, not a folder", kind(fi.Mode())))
	}
	var buf bytes.Buffer
	// A zero gzip header (no name, no time) keeps the output reproducible;
	// keys and certificates barely compress, so the fastest level is enough.
	if p.zw == nil {
		if p.zw, err = gzip.NewWriterLevel(&buf, gzip.BestSpeed); err != nil {
			return fail(err)
		}
	} else {
		p.zw.Reset(&buf)
	}
	tw := tar.NewWriter(p.zw)
	// WalkDir visits entries in lexical order and a folder before its content.
	err = fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		if atomicfile.IsTemp(d.Name()) || d.Name() == layout.LockFile {
			// Not part of the host's files: a temp file is a write under
			// way or one a killed run left (part of a key, maybe), and
			// the lock file is the run's own.
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		path := filepath.Join(dir, filepath.FromSlash(name))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			return tw.WriteHeader(header(name+"/", tar.TypeDir, info.Mode(), 0))
		case info.Mode().IsRegular():
			if info.Size() > MaxFile {
				return fmt.Errorf("%s: larger than %d MiB, more than a host folder ever holds", path, MaxFile>>20)
			}
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if p.Check != nil {
				if err := p.Check(path, data); err != nil {
					return err
				}
			}
			// The size comes from what was read, so a file that changes
			// under us cannot make the header and the content disagree.
			if err := tw.WriteHeader(header(name, tar.TypeReg, info.Mode(), int64(len(data)))); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if _, err := tw.Write(data); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return nil
		default:
			return &safefile.Error{Path: path, Reason: kind(info.Mode()) + "; only regular files and folders can be archived"}
		}
	})
	if err != nil {
		return fail(err)
	}
	if err := tw.Close(); err != nil {
		return fail(err)
	}
	if err := p.zw.Close(); err != nil {
		return fail(err)
	}
	return buf.Bytes(), nil
}

func header(name string, typ byte, mode fs.FileMode, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     tarMode(mode),
		Size:     size,
		Uid:      0,
		Gid:      0,
		Uname:    "root",
		Gname:    "root",
		ModTime:  time.Unix(modTimeUnix, 0),
		// Format left unset: the writer uses plain USTAR when the name fits
		// and PAX only for a longer one, and never records access or change
		// times, which would differ between runs.
	}
}

// tarMode maps Go's mode bits to the tar header's, which use the Unix values
// for setuid, setgid and sticky.
func tarMode(m fs.FileMode) int64 {
	v := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsRegular():
		return "a regular file"
	default:
		return "an unsupported file type (mode " + m.String() + ")"
	}
}

// WriteSHA256Sums writes dir/SHA256SUMS (see SHA256Sums) for files, names
// relative to dir, read from disk. It is written atomically with mode 0644.
func WriteSHA256Sums(dir string, files []string) error {
	sums := make([]Sum, 0, len(files))
	for _, name := range files {
		if err := checkSumName(name); err != nil {
			return fmt.Errorf("%s in %s: %w", layout.SumsFile, dir, err)
		}
		data, err := safefile.ReadFile(filepath.Join(dir, filepath.FromSlash(name)), MaxFile)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", layout.SumsFile, dir, err)
		}
		sums = append(sums, Sum{Name: name, Data: data})
	}
	b, err := SHA256Sums(sums)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", layout.SumsFile, dir, err)
	}
	path := filepath.Join(dir, layout.SumsFile)
	if err := atomicfile.WriteFile(path, b, layout.ModeSums); err != nil {
		return fmt.Errorf("%s: %w", layout.SumsFile, err)
	}
	return nil
}

// CopyCommand is the shell line that copies a host's archive (local, its
// NAME.tar.gz) to the host at address, unpacks it at / keeping the modes
// and times of the folders the host has (/etc ...), reloads systemd and
// runs start, which starts what the archive brought.
func CopyCommand(local, address, start string) string {
	remote := "/tmp/" + filepath.Base(local)
	unpack := "tar --no-overwrite-dir -C / -xzf " + remote + " && rm " + remote + " && systemctl daemon-reload && " + start
	return shellcmd.Join("scp", local, shellcmd.SCPTarget("root", address, "/tmp/")) + " && " +
		shellcmd.Join("ssh", shellcmd.SSHTarget("root", address), unpack)
}

// UpdateSHA256Sums adds files (names relative to dir) to dir/SHA256SUMS,
// keeping the files it lists that still exist, and writes it again from
// what is on disk.
func UpdateSHA256Sums(dir string, add ...string) error {
	var names []string
	if data, err := safefile.Read(filepath.Join(dir, layout.SumsFile)); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if _, name, ok := strings.Cut(sc.Text(), "  "); ok {
				names = append(names, name)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", layout.SumsFile, err)
	}
	names = append(names, add...)
	slices.Sort(names)
	var keep []string
	for _, n := range slices.Compact(names) {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(n))); err == nil {
			keep = append(keep, n)
		}
	}
	return WriteSHA256Sums(dir, keep)
}

// Sum is one file SHA256Sums lists: its name relative to the SHA256SUMS
// file's folder, and its content.
type Sum struct {
	Name string
	Data []byte
}

// SHA256Sums returns a SHA256SUMS file in the format of sha256sum, one
// "<hex>  <name>" line a file, sorted by name, so that
// "sha256sum -c SHA256SUMS" in that folder checks them.
func SHA256Sums(files []Sum) ([]byte, error) {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b Sum) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	for i, f := range sorted {
		if err := checkSumName(f.Name); err != nil {
			return nil, err
		}
		if i > 0 && sorted[i-1].Name == f.Name {
			return nil, fmt.Errorf("%q listed twice", f.Name)
		}
		sum := sha256.Sum256(f.Data)
		b.WriteString(hex.EncodeToString(sum[:]) + "  " + f.Name + "\n")
	}
	return []byte(b.String()), nil
}

// checkSumName accepts the names sha256sum -c reads back as written: it
// escapes a name with a backslash or a line break, and the name must stay
// inside dir.
func checkSumName(name string) error {
	switch {
	case name == "":
		return errors.New("empty file name")
	case strings.ContainsAny(name, "\\\n\r"):
		return fmt.Errorf("file name %q: backslashes and line breaks are not supported", name)
	case !filepath.IsLocal(filepath.FromSlash(name)):
		return fmt.Errorf("file name %q: must be a relative path inside the folder", name)
	}
	return nil
}
