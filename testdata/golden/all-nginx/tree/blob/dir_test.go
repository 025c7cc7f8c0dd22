package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openDir(t *testing.T) (*Dir, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dir
}

func get(t *testing.T, s Store, key string) (Object, []byte) {
	t.Helper()
	obj, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return obj, b
}

// longestKey is as long as a key and its elements may be: every store
// must take it (before, ValidKey took a 512-byte element that a file system
// refuses, and the API answered 500).
var longestKey = strings.Repeat("k", MaxElementBytes) + "/" + strings.Repeat("e", MaxKeyBytes-MaxElementBytes-3) + "/z"

func TestDirRoundTrip(t *testing.T) {
	d, _ := openDir(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB, more than any buffer
	for _, key := range []string{"a.txt", "a/b/c.txt", "ünïcode name.bin", longestKey} {
		if err := d.Put(ctx, key, bytes.NewReader(data), int64(len(data)), "text/plain; charset=utf-8"); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
		obj, got := get(t, d, key)
		if !bytes.Equal(got, data) || obj.Size != int64(len(data)) {
			t.Fatalf("Get(%q): %d bytes (Size %d), want %d", key, len(got), obj.Size, len(data))
		}
		if obj.ContentType != "text/plain; charset=utf-8" || obj.ModTime.IsZero() {
			t.Fatalf("Get(%q): content type %q, mod time %v", key, obj.ContentType, obj.ModTime)
		}
	}

	// Unknown size, empty content type, empty object.
	if err := d.Put(ctx, "empty", strings.NewReader(""), -1, ""); err != nil {
		t.Fatal(err)
	}
	obj, got := get(t, d, "empty")
	if len(got) != 0 || obj.Size != 0 || obj.ContentType != DefaultContentType {
		t.Fatalf("empty object: %q, size %d, type %q", got, obj.Size, obj.ContentType)
	}

	if err := d.Delete(ctx, "a/b/c.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, "a/b/c.txt"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := d.Delete(ctx, "a/b/c.txt"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	// The emptied parent "a/b" is gone, so "a/b" can now be a file.
	if err := d.Put(ctx, "a/b", strings.NewReader("x"), 1, ""); err != nil {
		t.Fatalf("Put a/b after its children were deleted: %v", err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDirNotFound(t *testing.T) {
	d, _ := openDir(t)
	ctx := context.Background()
	if err := d.Put(ctx, "file", strings.NewReader("x"), 1, ""); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "dir/child", strings.NewReader("x"), 1, ""); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"missing", "dir", "file/below", "dir/missing"} {
		if _, err := d.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", key, err)
		}
		if err := d.Delete(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q): %v, want ErrNotFound", key, err)
		}
	}
	for _, key := range []string{"dir", "file/below"} {
		if err := d.Put(ctx, key, strings.NewReader("x"), 1, ""); !errors.Is(err, ErrConflict) {
			t.Errorf("Put(%q): %v, want ErrConflict", key, err)
		}
	}
}

func TestDirShortBodyKeepsOldObject(t *testing.T) {
	d, dir := openDir(t)
	ctx := context.Background()
	if err := d.Put(ctx, "k", strings.NewReader("old"), 3, "text/old"); err != nil {
		t.Fatal(err)
	}
	// The body ends before the announced size: nothing is replaced.
	if err := d.Put(ctx, "k", strings.NewReader("new"), 10, "text/new"); err == nil {
		t.Fatal("Put with a short body succeeded")
	}
	// The body fails half-way.
	failing := io.MultiReader(strings.NewReader("partial"), errReader{})
	if err := d.Put(ctx, "k", failing, -1, "text/new"); err == nil {
		t.Fatal("Put with a failing body succeeded")
	}
	obj, got := get(t, d, "k")
	if string(got) != "old" || obj.ContentType != "text/old" {
		t.Fatalf("after failed puts: %q %q, want the old object", got, obj.ContentType)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(left) != 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestDirAtomicOverwrite has readers race writers that replace one key with
// objects of different sizes and types: every read must see one whole
// object, never a mix or a partial file.
func TestDirAtomicOverwrite(t *testing.T) {
	d, _ := openDir(t)
	ctx := context.Background()
	versions := map[string][]byte{}
	for i, c := range "abcd" {
		versions["type/"+string(c)] = bytes.Repeat([]byte{byte(c)}, 100_000*(i+1))
	}
	if err := d.Put(ctx, "k", bytes.NewReader(versions["type/a"]), -1, "type/a"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for ct, data := range versions {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := d.Put(ctx, "k", bytes.NewReader(data), int64(len(data)), ct); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 300 {
		obj, got := get(t, d, "k")
		if want := versions[obj.ContentType]; !bytes.Equal(got, want) || obj.Size != int64(len(want)) {
			t.Errorf("read a torn object: type %q, %d bytes, size %d", obj.ContentType, len(got), obj.Size)
			break
		}
	}
	close(stop)
	wg.Wait()
}

func TestValidKey(t *testing.T) {
	valid := []string{"a", "a.txt", "a/b/c.txt", "..a", "a..", "a/..b/c", ".hidden", "sp ace", "ünï", longestKey}
	for _, key := range valid {
		if err := ValidKey(key); err != nil {
			t.Errorf("ValidKey(%q) = %v, want nil", key, err)
		}
	}
	invalid := []string{
		"", strings.Repeat("x/", MaxKeyBytes/2) + "x", strings.Repeat("x", MaxElementBytes+1), "a/" + strings.Repeat("x", MaxKeyBytes-2),
		"..", "../x", "a/../../x", "a/..", "./a", "a/./b", ".",
		"/abs", "/etc/passwd", "a/", "a//b",
		`a\b`, `..\x`, "a\x00b", "a\nb", "a\tb", "a\x7fb", "a\u0085b", "\xff\xfe",
	}
	for _, key := range invalid {
		err := ValidKey(key)
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	if err := ValidKey(strings.Repeat("y", 10_000)); len(err.Error()) > 200 {
		t.Errorf("error message for a huge key is %d bytes long", len(err.Error()))
	}
}

// TestDirEscape tries to leave the directory: invalid keys are refused
// before touching the disk, and symbolic links planted inside the directory
// (by someone with access to it) cannot lead out of it either.
func TestDirEscape(t *testing.T) {
	d, dir := openDir(t)
	ctx := context.Background()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte(header+"text/plain\nsecret"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, key := range []string{"../x", "a/../../x", "/" + secret, "../../../../" + secret} {
		if err := d.Put(ctx, key, strings.NewReader("x"), 1, ""); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := d.Get(ctx, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := d.Delete(ctx, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}

	objects := filepath.Join(dir, objectsDir)
	links := map[string]string{
		"linkdir":      outside, // absolute link to a directory outside
		"relative":     "../../" + filepath.Base(outside),
		"linkfile":     secret, // absolute link to a file outside
		"relativefile": filepath.Join("..", "..", filepath.Base(outside), "secret"),
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(objects, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"linkdir/secret", "relative/secret", "linkfile", "relativefile"} {
		if obj, err := d.Get(ctx, key); err == nil {
			b, _ := io.ReadAll(obj.Body)
			obj.Body.Close()
			t.Errorf("Get(%q) read %q from outside the directory", key, b)
		}
	}
	for _, key := range []string{"linkdir/new", "relative/new", "linkdir/deep/new"} {
		if err := d.Put(ctx, key, strings.NewReader("x"), 1, ""); err == nil {
			t.Errorf("Put(%q) succeeded through a link out of the directory", key)
		}
		if err := d.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded through a link out of the directory", key)
		}
	}
	if err := d.Delete(ctx, "linkdir/secret"); err == nil {
		t.Error("Delete(linkdir/secret) succeeded through a link out of the directory")
	}
	entries, _ := os.ReadDir(outside)
	if b, _ := os.ReadFile(secret); len(entries) != 1 || !strings.HasSuffix(string(b), "secret") {
		t.Errorf("outside directory changed: %v, secret %q", entries, b)
	}
}

func TestOpenDirRemovesStaleTemp(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, tmpDir), 0o750); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(dir, tmpDir, "old.tmp"), filepath.Join(dir, tmpDir, "new.tmp")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTmp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file removed: %v", err)
	}
}
