package generator

import (
	"bytes"
	"flag"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/diff"
)

// -update rewrites the golden trees (TestGolden, `make golden`) and
// reference-app (TestReferenceApp, `make reference`) from the generator.
var update = flag.Bool("update", false, "rewrite testdata/golden/*/tree and reference-app from the generator's output")

const (
	goldenDir    = "../testdata/golden"
	referenceApp = "../reference-app"
	// The reference app is the "all" preset.
	referencePreset = goldenDir + "/all/answers.yaml"
)

// loadPreset reads a preset's answers.yaml, which must give every answer.
func loadPreset(t *testing.T, file string) Answers {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fa, err := ParseFile(file, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "module", "features", "lb", "replicas", "port"} {
		if !fa.Set[k] {
			t.Fatalf("%s: no %s: a preset gives every answer", file, k)
		}
	}
	a := fa.Answers
	a.Features, _ = Resolve(a.Features)
	return a
}

func TestGolden(t *testing.T) {
	presets, err := filepath.Glob(goldenDir + "/*/answers.yaml")
	if err != nil || len(presets) == 0 {
		t.Fatalf("no presets in %s (%v)", goldenDir, err)
	}
	for _, file := range presets {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			a := loadPreset(t, file)
			files, err := Generate(a)
			if err != nil {
				t.Fatal(err)
			}
			checkTree(t, filepath.Join(dir, "tree"), files, nil, "make golden")
		})
	}
}

// TestReferenceApp fails when reference-app/ is not what the generator makes
// for the "all" preset. Files with random content (.env) are not compared,
// and neither is notGenerated.
func TestReferenceApp(t *testing.T) {
	a := loadPreset(t, referencePreset)
	files, err := Generate(a)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := Secrets(a, zeros{})
	if err != nil {
		t.Fatal(err)
	}
	ignore := maps.Clone(secrets)
	if ignore == nil {
		ignore = map[string][]byte{}
	}
	for _, p := range notGenerated {
		if _, ok := files[p]; ok {
			t.Errorf("%s is in notGenerated but the generator makes it: remove it from the list", p)
		}
		ignore[p] = nil
	}
	checkTree(t, referenceApp, files, ignore, "make reference")
}

// notGenerated are the files of reference-app/ that this repository writes
// and the generator does not; they are neither compared nor removed.
// BENCHMARKS.md records a run of `make bench` on one machine: numbers of that
// machine have no place in every generated project.
var notGenerated = []string{"BENCHMARKS.md"}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// checkTree compares dir with files, byte for byte, or rewrites dir with
// -update. Paths in ignore are neither compared nor removed.
func checkTree(t *testing.T, dir string, files, ignore map[string][]byte, fix string) {
	t.Helper()
	onDisk := map[string][]byte{}
	if _, err := os.Stat(dir); err == nil {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			rel = filepath.ToSlash(rel)
			if _, skip := ignore[rel]; skip {
				return nil
			}
			onDisk[rel], err = os.ReadFile(p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if *update {
		for p := range onDisk {
			if _, ok := files[p]; !ok {
				if err := os.Remove(filepath.Join(dir, p)); err != nil {
					t.Fatal(err)
				}
			}
		}
		removeEmptyDirs(dir)
		for p, b := range files {
			if bytes.Equal(onDisk[p], b) {
				continue
			}
			target := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, b, FileMode(p)); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	bad := false
	for _, p := range sortedPaths(files, onDisk) {
		want, inTree := onDisk[p]
		got, generated := files[p]
		switch {
		case !inTree:
			t.Errorf("%s: generated but missing from %s", p, dir)
		case !generated:
			t.Errorf("%s: in %s but no longer generated", p, dir)
		case !bytes.Equal(got, want):
			t.Errorf("%s differs (- %s, + generated):\n%s", p, dir, diff.Diff(dir+"/"+p, want, "generated/"+p, got))
		default:
			continue
		}
		bad = true
	}
	if bad {
		t.Logf("if the generator is right, run `%s` and review the change", fix)
	}
}

func removeEmptyDirs(dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs) // deepest first
	for _, d := range dirs {
		os.Remove(d) // fails, as wanted, unless empty
	}
}

func sortedPaths(a, b map[string][]byte) []string {
	var paths []string
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	return paths
}

func TestDeterministic(t *testing.T) {
	a := loadPreset(t, referencePreset)
	first, err := Generate(a)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range sortedPaths(first, again) {
			if !bytes.Equal(first[p], again[p]) {
				t.Fatalf("%s differs between two runs with the same answers", p)
			}
		}
	}
}

// TestNothingIgnored checks that the generated .gitignore ignores none of
// the generated files: if it did, golden trees and reference-app would lose
// files on commit, and so would users.
func TestNothingIgnored(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	for _, combo := range Combinations() {
		a := loadPreset(t, referencePreset)
		a.Features = combo
		files, err := Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for p, b := range files {
			target := filepath.Join(dir, filepath.FromSlash(p))
			os.MkdirAll(filepath.Dir(target), 0o755)
			if err := os.WriteFile(target, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}} {
			if out, err := exec.Command(git, append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		out, err := exec.Command(git, "-C", dir, "ls-files").Output()
		if err != nil {
			t.Fatal(err)
		}
		tracked := strings.Fields(string(out))
		for _, p := range sortedPaths(files, nil) {
			if !slices.Contains(tracked, p) {
				t.Errorf("features %v: the generated .gitignore ignores the generated %s", combo, p)
			}
		}
	}
}

// A project name under 3 characters is valid, but not as an S3 bucket
// name, which the compose file and the config default take from it.
func TestShortNameBucket(t *testing.T) {
	files, err := Generate(Answers{Name: "r1", Module: "example.com/r1", Features: FeatureNames(), LB: DefaultLB, Replicas: 1, Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"docker-compose.yml": `S3_BUCKET: "r1-files"`,
		"config/blob.go":     `r.str("S3_BUCKET", "r1-files")`,
	} {
		if !bytes.Contains(files[p], []byte(want)) {
			t.Errorf("%s: want %s", p, want)
		}
	}
}
