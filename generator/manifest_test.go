package generator

import (
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/scaffoldhq/scaffold/templates"
)

// Every template belongs to exactly one manifest entry, and every pattern of
// the manifest matches at least one template: no orphans, no dead entries.
func TestManifestCoversTemplates(t *testing.T) {
	paths, err := TemplatePaths()
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no templates")
	}
	var outs []string
	for _, p := range paths {
		out := strings.TrimSuffix(p, ".tmpl")
		outs = append(outs, out)
		if _, _, err := Owner(out); err != nil {
			t.Errorf("templates/%s: %v", p, err)
		}
	}
	for _, e := range Entries() {
		for _, pat := range e.Patterns() {
			if _, err := path.Match(pat, ""); err != nil {
				t.Errorf("%s: bad pattern %q: %v", e.label(), pat, err)
				continue
			}
			if !slices.ContainsFunc(outs, func(out string) bool { return matchFile(pat, out) }) {
				t.Errorf("%s: %q matches no template (remove it, or add its templates)", e.label(), pat)
			}
		}
	}
}

// Go sources in the template tree must end in .tmpl: a plain .go file would
// be compiled (and tested) as part of this module, and a plain go.mod would
// cut its directory out of the module and out of the embedded tree.
func TestNoPlainGoFiles(t *testing.T) {
	paths, err := TemplatePaths()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if strings.HasSuffix(p, ".go") || path.Base(p) == "go.mod" || path.Base(p) == "go.sum" {
			t.Errorf("templates/%s: rename it to %s.tmpl", p, path.Base(p))
		}
		if path.Base(p) == AnswersFileName || p == "go.sum.tmpl" {
			t.Errorf("templates/%s: the generator writes %s itself", p, strings.TrimSuffix(p, ".tmpl"))
		}
	}
}

func TestManifestEntries(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Features {
		if f.Name == "" || f.Name == "all" || f.Name == "none" || f.Name == "base" || strings.ContainsAny(f.Name, ", +") {
			t.Errorf("feature name %q is reserved or unusable", f.Name)
		}
		if seen[f.Name] {
			t.Errorf("feature %q is listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Description == "" {
			t.Errorf("feature %q has no description", f.Name)
		}
		for conds := range f.With {
			for _, cond := range strings.Split(conds, "|") {
				if _, ok := lookup(cond); !ok && !slices.Contains(LBs, strings.TrimPrefix(cond, "lb=")) {
					t.Errorf("feature %q: With condition %q is neither a feature nor lb=<load balancer>", f.Name, cond)
				}
			}
		}
		if len(f.Files) == 0 {
			t.Errorf("feature %q owns no files", f.Name)
		}
		for _, n := range f.Needs {
			if _, ok := lookup(n); !ok || n == f.Name {
				t.Errorf("feature %q needs %q, which is not another feature", f.Name, n)
			}
		}
	}
	for _, e := range Entries() {
		for _, r := range e.Requires {
			mod, ver, ok := strings.Cut(r, "@")
			if err := module.Check(mod, ver); !ok || err != nil {
				t.Errorf("%s: requirement %q is not module@version: %v", e.label(), r, err)
			}
		}
	}
	if len(Base.Requires) > 0 {
		t.Errorf("the base has Requires; it should stay on the standard library")
	}
}

// Every combination renders for every load balancer.
func TestGenerateEveryCombination(t *testing.T) {
	for _, combo := range Combinations() {
		for _, lb := range LBs {
			a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: lb, Replicas: 2, Port: 9090}
			files, err := Generate(a)
			if err != nil {
				t.Fatalf("%v %s: %v", combo, lb, err)
			}
			for _, want := range []string{"go.mod", AnswersFileName} {
				if _, ok := files[want]; !ok {
					t.Errorf("%v: no %s", combo, want)
				}
			}
		}
	}
}

// Template fragments (templates/F.d/NAME.tmpl) are parts of F's template:
// each ends in .tmpl, its F is a template, no project gets it as a file,
// and every name it defines is included by F's template, so that a section
// moved into a fragment cannot silently drop out of the output.
func TestFragments(t *testing.T) {
	paths, err := TemplatePaths()
	if err != nil {
		t.Fatal(err)
	}
	define := regexp.MustCompile(`\{\{-?\s*define\s+"([^"]+)"`)
	found := 0
	for _, p := range paths {
		parent, ok := FragmentOf(strings.TrimSuffix(p, ".tmpl"))
		if !ok {
			continue
		}
		found++
		if !strings.HasSuffix(p, ".tmpl") {
			t.Errorf("templates/%s: a fragment must end in .tmpl", p)
			continue
		}
		parentSrc, err := fs.ReadFile(templates.FS, parent+".tmpl")
		if err != nil {
			t.Errorf("templates/%s: no template %s.tmpl to be a fragment of", p, parent)
			continue
		}
		src, err := fs.ReadFile(templates.FS, p)
		if err != nil {
			t.Fatal(err)
		}
		names := define.FindAllStringSubmatch(string(src), -1)
		if len(names) == 0 {
			names = [][]string{{"", path.Base(strings.TrimSuffix(p, ".tmpl"))}}
		}
		for _, m := range names {
			if !strings.Contains(string(parentSrc), `{{template "`+m[1]+`"`) {
				t.Errorf("templates/%s defines %q, which templates/%s.tmpl does not include", p, m[1], parent)
			}
		}
	}
	if found == 0 {
		t.Fatal("no fragments found")
	}
	for _, combo := range Combinations() {
		files, err := Generate(Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: "nginx", Replicas: 2, Port: 8080})
		if err != nil {
			t.Fatal(err)
		}
		for p := range files {
			if _, ok := FragmentOf(p); ok {
				t.Errorf("%v: fragment %s written as a file", combo, p)
			}
		}
	}
}

// The base's Go, Markdown and Makefile templates are shared by every
// feature: each feature's part there is a line or a small block (opening its
// client, an include of its fragment), its code being in files it owns. A
// block `{{- if .Feature}}` ... `{{- end}}` longer than this says that code
// belongs in cmd/server/<feature>.go, config/<feature>.go or a fragment. The
// shell script and the compose file are not held to it: a block of either
// is read best in place.
func TestSharedFilesBlockPerFeature(t *testing.T) {
	const maxLines = 12
	paths, err := TemplatePaths()
	if err != nil {
		t.Fatal(err)
	}
	start := regexp.MustCompile(`^\{\{- if \.[A-Z]\w*\}\}$`)
	action := regexp.MustCompile(`\{\{-?\s*(if|range|with|define|block|end)\b`)
	for _, p := range paths {
		out := strings.TrimSuffix(p, ".tmpl")
		if ok, _ := Base.Owns(out); !ok || !(strings.HasSuffix(out, ".go") || strings.HasSuffix(out, ".md") || out == "Makefile") {
			continue
		}
		src, err := fs.ReadFile(templates.FS, p)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(src), "\n")
		for i := 0; i < len(lines); i++ {
			if !start.MatchString(lines[i]) {
				continue
			}
			depth, j := 1, i+1
			for ; j < len(lines) && depth > 0; j++ {
				for _, m := range action.FindAllStringSubmatch(lines[j], -1) {
					if m[1] == "end" {
						depth--
					} else {
						depth++
					}
				}
			}
			if n := j - i - 2; n > maxLines {
				t.Errorf("templates/%s:%d: %s holds %d lines; move them to a file or fragment the feature owns", p, i+1, lines[i], n)
			}
			i = j - 1
		}
	}
}
