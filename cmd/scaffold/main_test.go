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
	"slices"
	"strings"
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
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"cmptree": cmdCmpTree,
			"notemp":  cmdNoTemp,
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
