package writer

import (
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// -update has nothing to rewrite here; it is defined so that
// `go test ./... -update` (which rewrites the golden trees) runs.
var _ = flag.Bool("update", false, "ignored")

var files = map[string][]byte{
	"go.mod":              []byte("module example.com/x\n"),
	"cmd/server/main.go":  []byte("package main\n"),
	"scripts/install.sh":  []byte("echo hi\n"),
	"README.md":           []byte("# x\n"),
	"internal/a/b/c.go":   []byte("package b\n"),
	".scaffold.yaml":      []byte("name: x\n"),
	"docs/nested/file.md": []byte("doc\n"),
}

func mode(p string) fs.FileMode {
	if strings.HasSuffix(p, ".sh") {
		return 0o755
	}
	return 0o644
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !d.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			got[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	return got
}

// leftovers lists what is in parent besides the names given.
func leftovers(t *testing.T, parent string, expected ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, e := range entries {
		if !slices.Contains(expected, e.Name()) {
			extra = append(extra, e.Name())
		}
	}
	return extra
}

func TestWriteNew(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "shop")
	plan, err := Write(context.Background(), dir, files, nil, false, mode)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Exists || len(plan.Replaced) != 0 {
		t.Errorf("plan = %+v", plan)
	}
	got := readTree(t, dir)
	if len(got) != len(files) {
		t.Errorf("wrote %d files, want %d", len(got), len(files))
	}
	for p, b := range files {
		if got[p] != string(b) {
			t.Errorf("%s = %q, want %q", p, got[p], b)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "scripts/install.sh")); fi.Mode().Perm() != 0o755 {
		t.Errorf("script mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v, want 0755 (not the temp dir's 0700)", fi.Mode())
	}
	if extra := leftovers(t, parent, "shop"); len(extra) > 0 {
		t.Errorf("left behind: %v", extra)
	}
}

func TestWriteEmptyDirAndMissingParents(t *testing.T) {
	parent := t.TempDir()
	empty := filepath.Join(parent, "empty")
	os.Mkdir(empty, 0o755)
	before, _ := os.Stat(empty)
	if _, err := Write(context.Background(), empty, files, nil, false, mode); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(empty); !os.SameFile(before, after) {
		t.Error("the empty DIR was replaced rather than filled (a shell inside it would lose it)")
	}
	deep := filepath.Join(parent, "a", "b", "shop")
	if _, err := Write(context.Background(), deep, files, nil, false, mode); err != nil {
		t.Fatal(err)
	}
	if len(readTree(t, deep)) != len(files) || len(readTree(t, empty)) != len(files) {
		t.Error("files missing")
	}
}

func TestWriteRefusesNonEmpty(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "shop")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	_, err := Write(context.Background(), dir, files, nil, false, mode)
	want := dir + " is not empty (choose a new or empty DIR, or pass --force to replace only the files scaffold generates)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	if got := readTree(t, dir); len(got) != 1 {
		t.Errorf("dir changed: %v", got)
	}
	if extra := leftovers(t, parent, "shop"); len(extra) > 0 {
		t.Errorf("left behind: %v", extra)
	}
}

func TestWriteForce(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "shop")
	os.MkdirAll(filepath.Join(dir, "cmd/server"), 0o755)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(dir, "cmd/server/main.go"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(dir, ".env"), []byte("SECRET=old"), 0o600)
	secrets := map[string][]byte{".env": []byte("SECRET=new"), "other.env": []byte("X=1")}
	plan, err := Write(context.Background(), dir, files, secrets, true, mode)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"README.md", "cmd/server/main.go"}; !slices.Equal(plan.Replaced, want) {
		t.Errorf("replaced %v, want %v", plan.Replaced, want)
	}
	if want := []string{".env"}; !slices.Equal(plan.Kept, want) {
		t.Errorf("kept %v, want %v", plan.Kept, want)
	}
	got := readTree(t, dir)
	if got["notes.txt"] != "mine" || got[".env"] != "SECRET=old" || got["other.env"] != "X=1" || got["README.md"] != "# x\n" {
		t.Errorf("tree after --force: %v", got)
	}
	if extra := leftovers(t, parent, "shop"); len(extra) > 0 {
		t.Errorf("left behind: %v", extra)
	}
}

func TestWriteForceRefusesDirectoryInTheWay(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "shop")
	os.MkdirAll(filepath.Join(dir, "README.md"), 0o755) // a directory where a file goes
	_, err := Write(context.Background(), dir, files, nil, true, mode)
	if err == nil || !strings.Contains(err.Error(), "is in the way") {
		t.Fatalf("err = %v", err)
	}
	if extra := leftovers(t, parent, "shop"); len(extra) > 0 {
		t.Errorf("left behind: %v", extra)
	}
}

// Tests may run as root, which chmod does not stop; a parent that is a
// regular file makes a DIR that nobody can create.
func TestWriteUnwritable(t *testing.T) {
	parent := t.TempDir()
	file := filepath.Join(parent, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, dir := range []string{filepath.Join(file, "shop"), filepath.Join(file, "a", "shop")} {
		_, err := Write(context.Background(), dir, files, nil, false, mode)
		want := "cannot create " + dir + ": " + file + " is not a directory (choose a DIR inside a writable directory)"
		if err == nil || err.Error() != want {
			t.Errorf("err = %v, want %s", err, want)
		}
	}
	if extra := leftovers(t, parent, "file"); len(extra) > 0 {
		t.Errorf("left behind: %v", extra)
	}
}

func TestWriteCancelled(t *testing.T) {
	parent := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, filepath.Join(parent, "x", "shop"), files, nil, false, mode); err == nil {
		t.Fatal("no error")
	}
	if extra := leftovers(t, parent); len(extra) > 0 {
		t.Errorf("left behind: %v", extra)
	}
}
