package generator

import (
	"bytes"
	"regexp"
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
