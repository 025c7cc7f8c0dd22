package generator

import "strings"

// The manifest is the one place that says which files a generated project
// has. Every file in the template tree belongs to exactly one entry (a test
// checks that), and a feature exists for the generator only when it has an
// entry here: until then `scaffold new` does not offer it.
//
// To add a feature: add its entry to Features (in canonical order), put its
// templates under templates/, list its Go modules in Requires, then run
// `make deps golden reference`.

// Feature is one entry of the manifest.
type Feature struct {
	// Name is what users type in --features and what templates see as a
	// boolean (.DB, .Cache, ...).
	Name string
	// Description is one line for `scaffold features` and the prompt.
	Description string
	// Needs lists features that must be on when this one is; choosing this
	// feature adds them (with a message).
	Needs []string
	// Files are the output paths this entry owns: an exact path
	// ("go.mod"), a directory ending in "/" ("internal/postgres/") or a
	// path.Match pattern ("migrations/*.sql"). Paths are those of the
	// generated project, so a template templates/go.mod.tmpl is owned by
	// "go.mod".
	Files []string
	// Requires are the Go modules the feature's code imports directly, as
	// "module@version". `make deps` resolves them into the go.mod/go.sum
	// of every combination (see generator/deps).
	Requires []string
	// Secrets, if set, makes files with random content (like a .env) when
	// the project is written. They are not part of the deterministic
	// output: golden trees and reference-app do not hold them.
	Secrets SecretsFunc
}

// Base is the part of every generated project.
var Base = Feature{
	Name:        "",
	Description: "the web service: HTTP server, health checks, config, logs",
	Files: []string{
		".gitignore",
		"README.md",
		"cmd/server/",
		"go.mod",
	},
}

// Features are the features the generator offers, in canonical order (the
// order of --features in .scaffold.yaml and in `scaffold features`).
// db, cache, blob, worker and compose are added here as their templates land.
var Features = []Feature{}

// Combinations are all valid feature sets (each with what it needs), in a
// stable order, the empty set first. The matrix test builds each one and
// `make deps` locks the Go dependencies of each.
func Combinations() [][]string {
	seen := map[string]bool{}
	var out [][]string
	for mask := 0; mask < 1<<len(Features); mask++ {
		var picked []string
		for i, f := range Features {
			if mask&(1<<i) != 0 {
				picked = append(picked, f.Name)
			}
		}
		resolved, added := Resolve(picked)
		key := strings.Join(resolved, ",")
		if len(added) > 0 || seen[key] {
			continue // the same set arrives without additions too
		}
		seen[key] = true
		out = append(out, resolved)
	}
	return out
}
