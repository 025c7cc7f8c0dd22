package generator

import (
	"bytes"
	"regexp"
	"slices"
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
