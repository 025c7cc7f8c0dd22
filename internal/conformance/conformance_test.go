// Package conformance runs the generated all-features project's own tests,
// the cluster conformance test included, once per load balancer.
package conformance

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// -update has nothing to rewrite here; it is defined so that
// `go test ./... -update` (which rewrites the golden trees) runs.
var _ = flag.Bool("update", false, "ignored")

// trees are generated projects kept in the repository, each checked by
// its golden or reference test to be the generator's output: reference-app
// puts haproxy (the default) in front, all-nginx nginx.
var trees = map[string]string{
	"haproxy": "../../reference-app",
	"nginx":   "../../testdata/golden/all-nginx/tree",
}

// TestConformance runs `go test ./...` in reference-app: unit and
// integration tests against real PostgreSQL, Redis and MinIO, then the
// cluster test, which starts the compose topology as local processes behind
// the real load balancer. In all-nginx it runs the packages whose code, or
// whose dependencies' code, differs from reference-app's: the cluster test
// (the rest is byte for byte the same, and took minutes more). With CI
// set, a missing server binary fails instead of skipping.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: runs the whole cluster conformance test twice")
	}
	for _, lb := range []string{"haproxy", "nginx"} {
		t.Run(lb, func(t *testing.T) {
			dir, err := filepath.Abs(trees[lb])
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			pkgs := []string{"./..."}
			if lb != "haproxy" {
				// Only the packages that differ from reference-app's (the
				// cluster test, whose load balancer differs) run again.
				pkgs, err = changedPackages(dir, must(filepath.Abs(trees["haproxy"])))
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("packages that differ from reference-app's, tested again: %s", strings.Join(pkgs, " "))
			}
			// -p 1: one package at a time, as `make test` does in the
			// project, so the cluster test has the machine to itself.
			cmd := exec.Command("go", append([]string{"test", "-count=1", "-p", "1", "-v", "-timeout", "20m"}, pkgs...)...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOWORK=off")
			out, err := cmd.CombinedOutput()
			// The lines worth keeping: package results, failures, skips,
			// and the measurements the cluster test prints at its end.
			measuring := false
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "--- cluster conformance measurements") {
					measuring = true
				}
				if measuring || strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "FAIL") ||
					strings.Contains(line, "--- FAIL") || strings.Contains(line, "--- SKIP") {
					t.Log(line)
				}
				if measuring && strings.HasPrefix(line, "total test time:") {
					measuring = false
				}
			}
			if err != nil {
				t.Fatalf("go test ./... in %s: %v\n%s", dir, err, testLines(string(out)))
			}
			t.Logf("all tests of %s passed in %v", trees[lb], time.Since(start).Round(time.Second))
		})
	}
}

// testLines keeps what the tests said from go test -v output: their own
// log lines (file_test.go:N) with the lines that continue them (indented
// deeper: a multi-line message, an instance's last words), and results,
// without the servers' and the app's logs.
func testLines(out string) string {
	const maxContinued = 40 // lines kept of one message
	var keep []string
	msgIndent, continued := -1, 0 // indentation of the last test message kept
	for _, line := range strings.Split(out, "\n") {
		trimmed := strings.TrimSpace(line)
		indent := len(line) - len(strings.TrimLeft(line, " \t"))
		if msgIndent >= 0 && indent > msgIndent && trimmed != "" {
			if continued < maxContinued {
				keep = append(keep, line)
			}
			continued++
			continue
		}
		msgIndent, continued = -1, 0
		if strings.Contains(line, "_test.go:") || strings.HasPrefix(trimmed, "--- ") ||
			strings.HasPrefix(trimmed, "FAIL") || strings.HasPrefix(trimmed, "ok ") ||
			strings.HasPrefix(trimmed, "panic") {
			if !strings.HasPrefix(trimmed, "--- testsupport:") {
				keep = append(keep, line)
			}
			if strings.Contains(line, "_test.go:") && !strings.Contains(line, "testsupport:") {
				msgIndent = indent
			}
		}
	}
	return strings.Join(keep, "\n")
}

// changedPackages lists the packages of the module in dir that must be
// tested again after the same tests passed in base: those with a file that
// differs from, or is missing in, the same directory of base, and those
// whose test binary links one of these. With another go.mod or go.sum, it
// is every package.
func changedPackages(dir, base string) ([]string, error) {
	if !sameFile(filepath.Join(dir, "go.sum"), filepath.Join(base, "go.sum")) ||
		!sameFile(filepath.Join(dir, "go.mod"), filepath.Join(base, "go.mod")) {
		return []string{"./..."}, nil
	}
	// One line per package and per test binary (P.test): its import path,
	// its directory, every package it links.
	cmd := exec.Command("go", "list", "-test", "-f", `{{if not .ForTest}}{{.ImportPath}} {{.Dir}}{{range .Deps}} {{.}}{{end}}{{end}}`, "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list in %s: %w", dir, err)
	}
	dirOf := map[string]string{}
	var lines [][]string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			dirOf[f[0]] = f[1]
			lines = append(lines, f)
		}
	}
	differs := map[string]bool{}
	for path, d := range dirOf {
		rel, err := filepath.Rel(dir, d)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // the standard library and other modules: the same go.sum
		}
		if !sameDir(d, filepath.Join(base, rel)) {
			differs[path] = true
		}
	}
	var pkgs []string
	for _, f := range lines {
		pkg, ok := strings.CutSuffix(f[0], ".test")
		if !ok {
			continue
		}
		for _, dep := range append([]string{pkg}, f[2:]...) {
			if differs[dep] {
				rel, err := filepath.Rel(dir, dirOf[pkg])
				if err != nil {
					return nil, err
				}
				pkgs = append(pkgs, "./"+filepath.ToSlash(rel))
				break
			}
		}
	}
	slices.Sort(pkgs)
	return pkgs, nil
}

// sameDir reports whether two directories hold the same files, with the
// same bytes, and the same subdirectories (compared too: a package may
// embed or read files below it).
func sameDir(a, b string) bool {
	ea, errA := os.ReadDir(a)
	eb, errB := os.ReadDir(b)
	if errA != nil || errB != nil || len(ea) != len(eb) {
		return false
	}
	for i := range ea {
		x, y := filepath.Join(a, ea[i].Name()), filepath.Join(b, eb[i].Name())
		switch {
		case ea[i].Name() != eb[i].Name() || ea[i].IsDir() != eb[i].IsDir():
			return false
		case ea[i].IsDir() && !sameDir(x, y), !ea[i].IsDir() && !sameFile(x, y):
			return false
		}
	}
	return true
}

func sameFile(a, b string) bool {
	ba, errA := os.ReadFile(a)
	bb, errB := os.ReadFile(b)
	return errA == nil && errB == nil && bytes.Equal(ba, bb)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
