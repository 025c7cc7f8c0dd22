package conformance

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// changedPackages on the two trees finds the cluster test; after an edit
// of one package in a copy, it finds that package and every package whose
// tests link it, and no other.
func TestChangedPackages(t *testing.T) {
	ref := must(filepath.Abs(trees["haproxy"]))
	nginx := must(filepath.Abs(trees["nginx"]))
	got, err := changedPackages(nginx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "./clustertest") || slices.Contains(got, "./...") {
		t.Errorf("all-nginx against reference-app: %v, want ./clustertest among them", got)
	}
	t.Logf("all-nginx against reference-app: %v", got)

	copied := t.TempDir()
	if err := os.CopyFS(copied, os.DirFS(ref)); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(copied, "notes", "notes.go")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, append(b, "\n// edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = changedPackages(copied, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./notes", "./postgres", "./httpapi", "./cmd/server"} {
		if !slices.Contains(got, want) {
			t.Errorf("after an edit of notes/notes.go: %v, want %s among them", got, want)
		}
	}
	for _, not := range []string{"./blob", "./minio", "./config"} {
		if slices.Contains(got, not) {
			t.Errorf("after an edit of notes/notes.go: %v, want no %s (it does not link notes)", got, not)
		}
	}
	t.Logf("after an edit of notes/notes.go: %v", got)
}
