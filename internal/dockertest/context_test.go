package dockertest

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// TestBuildContextsSame checks, without an engine, that the two trees send
// docker build the same files with the same bytes and modes, after their
// .dockerignore (read with the code docker uses): so TestCompose's second
// tree, and the next run with an unchanged app, builds the app image from
// the cache instead of compiling it again. What the trees do not share (the
// load balancer's files, the compose file, the README, .scaffold.yaml) and
// what TestCompose adds (.env, its compose override) must stay out.
func TestBuildContextsSame(t *testing.T) {
	var contexts []map[string]string
	for _, tree := range trees {
		files, err := buildContext(tree.dir, ".env", "compose.dockertest.yml")
		if err != nil {
			t.Fatal(err)
		}
		for _, need := range []string{"go.mod", "go.sum", "cmd/server/main.go"} {
			if _, ok := files[need]; !ok {
				t.Errorf("%s: .dockerignore leaves out %s, which go build ./cmd/server needs", tree.dir, need)
			}
		}
		contexts = append(contexts, files)
	}
	a, b := contexts[0], contexts[1]
	var differ []string
	for name, sum := range a {
		if b[name] != sum {
			differ = append(differ, name)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			differ = append(differ, name)
		}
	}
	slices.Sort(differ)
	if len(differ) > 0 {
		t.Errorf("the build contexts of %s and %s differ in %v: the second build of TestCompose would compile the app again (leave them out in templates/.dockerignore if go build ./cmd/server does not need them)",
			trees[0].dir, trees[1].dir, differ)
		return
	}
	t.Logf("build context: %d files, the same in both trees", len(a))
}

// buildContext returns the files docker build copies from dir with COPY .
// (slash paths, each with a hash of its mode and content), after
// .dockerignore. extra are files TestCompose writes into its copy of the
// tree: each must be left out.
func buildContext(dir string, extra ...string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if err != nil {
		return nil, err
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading %s/.dockerignore: %w", dir, err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s/.dockerignore: %w", dir, err)
	}
	for _, name := range extra {
		if out, err := pm.MatchesOrParentMatches(name); err != nil || !out {
			return nil, fmt.Errorf("%s/.dockerignore does not leave out %s, which TestCompose writes (%v)", dir, name, err)
		}
	}
	files := map[string]string{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		out, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if out {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = fmt.Sprintf("%v %x", info.Mode(), sha256.Sum256(data))
		return nil
	})
	return files, err
}
