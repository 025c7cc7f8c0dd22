package generator

import (
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// Every combination has a lock, each lock belongs to a combination, and
// each lock holds its features' Requires as direct requirements at the
// listed versions. If this fails, run `make deps` (and `make golden
// reference`).
func TestLocks(t *testing.T) {
	keys := map[string]bool{}
	for _, combo := range Combinations() {
		key := LockKey(combo)
		keys[key] = true
		lock, err := LockFor(combo)
		if err != nil {
			t.Error(err)
			continue
		}
		f, err := modfile.Parse(key+".mod", []byte("module example.com/x\n"+lock.Require), nil)
		if err != nil {
			t.Errorf("%s.mod: %v", key, err)
			continue
		}
		for _, e := range Entries() {
			if e.Name != "" && !slices.Contains(combo, e.Name) {
				continue
			}
			for _, r := range e.Requires {
				mod, ver, _ := strings.Cut(r, "@")
				if !slices.ContainsFunc(f.Require, func(req *modfile.Require) bool {
					return req.Mod.Path == mod && req.Mod.Version == ver && !req.Indirect
				}) {
					t.Errorf("%s.mod does not require %s directly (run make deps)", key, r)
				}
			}
		}
	}
	entries, err := fs.ReadDir(depsFS, "deps")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		key := strings.TrimSuffix(e.Name(), path.Ext(e.Name()))
		if !keys[key] {
			t.Errorf("%s/%s belongs to no feature combination (run make deps, which removes it)", DepsDir, e.Name())
		}
	}
}
