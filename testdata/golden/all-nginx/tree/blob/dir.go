package blob

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// DefaultContentType is stored when a Put gives none.
const DefaultContentType = "application/octet-stream"

const (
	objectsDir = "objects" // the objects, one file per key, nested like the key
	tmpDir     = "tmp"     // files being written; renamed into objects when complete

	// header starts every object file and carries its content type, so the
	// data and its type are replaced together by one atomic rename (a
	// sidecar file would need two renames and could pair a new type with
	// old data). The rest of the file is the object's bytes.
	header = "Content-Type: "
	// maxHeader bounds the first line, which Get reads into a buffer.
	maxHeader = 512

	// staleTmp is the age after which a temp file is a crash leftover.
	// Younger ones may belong to a Put in flight in another process that
	// shares the directory (for example during a restart).
	staleTmp = time.Hour
)

// Dir is the single-node Store: objects are files under a local directory.
// It is not shared between instances (cluster mode refuses it).
//
// Every access goes through an os.Root, so no key, ".." or symbolic link
// can reach a file outside the directory, whatever ValidKey lets through.
// Writes go to a temp file in the same directory tree, are fsynced and then
// renamed over the old object, so readers see the whole old or the whole
// new object and a crash leaves no half-written object.
type Dir struct {
	root *os.Root
}

var _ Store = (*Dir)(nil)

// OpenDir opens (and creates) the directory at dir. Close releases it.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("blob: create directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: open directory: %w", err)
	}
	for _, sub := range []string{objectsDir, tmpDir} {
		if err := root.MkdirAll(sub, 0o750); err != nil {
			root.Close()
			return nil, fmt.Errorf("blob: create %s: %w", path.Join(dir, sub), err)
		}
	}
	d := &Dir{root: root}
	d.removeStaleTmp()
	return d, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Put implements Store.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (err error) {
	if err := ValidKey(key); err != nil {
		return err
	}
	if contentType == "" {
		contentType = DefaultContentType
	}
	if len(header)+len(contentType)+1 > maxHeader || strings.ContainsAny(contentType, "\r\n") {
		return fmt.Errorf("blob: put %q: invalid content type %q", key, truncate(contentType))
	}

	tmp := path.Join(tmpDir, randomName())
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("blob: put %q: create temp file: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			d.root.Remove(tmp)
		}
	}()

	if _, err := io.WriteString(f, header+contentType+"\n"); err != nil {
		return fmt.Errorf("blob: put %q: write: %w", key, err)
	}
	n, err := io.Copy(f, r)
	if err != nil {
		// Wrapped with %w: the HTTP layer looks for *http.MaxBytesError.
		return fmt.Errorf("blob: put %q: read body: %w", key, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob: put %q: got %d bytes, want %d", key, n, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: put %q: %w", key, err)
	}
	// fsync before rename: otherwise a crash soon after could leave the
	// new name pointing at a file whose data never reached the disk.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob: put %q: sync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob: put %q: close: %w", key, err)
	}

	name := path.Join(objectsDir, key)
	parent := path.Dir(name)
	// A concurrent Delete may remove the (then empty) parent directory
	// between MkdirAll and Rename; trying again recreates it.
	for attempt := 0; ; attempt++ {
		if err = d.root.MkdirAll(parent, 0o750); err != nil {
			if isConflict(err) {
				return fmt.Errorf("%w: put %q: %v", ErrConflict, key, err)
			}
			return fmt.Errorf("blob: put %q: create parent: %w", key, err)
		}
		err = d.root.Rename(tmp, name)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			break
		}
	}
	if err != nil {
		if isConflict(err) {
			return fmt.Errorf("%w: put %q: %v", ErrConflict, key, err)
		}
		return fmt.Errorf("blob: put %q: rename: %w", key, err)
	}
	committed = true
	// fsync the directory so the rename itself survives a crash.
	if err := d.syncDir(parent); err != nil {
		return fmt.Errorf("blob: put %q: sync directory: %w", key, err)
	}
	return nil
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, key string) (Object, error) {
	if err := ValidKey(key); err != nil {
		return Object{}, err
	}
	f, err := d.root.Open(path.Join(objectsDir, key))
	if err != nil {
		if isMissing(err) {
			return Object{}, fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		return Object{}, fmt.Errorf("blob: get %q: %w", key, err)
	}
	obj, err := readObject(f)
	if err != nil {
		f.Close()
		if errors.Is(err, ErrNotFound) {
			return Object{}, fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		return Object{}, fmt.Errorf("blob: get %q: %w", key, err)
	}
	return obj, nil
}

// readObject reads the header of an object file and returns the object
// positioned at its first byte.
func readObject(f *os.File) (Object, error) {
	st, err := f.Stat()
	if err != nil {
		return Object{}, err
	}
	if st.IsDir() {
		return Object{}, ErrNotFound // "a" when only "a/b" exists
	}
	br := bufio.NewReaderSize(f, maxHeader)
	line, err := br.ReadSlice('\n')
	if err != nil || !strings.HasPrefix(string(line), header) {
		return Object{}, fmt.Errorf("corrupt object file %s: no header line", f.Name())
	}
	return Object{
		Body:        readCloser{br, f},
		Size:        st.Size() - int64(len(line)),
		ContentType: strings.TrimSuffix(strings.TrimPrefix(string(line), header), "\n"),
		ModTime:     st.ModTime(),
	}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	name := path.Join(objectsDir, key)
	st, err := d.root.Lstat(name)
	if err == nil && st.IsDir() {
		err = fs.ErrNotExist
	}
	if err == nil {
		err = d.root.Remove(name)
	}
	if err != nil {
		if isMissing(err) {
			return fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		return fmt.Errorf("blob: delete %q: %w", key, err)
	}
	// Remove the parents that are now empty, so that "a" can be stored
	// again after "a/b" was deleted. Remove fails on a non-empty directory,
	// which ends the walk.
	for p := path.Dir(name); p != objectsDir; p = path.Dir(p) {
		if d.root.Remove(p) != nil {
			break
		}
	}
	return nil
}

// Check implements Store: the directory is still there and readable.
func (d *Dir) Check(ctx context.Context) error {
	if _, err := d.root.Stat(objectsDir); err != nil {
		return fmt.Errorf("blob: check: %w", err)
	}
	return nil
}

func (d *Dir) syncDir(name string) error {
	f, err := d.root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// removeStaleTmp deletes temp files left by a crash. Errors are ignored:
// leftovers waste space but are never read.
func (d *Dir) removeStaleTmp() {
	entries, err := fs.ReadDir(d.root.FS(), tmpDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTmp {
			d.root.Remove(path.Join(tmpDir, e.Name()))
		}
	}
}

func randomName() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + ".tmp"
}

// isMissing: no such file, or a path element is a file ("a/b" when "a" is
// a file).
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// isConflict: a file stands where a directory is needed, or the reverse.
func isConflict(err error) bool {
	return errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) ||
		errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY)
}
