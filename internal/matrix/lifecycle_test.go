package matrix

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scaffoldhq/scaffold/generator"
)

// TestLifecycleWalk walks a project through scaffold add and remove: from
// no feature, each feature added one by one, then removed in another order,
// with a file of the user's beside them. After every step the project must
// be byte for byte what scaffold new makes for the same answers (and the
// user's file still there). That is how each step is built and tested:
// TestMatrix builds, vets and tests every one of those feature sets.
func TestLifecycleWalk(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "scaffold")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/scaffold")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	scaffold := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scaffold %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	root := t.TempDir()
	dir := filepath.Join(root, "shop")
	scaffold(root, "new", "--yes", "--features", "none", "--module", "example.com/acme/shop", "shop")
	const userFile = "NOTES.md"
	if err := os.WriteFile(filepath.Join(dir, userFile), []byte("ours\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	type step struct {
		verb, feature string
		features      string // the features after the step
	}
	steps := []step{
		{"add", "db", "db"},
		{"add", "cache", "db,cache"},
		{"add", "blob", "db,cache,blob"},
		{"add", "worker", "db,cache,blob,worker"},
		{"add", "lock", "db,cache,blob,worker,lock"},
		{"add", "queue", "db,cache,blob,worker,lock,queue"},
		{"add", "realtime", "db,cache,blob,worker,lock,queue,realtime"},
		{"add", "compose", "db,cache,blob,worker,lock,queue,realtime,compose"},
		{"add", "k8s", "db,cache,blob,worker,lock,queue,realtime,compose,k8s"},
		{"remove", "queue", "db,cache,blob,worker,lock,realtime,compose,k8s"},
		{"remove", "worker", "db,cache,blob,lock,realtime,compose,k8s"},
		{"remove", "compose", "db,cache,blob,lock,realtime,k8s"},
		{"remove", "realtime", "db,cache,blob,lock,k8s"},
		{"remove", "lock", "db,cache,blob,k8s"},
		{"remove", "k8s", "db,cache,blob"},
		{"remove", "cache", "db,blob"},
		{"remove", "blob", "db"},
		{"remove", "db", ""},
	}
	made := map[string]bool{} // secrets files made so far
	for _, s := range steps {
		scaffold(dir, s.verb, s.feature)
		features, err := generator.ParseFeatures(s.features)
		if err != nil {
			t.Fatal(err)
		}
		a := generator.Answers{Name: "shop", Module: "example.com/acme/shop", Features: features,
			LB: generator.DefaultLB, Replicas: generator.DefaultReplicas, Port: generator.DefaultPort}
		want, err := generator.Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		got := readTree(t, dir)
		if string(got[userFile]) != "ours\n" {
			t.Fatalf("after %s %s: the user's %s is gone or changed", s.verb, s.feature, userFile)
		}
		delete(got, userFile)
		secrets, err := generator.Secrets(a, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for p := range secrets {
			made[p] = true
		}
		for p := range made {
			// Random content (.env), made when first needed and never
			// touched again, not even when the feature goes: it may hold
			// the user's own values.
			delete(got, p)
		}
		for p, b := range want {
			if g, ok := got[p]; !ok {
				t.Errorf("after %s %s: %s is missing", s.verb, s.feature, p)
			} else if !bytes.Equal(g, b) {
				t.Errorf("after %s %s: %s differs from what scaffold new makes", s.verb, s.feature, p)
			}
			delete(got, p)
		}
		for p := range got {
			t.Errorf("after %s %s: %s is left over (scaffold new does not make it)", s.verb, s.feature, p)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
