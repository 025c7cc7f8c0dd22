package matrix

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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

// clusterChecks are a few checks of the cluster conformance test, so that a
// topology starts for real behind its load balancer (the whole test runs in
// internal/conformance). They run in the tested combinations (testedCombos)
// with compose, and in one more for each topology those leave out: the
// compose services, which db, cache and blob decide (topology). Running them
// in every combination with compose would take 18 starts, about 6 minutes
// more of make test, since lock doubled the combinations with db.
var clusterChecks = []string{"go", "test", "-count=1", "-run", "^(TestRoundRobin|TestClusterModeRefusesSingleNodeDefaults|TestLogs)$", "./clustertest/"}

// otherPort is the non-default port the matrix gives half of the projects.
const otherPort = 9090

// answerRows are the answers besides the features, with every feature on:
// together with the feature combinations (replicas 3, both load balancers,
// both ports) they hold every pair of values of replicas (1, 2, 3, 20),
// load balancer and port (TestMatrixCoversPairs checks it). Their project
// names are short, as users' are ("r1" is also too short for an S3
// bucket, which once kept such a project from starting).
var answerRows = []generator.Answers{
	{Name: "r1", Replicas: 1, LB: "haproxy", Port: generator.DefaultPort},
	{Name: "r1n", Replicas: 1, LB: "nginx", Port: otherPort},
	{Name: "r2", Replicas: 2, LB: "haproxy", Port: otherPort},
	{Name: "r2n", Replicas: 2, LB: "nginx", Port: generator.DefaultPort},
	{Name: "r20", Replicas: 20, LB: "haproxy", Port: otherPort},
	{Name: "r20n", Replicas: 20, LB: "nginx", Port: generator.DefaultPort},
}

// replicaChecks are what the number of replicas, the load balancer and the
// port change: the package whose code has the port in it (config; the
// others differ from the "all" project's only in the module path, and the
// cluster tests below start the binary), and the cluster tests whose
// meaning depends on the number of instances (with one, the leader tests
// expect it to lead again after its fault). The load balancer fault tests
// need a second instance (with one they skip,
// saying why), and the rolling restart of 20 instances takes 5 minutes
// behind nginx (each restarted instance waits out fail_timeout): those run
// for 2 instances, and in full for 3 in internal/conformance.
//
// Each start of 20 instances costs seconds on 2 cores, so 20 runs only what
// checks the start at that scale: every instance in rotation, one
// migration run among 20, one leader among 20 and its takeover. go vet is
// left to the feature combinations: these projects differ from the "all"
// one only in constants.
func replicaChecks(replicas int) [][]string {
	tests := "TestRoundRobin|TestMigrationsOnce|TestOneLeader"
	switch {
	case replicas == 1:
		tests += "|TestLogs|TestLeaderPaused|TestRollingRestart|TestRobustWorker"
	case replicas < 5:
		tests += "|TestLogs|TestLeaderPaused|TestRollingRestart|TestLBCrashBurst|TestLBFrozenInstance"
	}
	return [][]string{
		{"go", "build", "./..."},
		{"go", "test", "-count=1", "-short", "./config/"},
		{"go", "test", "-count=1", "-run", "^(" + tests + ")$", "./clustertest/"},
	}
}

type project struct {
	name    string
	answers generator.Answers
	steps   [][]string
}

// testedCombos names the feature combinations (with k8s, as projects
// runs them) whose go test runs in the matrix: none, all (whose tests run in
// internal/conformance), then, picked greedily in the order of
// generator.Combinations, combinations until every pair of values of two
// features (on or off, as the features' needs allow) is in one of them.
// Every other combination is built, vetted and tidied: what it could get
// wrong that the tested ones cannot is code that does not compile, and
// tests that depend on three features at once. Running them all took 20
// combinations' tests, about 12 minutes of make test on 2 cores.
func testedCombos() map[string]bool {
	var combos [][]string
	for _, c := range generator.Combinations() {
		if slices.Contains(c, "k8s") {
			combos = append(combos, c)
		}
	}
	need := map[string]bool{}
	for _, c := range combos {
		for _, p := range featurePairs(c) {
			need[p] = true
		}
	}
	tested := map[string]bool{}
	take := func(c []string) {
		tested[strings.Join(c, "+")] = true
		for _, p := range featurePairs(c) {
			delete(need, p)
		}
	}
	take(combos[0])
	take(combos[len(combos)-1])
	for len(need) > 0 {
		best, most := 0, 0
		for i, c := range combos {
			n := 0
			for _, p := range featurePairs(c) {
				if need[p] {
					n++
				}
			}
			if n > most {
				best, most = i, n
			}
		}
		take(combos[best])
	}
	return tested
}

// topology names the compose services a combination has besides the app
// and the load balancer.
func topology(combo []string) string {
	var services []string
	for _, f := range []string{"db", "cache", "blob"} {
		if slices.Contains(combo, f) {
			services = append(services, f)
		}
	}
	return strings.Join(services, "+")
}

// featurePairs lists, for every two features, their values in combo
// ("db=true cache=false").
func featurePairs(combo []string) []string {
	var out []string
	names := generator.FeatureNames()
	for i, a := range names {
		for _, b := range names[i+1:] {
			out = append(out, fmt.Sprintf("%s=%t %s=%t", a, slices.Contains(combo, a), b, slices.Contains(combo, b)))
		}
	}
	return out
}

