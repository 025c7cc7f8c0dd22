// Command lockdeps writes generator/deps: for every set of features that
// matters to Go, the require blocks of go.mod and the go.sum that `go mod
// tidy` gives the generated project. Run it from the repository root after
// changing a feature's Requires or its imports (make deps), then run
// make golden reference.
//
// The generated project is written to a temporary directory with only the
// direct requirements of the manifest, and `go mod tidy` does the rest,
// using the module proxy the go command is configured with.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"

	"github.com/scaffoldhq/scaffold/generator"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("lockdeps: ")
	if _, err := os.Stat(filepath.Join(generator.DepsDir, "..", "manifest.go")); err != nil {
		log.Fatal("run me from the repository root (make deps)")
	}
	// One combination per key: features that do not matter to Go share a lock.
	var keys []string
	combos := map[string][]string{}
	for _, c := range generator.Combinations() {
		k := generator.LockKey(c)
		if _, ok := combos[k]; !ok {
			keys = append(keys, k)
			combos[k] = c
		}
	}
	for _, k := range keys {
		lock, err := resolve(combos[k])
		if err != nil {
			log.Fatalf("%s: %v", k, err)
		}
		base := filepath.Join(generator.DepsDir, k)
		if err := os.WriteFile(base+".mod", []byte(lock.Require), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(base+".sum", lock.Sum, 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("%s: %d lines of go.sum", k, bytes.Count(lock.Sum, []byte("\n")))
	}
	// Drop locks of feature sets that no longer exist.
	old, _ := filepath.Glob(filepath.Join(generator.DepsDir, "*.*"))
	for _, f := range old {
		name := filepath.Base(f)
		ext := filepath.Ext(name)
		if (ext == ".mod" || ext == ".sum") && !slices.Contains(keys, strings.TrimSuffix(name, ext)) {
			log.Printf("removing stale %s", f)
			os.Remove(f)
		}
	}
}

func resolve(features []string) (generator.Lock, error) {
	a := generator.Answers{Name: "lock", Module: "example.com/lock", Features: features,
		LB: generator.DefaultLB, Replicas: generator.DefaultReplicas, Port: generator.DefaultPort}
	files, err := generator.GenerateWithLock(a, generator.Lock{})
	if err != nil {
		return generator.Lock{}, err
	}
	dir, err := os.MkdirTemp("", "lockdeps-*")
	if err != nil {
		return generator.Lock{}, err
	}
	defer os.RemoveAll(dir)
	for p, b := range files {
		target := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return generator.Lock{}, err
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			return generator.Lock{}, err
		}
	}
	direct := requires(features)
	if len(direct) > 0 {
		args := []string{"mod", "edit"}
		for _, r := range direct {
			args = append(args, "-require="+r)
		}
		if err := goCmd(dir, args...); err != nil {
			return generator.Lock{}, err
		}
	}
	if err := goCmd(dir, "mod", "tidy"); err != nil {
		return generator.Lock{}, err
	}
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return generator.Lock{}, err
	}
	f, err := modfile.Parse("go.mod", mod, nil)
	if err != nil {
		return generator.Lock{}, err
	}
	if f.Toolchain != nil {
		return generator.Lock{}, fmt.Errorf("go mod tidy added a toolchain line; raise generator.GoVersion instead")
	}
	// Every listed requirement must stay direct and at its version: a
	// requirement tidy drops is one no generated code imports, and one it
	// raises is one another module needs newer.
	for _, r := range direct {
		path, version, _ := strings.Cut(r, "@")
		i := slices.IndexFunc(f.Require, func(req *modfile.Require) bool { return req.Mod.Path == path })
		switch {
		case i < 0:
			return generator.Lock{}, fmt.Errorf("%s: go mod tidy dropped it: no generated code imports it (remove it from Requires, or import it)", r)
		case f.Require[i].Indirect:
			return generator.Lock{}, fmt.Errorf("%s: go mod tidy marks it indirect: no generated code imports it (remove it from Requires)", r)
		case f.Require[i].Mod.Version != version:
			return generator.Lock{}, fmt.Errorf("%s: go mod tidy needs %s (list that version in Requires)", r, f.Require[i].Mod.Version)
		}
	}
	// Keep everything from the first require block on, as tidy wrote it.
	var require string
	if i := bytes.Index(mod, []byte("\nrequire")); i >= 0 {
		require = string(mod[i:])
	}
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return generator.Lock{}, err
	}
	return generator.Lock{Require: require, Sum: sum}, nil
}

// requires lists the direct requirements of the base and features.
func requires(features []string) []string {
	var out []string
	for _, e := range generator.Entries() {
		if e.Name == "" || slices.Contains(features, e.Name) {
			for _, r := range e.RequiresFor(features) {
				if !slices.Contains(out, r) {
					out = append(out, r)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func goCmd(dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
