// Package conformance runs the generated all-features project's own tests,
// the cluster conformance test included, once per load balancer.
package conformance

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
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

// TestConformance runs `go test ./...` in each tree: unit and integration
// tests against real PostgreSQL, Redis and MinIO, then the cluster test,
// which starts the compose topology as local processes behind the real load
// balancer. With CI set, a missing server binary fails instead of skipping.
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
			// -p 1: one package at a time, as `make test` does in the
			// project, so the cluster test has the machine to itself.
			cmd := exec.Command("go", "test", "-count=1", "-p", "1", "-v", "-timeout", "20m", "./...")
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
