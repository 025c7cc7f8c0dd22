package generator

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	readmePath = regexp.MustCompile("`([a-z_./-]+\\.(?:go|sql|sh|yml|cfg|conf|md))`")
	readmeTest = regexp.MustCompile(`\bTest[A-Z][A-Za-z]*`)
)

// The README of every combination names only files the project has and
// tests that exist in it: a feature that is off leaves no trace there.
func TestReadmeNamesWhatExists(t *testing.T) {
	for _, combo := range Combinations() {
		for _, lb := range LBs {
			a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: lb, Replicas: 3, Port: 8080}
			files, err := Generate(a)
			if err != nil {
				t.Fatal(err)
			}
			readme := files["README.md"]
			for _, m := range readmePath.FindAllSubmatch(readme, -1) {
				if _, ok := files[string(m[1])]; !ok {
					t.Errorf("%v %s: README.md names %s, which the project does not have", combo, lb, m[1])
				}
			}
			for _, name := range readmeTest.FindAll(readme, -1) {
				found := false
				for _, b := range files {
					if bytes.Contains(b, append(append([]byte("func "), name...), '(')) {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("%v %s: README.md names %s, which no test file defines", combo, lb, name)
				}
			}
		}
	}
}

// A value the README states of the compose file ("`stop_grace_period`
// (50s)", "`CLUSTER_MODE` (`true` in `docker-compose.yml`)") is the one the
// compose file has, for every project: both come from the same template
// data, and this catches a README that writes its own number.
func TestReadmeNumbersMatchCompose(t *testing.T) {
	stated := regexp.MustCompile("`([A-Za-z_]+)` \\(`?([0-9A-Za-z.]+)`?(?: in `docker-compose.yml`)?\\)")
	checked := 0
	for _, combo := range Combinations() {
		if !slices.Contains(combo, "compose") {
			continue
		}
		for _, lb := range LBs {
			a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: lb, Replicas: 3, Port: 8080}
			files, err := Generate(a)
			if err != nil {
				t.Fatal(err)
			}
			compose := string(files["docker-compose.yml"])
			for _, m := range stated.FindAllStringSubmatch(string(files["README.md"]), -1) {
				key, value := m[1], m[2]
				line := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `:\s*"?([^"\s#]+)"?`).FindStringSubmatch(compose)
				if line == nil {
					continue // not a compose setting (a PostgreSQL one, say)
				}
				checked++
				if line[1] != value {
					t.Errorf("%v %s: README.md says %s is %s, docker-compose.yml has %s", combo, lb, key, value, line[1])
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no README value of a compose setting was found to check")
	}
}

var (
	// errorCodeInCode finds the codes of error replies in the httpapi
	// package: the code argument of writeError, or the code of the two
	// assignments that choose one (code, msg = "busy", ...; msg, errCode
	// = ..., "not_found").
	errorCodeInCode = regexp.MustCompile(`writeError\([^,()]+, [^,()]+, [^,()]+, "([a-z_]+)"|\bcode, msg :?= "([a-z_]+)"|(?m)\bmsg, errCode :?= .*, "([a-z_]+)"$`)
	errorCodesLine  = regexp.MustCompile("(?s)The codes are(.*?)\\(a 500")
	errorCodeInText = regexp.MustCompile("`([a-z_]+)`")
)

// The README's list of error codes is the set the httpapi package can
// send, for every combination: a feature that adds a code says so, and one
// that is off leaves none behind.
func TestReadmeListsErrorCodes(t *testing.T) {
	for _, combo := range Combinations() {
		a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: DefaultLB, Replicas: 3, Port: 8080}
		files, err := Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		inCode := errorCodesSent(t, files)
		line := errorCodesLine.FindSubmatch(files["README.md"])
		if line == nil {
			t.Fatalf("%v: README.md has no sentence \"The codes are ... (a 500\"", combo)
		}
		inReadme := map[string]bool{}
		for _, m := range errorCodeInText.FindAllSubmatch(line[1], -1) {
			inReadme[string(m[1])] = true
		}
		for _, c := range slices.Sorted(maps.Keys(inCode)) {
			if !inReadme[c] {
				t.Errorf("%v: the httpapi package sends error code %q, which README.md does not list", combo, c)
			}
		}
		for _, c := range slices.Sorted(maps.Keys(inReadme)) {
			if !inCode[c] {
				t.Errorf("%v: README.md lists error code %q, which the httpapi package never sends", combo, c)
			}
		}
	}
}

// errorCodesSent are the error codes in the httpapi package's functions
// that something in the package uses: base has writeBodyError, which only
// the routes of db and blob call.
func errorCodesSent(t *testing.T, files map[string][]byte) map[string]bool {
	fset := token.NewFileSet()
	codes := map[string][]string{} // func name -> the codes in its body
	uses := map[string]int{}       // identifier -> times used, declarations aside
	for p, b := range files {
		if !strings.HasPrefix(p, "httpapi/") || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, b, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			body := b[fset.Position(fn.Pos()).Offset:fset.Position(fn.End()).Offset]
			for _, m := range errorCodeInCode.FindAllSubmatch(body, -1) {
				codes[fn.Name.Name] = append(codes[fn.Name.Name], string(m[1])+string(m[2])+string(m[3]))
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				ast.Inspect(n.Body, func(n ast.Node) bool {
					if id, ok := n.(*ast.Ident); ok {
						uses[id.Name]++
					}
					return true
				})
				return false
			case *ast.Ident:
				uses[n.Name]++
			}
			return true
		})
	}
	out := map[string]bool{}
	for name, cs := range codes {
		if uses[name] > 0 {
			for _, c := range cs {
				out[c] = true
			}
		}
	}
	return out
}