// projects are the feature combinations, then the answer rows.
func projects() []project {
	var out []project
	tested := testedCombos()
	started := map[string]bool{} // topologies whose cluster checks run
	for _, combo := range generator.Combinations() {
		if tested[strings.Join(combo, "+")] && slices.Contains(combo, "compose") {
			started[topology(combo)] = true
		}
	}
	i := 0
	for _, combo := range generator.Combinations() {
		// k8s adds deploy/k8s/ and README lines, no Go code: a combination
		// builds and tests the same with it as without it, so only the one
		// with it runs (and internal/k8scheck checks its manifests).
		if !slices.Contains(combo, "k8s") {
			continue
		}
		name := strings.Join(combo, "+")
		if name == "" {
			name = "none"
		}
		a := generator.Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo,
			LB:       generator.LBs[i%len(generator.LBs)], // both load balancers
			Replicas: generator.DefaultReplicas,
			Port:     []int{generator.DefaultPort, otherPort}[i/len(generator.LBs)%2], // and both ports with each
		}
		steps := checks
		if len(combo) == len(generator.Features) || !tested[name] {
			// Every feature: internal/conformance runs all of its tests
			// (in reference-app; the cluster test again in all-nginx).
			// Other combinations
			// outside the pairwise set: their code compiles and vets here;
			// their tests are those of the tested ones (see testedCombos).
			// Either way build, vet and tidy run, for this load balancer
			// and port.
			steps = checks[:len(checks)-1]
		}
		if a.Has("compose") && (tested[name] || !started[topology(combo)]) {
			started[topology(combo)] = true
			steps = append(steps[:len(steps):len(steps)], clusterChecks)
		}
		out = append(out, project{name, a, steps})
		i++
	}
	for _, r := range answerRows {
		a := r
		a.Module, a.Features = "example.com/acme/"+r.Name, generator.FeatureNames()
		out = append(out, project{fmt.Sprintf("all,replicas=%d,lb=%s,port=%d", a.Replicas, a.LB, a.Port), a, replicaChecks(a.Replicas)})
	}
	return out
}

func TestMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: the matrix builds every feature combination")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("the matrix needs the go command on PATH")
	}
	sem := make(chan struct{}, workers)
	for _, pr := range projects() {
		a, name := pr.answers, pr.name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
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
			for _, args := range pr.steps {
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
			t.Logf("%s (lb %s, replicas %d, port %d): %v", name, a.LB, a.Replicas, a.Port, time.Since(start).Round(time.Millisecond))
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

// TestMatrixCoversPairs checks the claim of answerRows: every pair of
// values of replicas, load balancer and port is in some project with
// compose, counting the trees internal/conformance tests in full (3
// replicas, port 8080, each load balancer).
func TestMatrixCoversPairs(t *testing.T) {
	type row struct {
		replicas int
		lb       string
		port     int
	}
	rows := []row{{3, "haproxy", generator.DefaultPort}, {3, "nginx", generator.DefaultPort}}
	for _, p := range projects() {
		if p.answers.Has("compose") {
			rows = append(rows, row{p.answers.Replicas, p.answers.LB, p.answers.Port})
		}
	}
	have := map[string]bool{}
	for _, r := range rows {
		have[fmt.Sprintf("replicas=%d lb=%s", r.replicas, r.lb)] = true
		have[fmt.Sprintf("replicas=%d port=%d", r.replicas, r.port)] = true
		have[fmt.Sprintf("lb=%s port=%d", r.lb, r.port)] = true
	}
	for _, n := range []int{generator.MinReplicas, 2, generator.DefaultReplicas, generator.MaxReplicas} {
		for _, lb := range generator.LBs {
			for _, port := range []int{generator.DefaultPort, otherPort} {
				for _, pair := range []string{
					fmt.Sprintf("replicas=%d lb=%s", n, lb),
					fmt.Sprintf("replicas=%d port=%d", n, port),
					fmt.Sprintf("lb=%s port=%d", lb, port),
				} {
					if !have[pair] {
						t.Errorf("no project of the matrix has %s", pair)
						have[pair] = true // once
					}
				}
			}
		}
	}
}

// TestMatrixTestsFeaturePairs checks the claim of testedCombos: every pair
// of values of two features that some combination has is in a combination
// whose tests run, and so are the smallest and the largest.
func TestMatrixTestsFeaturePairs(t *testing.T) {
	tested := testedCombos()
	var withK8s [][]string
	for _, c := range generator.Combinations() {
		if slices.Contains(c, "k8s") {
			withK8s = append(withK8s, c)
		}
	}
	for _, c := range [][]string{withK8s[0], generator.FeatureNames()} {
		if !tested[strings.Join(c, "+")] {
			t.Errorf("%s is not tested", strings.Join(c, "+"))
		}
	}
	have := map[[4]any]bool{}
	for _, c := range withK8s {
		if !tested[strings.Join(c, "+")] {
			continue
		}
		for _, a := range generator.FeatureNames() {
			for _, b := range generator.FeatureNames() {
				have[[4]any{a, slices.Contains(c, a), b, slices.Contains(c, b)}] = true
			}
		}
	}
	for _, c := range withK8s {
		for _, a := range generator.FeatureNames() {
			for _, b := range generator.FeatureNames() {
				if p := [4]any{a, slices.Contains(c, a), b, slices.Contains(c, b)}; !have[p] {
					t.Errorf("no tested combination has %s=%t and %s=%t (%s has)", a, p[1], b, p[3], strings.Join(c, "+"))
					have[p] = true
				}
			}
		}
	}
	t.Logf("%d of %d combinations tested: %v", len(tested), len(withK8s), slices.Sorted(maps.Keys(tested)))
}
