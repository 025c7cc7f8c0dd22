package matrix

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scaffoldhq/scaffold/generator"
)

// -update has nothing to rewrite here; it is defined so that
// `go test ./... -update` (which rewrites the golden trees) runs.
var _ = flag.Bool("update", false, "ignored")

// workers bounds how many combinations build at once. The machines this
// runs on have 2 cores and each go command is parallel itself; more would
// only thrash.
const workers = 2

// The checks each generated project must pass, in order. They share the
// default GOCACHE and GOMODCACHE, so each combination after the first builds
// mostly from cache.
var checks = [][]string{
	{"go", "build", "./..."},
	{"go", "vet", "./..."},
	{"go", "mod", "tidy", "-diff"},
	// -short: the cluster conformance test (clustertest) skips itself; it
	// runs in full on reference-app and the all-nginx tree instead (see
	// internal/conformance). Every other test, against real servers, runs.
	// -p 1: one package at a time in each project, so that with two
	// projects at once no more than two packages, each with its own
	// PostgreSQL or Redis, share the 2 cores: the election tests (leases of
	// 200ms) timed out connecting when four did.
	{"go", "test", "-count=1", "-short", "-p", "1", "./..."},
}

// clusterChecks run in every combination with compose: a few checks of the
// cluster conformance test, so that each combination's topology starts for
// real behind its load balancer (the whole test runs in internal/conformance).
var clusterChecks = []string{"go", "test", "-count=1", "-run", "^(TestRoundRobin|TestClusterModeRefusesSingleNodeDefaults|TestLogs)$", "./clustertest/"}

func TestMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: the matrix builds every feature combination")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("the matrix needs the go command on PATH")
	}
	sem := make(chan struct{}, workers)
	for i, combo := range generator.Combinations() {
		name := strings.Join(combo, "+")
		if name == "" {
			name = "none"
		}
		lb := generator.LBs[i%len(generator.LBs)] // both load balancers get used
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			a := generator.Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo,
				LB: lb, Replicas: 3, Port: 8080}
			files, err := generator.Generate(a)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			for p, b := range files {
				target := filepath.Join(dir, filepath.FromSlash(p))
				if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(target, b, generator.FileMode(p)); err != nil {
					t.Fatal(err)
				}
			}
			steps := checks
			if a.Has("compose") {
				steps = append(steps[:len(steps):len(steps)], clusterChecks)
			}
			for _, args := range steps {
				step := time.Now()
				cmd := exec.Command(args[0], args[1:]...)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "GOWORK=off")
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s: %v\n%s\n--- the whole output ---\n%s", strings.Join(args, " "), err, failures(string(out)), out)
				}
				t.Logf("%-20s %v", strings.Join(args[1:], " "), time.Since(step).Round(time.Millisecond))
			}
			t.Logf("features %s (lb %s): %v", name, lb, time.Since(start).Round(time.Millisecond))
		})
	}
}

// failures are the lines of go test output that say what failed: the
// --- FAIL lines and the tests' own messages (file_test.go:N:), put first
// so that a log cut short still shows them.
func failures(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "--- FAIL") || testMessage.MatchString(t) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

var testMessage = regexp.MustCompile(`^\w+_test\.go:\d+: `)
