package generator

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"
	"sync"
)

// Lock is what generator/deps holds for one set of features: the require
// blocks of go.mod and the go.sum, exactly as `go mod tidy` wrote them.
type Lock struct {
	Require string
	Sum     []byte
}

//go:embed deps
var depsFS embed.FS

// DepsDir is where locks live, relative to the module root.
const DepsDir = "generator/deps"

// LockKey names the lock of a feature set: the features that matter to Go
// (see GoFeatures), in canonical order, joined by "+", or "base".
func LockKey(features []string) string {
	var key []string
	goFeatures := GoFeatures()
	for _, f := range features {
		if goFeatures[f] {
			key = append(key, f)
		}
	}
	if len(key) == 0 {
		return "base"
	}
	return strings.Join(key, "+")
}

// GoFeatures are the features that can change go.mod or go.sum: those with
// Requires, and those with Go code of their own (its imports can pull more of
// a module graph into go.sum even when the modules are already required).
// compose, with neither, does not change the lock.
var GoFeatures = sync.OnceValue(func() map[string]bool {
	set := map[string]bool{}
	for _, f := range Features {
		if len(f.Requires) > 0 {
			set[f.Name] = true
		}
	}
	walkTemplates(func(_, out string) error {
		if strings.HasSuffix(out, ".go") {
			if owner, _, err := Owner(out); err == nil && owner != "" {
				set[owner] = true
			}
		}
		return nil
	})
	return set
})

// LockFor returns the stored lock for a resolved feature list.
func LockFor(features []string) (Lock, error) {
	key := LockKey(features)
	mod, err1 := fs.ReadFile(depsFS, "deps/"+key+".mod")
	sum, err2 := fs.ReadFile(depsFS, "deps/"+key+".sum")
	if err1 != nil || err2 != nil {
		return Lock{}, fmt.Errorf("no locked Go dependencies for features %q in %s (run make deps)", key, DepsDir)
	}
	return Lock{Require: string(mod), Sum: sum}, nil
}
