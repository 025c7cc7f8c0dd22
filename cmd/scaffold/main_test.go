package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/scaffoldhq/scaffold/generator"
)

// TestMain lets the scripts run `scaffold` as a command: testscript re-runs
// this test binary as scaffold, which calls main1, the real main.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"scaffold": func() { os.Exit(main1()) },
	})
}

// -update rewrites the files that scripts compare stdout and stderr with
// (cmp stderr want/x.txt), as `go test ./... -update` rewrites golden trees.
var update = flag.Bool("update", false, "rewrite the expected output in testdata/script/*.txtar")

// TestScripts runs testdata/script/*.txtar. Besides testscript's own
// commands, scripts have:
//
//	cmptree DIR1 DIR2   the two trees hold the same files with the same bytes
//	notemp DIR          DIR holds no temporary directory of scaffold's
//	mkold VERSION OVERLAY BIN
//	                    build an older scaffold into BIN: this repository's
//	                    source with Version set to VERSION and the files
//	                    under OVERLAY laid over it (templates, manifest)
//
// and $SCAFFOLD_VERSION is the generator version, $SCAFFOLD the command's path.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *update,
		Setup: func(env *testscript.Env) error {
			env.Setenv("SCAFFOLD_VERSION", generator.Version)
			// The command's own path, to run it with a PATH that lacks git.
			bin, err := exec.LookPath("scaffold")
			if err != nil {
				return err
			}
			env.Setenv("SCAFFOLD", bin)
			// The go command in scripts (building a generated project, or
			// an older scaffold) shares this one's caches and settings.
			for k, v := range goEnv() {
				env.Setenv(k, v)
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"cmptree": cmdCmpTree,
			"notemp":  cmdNoTemp,
			"mkold":   cmdMkOld,
		},
	})
}

func cmdCmpTree(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cmptree DIR1 DIR2")
	}
	// Files with random content (compose's .env) are in both trees but
	// differ by design.
	all := generator.Answers{Name: "x", Module: "example.com/x", LB: "nginx", Replicas: 1, Port: 8080}
	for _, f := range generator.Features {
		all.Features = append(all.Features, f.Name)
	}
	secret, err := generator.Secrets(all, rand.Reader)
	ts.Check(err)
	diffs, err := treeDiff(ts.MkAbs(args[0]), ts.MkAbs(args[1]), secret)
	ts.Check(err)
	if len(diffs) > 0 {
		ts.Fatalf("%s and %s differ:\n%s", args[0], args[1], strings.Join(diffs, "\n"))
	}
}

// treeDiff lists how the trees under dirA and dirB differ: a file only in
// one of them, or with other bytes. Files named in secret (random content)
// only have to exist in both.
func treeDiff(dirA, dirB string, secret map[string][]byte) ([]string, error) {
	a, err := readTree(dirA)
	if err != nil {
		return nil, err
	}
	b, err := readTree(dirB)
	if err != nil {
		return nil, err
	}
	paths := slices.Sorted(maps.Keys(a))
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	var diffs []string
	for _, p := range paths {
		x, inA := a[p]
		y, inB := b[p]
		switch {
		case !inA:
			diffs = append(diffs, p+": only in "+dirB)
		case !inB:
			diffs = append(diffs, p+": only in "+dirA)
		case !bytes.Equal(x, y) && secret[p] == nil:
			diffs = append(diffs, p+": differs")
		}
	}
	return diffs, nil
}

func readTree(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	return files, err
}

func cmdNoTemp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: notemp DIR")
	}
	entries, err := os.ReadDir(ts.MkAbs(args[0]))
	ts.Check(err)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".scaffold-") {
			ts.Fatalf("temporary directory left behind: %s", e.Name())
		}
	}
}

var goEnvOnce = sync.OnceValue(func() map[string]string {
	keys := []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GONOSUMDB", "GOFLAGS", "GOTOOLCHAIN"}
	out, err := exec.Command("go", append([]string{"env"}, keys...)...).Output()
	env := map[string]string{}
	if err != nil {
		return env
	}
	for i, v := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if i < len(keys) && v != "" {
			env[keys[i]] = v
		}
	}
	return env
})

func goEnv() map[string]string { return goEnvOnce() }

// cmdMkOld builds a real previous version of scaffold: the source of this
// module (its packages, not its tests or test data) copied into a temporary
// directory, the Version constant set, an overlay of changed or added files
// laid over it, and go build.
func cmdMkOld(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: mkold VERSION OVERLAY BIN")
	}
	version, overlay, bin := args[0], ts.MkAbs(args[1]), ts.MkAbs(args[2])
	root, err := filepath.Abs("../..")
	ts.Check(err)
	src := ts.MkAbs("old-src")
	ts.Check(os.MkdirAll(src, 0o755))
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch {
			case rel == ".":
				return nil
			case strings.HasPrefix(d.Name(), "."), d.Name() == "testdata", rel == "reference-app", rel == "internal":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(src, rel), 0o755)
		}
		if strings.HasSuffix(rel, "_test.go") || d.Name() == ".git" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(src, rel), b, 0o644)
	})
	ts.Check(err)
	err = filepath.WalkDir(overlay, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(overlay, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		target := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	ts.Check(err)
	vfile := filepath.Join(src, "generator", "version.go")
	b, err := os.ReadFile(vfile)
	ts.Check(err)
	re := regexp.MustCompile(`const Version = "[^"]*"`)
	if !re.Match(b) {
		ts.Fatalf("no Version constant in generator/version.go")
	}
	ts.Check(os.WriteFile(vfile, re.ReplaceAll(b, []byte(`const Version = "`+version+`"`)), 0o644))
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/scaffold")
	cmd.Dir = src
	cmd.Env = os.Environ()
	for k, v := range goEnv() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		ts.Fatalf("building scaffold %s: %v\n%s", version, err, out)
	}
	ts.Check(os.RemoveAll(src))
}
