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

// withK8s are the feature combinations the matrix generates: those with
// k8s, which adds deploy/k8s/ and README lines but no Go code, so that a
// combination builds and tests the same with it as without it
// (internal/k8scheck checks its manifests).
func withK8s() [][]string {
	var out [][]string
	for _, c := range generator.Combinations() {
		if slices.Contains(c, "k8s") {
			out = append(out, c)
		}
	}
	return out
}

// testedCombos names the combinations whose go test runs in the matrix:
// none, all (whose tests run in internal/conformance), then, picked
// greedily in the order of generator.Combinations, combinations until every
// pair of values of two features (on or off, as the features' needs allow)
// is in one of them. Running every combination's tests took 20
// combinations, about 12 minutes of make test on 2 cores, before lock
// doubled them.
func testedCombos() map[string]bool {
	combos := withK8s()
	return cover(combos, 2, [][]string{combos[0], combos[len(combos)-1]})
}

// builtCombos names the combinations the matrix builds and vets: the tested
// ones, then more, picked the same way, until every three features' values
// are in one of them. A combination's own code can only break where
// features meet in a shared file (an import used by two features, a block
// inside another's); a mistake that needs four features at once to show
// is what building every combination would add, and each feature after
// lock doubled their number.
func builtCombos() map[string]bool {
	combos, picked := withK8s(), testedCombos()
	var tested [][]string
	for _, c := range combos {
		if picked[strings.Join(c, "+")] {
			tested = append(tested, c)
		}
	}
	return cover(combos, 3, tested)
}

// cover takes the combinations of start, then greedily the combination that
// holds the most value tuples of k features not yet held, until every
// tuple some combination holds is held. It returns their names.
func cover(combos [][]string, k int, start [][]string) map[string]bool {
	need := map[string]bool{}
	for _, c := range combos {
		for _, p := range featureTuples(c, k) {
			need[p] = true
		}
	}
	picked := map[string]bool{}
	take := func(c []string) {
		picked[strings.Join(c, "+")] = true
		for _, p := range featureTuples(c, k) {
			delete(need, p)
		}
	}
	for _, c := range start {
		take(c)
	}
	for len(need) > 0 {
		best, most := 0, 0
		for i, c := range combos {
			n := 0
			for _, p := range featureTuples(c, k) {
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
	return picked
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

// featureTuples lists, for every k features (in the manifest's order),
// their values in combo ("db=true cache=false" for k = 2).
func featureTuples(combo []string, k int) []string {
	var out []string
	var walk func(from int, prefix []string)
	walk = func(from int, prefix []string) {
		if len(prefix) == k {
			out = append(out, strings.Join(prefix, " "))
			return
		}
		names := generator.FeatureNames()
		for i := from; i < len(names); i++ {
			walk(i+1, append(prefix[:len(prefix):len(prefix)], fmt.Sprintf("%s=%t", names[i], slices.Contains(combo, names[i]))))
		}
	}
	walk(0, nil)
	return out
}

// projects are the feature combinations, then the answer rows.
func projects() []project {
	var out []project
	tested, built := testedCombos(), builtCombos()
	started := map[string]bool{} // topologies whose cluster checks run
	for _, combo := range withK8s() {
		if tested[strings.Join(combo, "+")] && slices.Contains(combo, "compose") {
			started[topology(combo)] = true
		}
	}
	i := 0
	for _, combo := range withK8s() {
		name := strings.Join(combo, "+")
		if !built[name] {
			continue
		}
		a := generator.Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo,
			LB:       generator.LBs[i%len(generator.LBs)], // both load balancers
			Replicas: generator.DefaultReplicas,
			Port:     []int{generator.DefaultPort, otherPort}[i/len(generator.LBs)%2], // and both ports with each
		}
		steps := checks
		switch {
		case len(combo) == len(generator.Features):
			// Every feature: internal/conformance runs all of its tests
			// (in reference-app; the cluster test again in all-nginx).
			// Build, vet and tidy run here for this load balancer and port.
			steps = checks[:len(checks)-1]
		case !tested[name]:
			// Outside the pairwise set: the code type-checks and vets
			// (go vet compiles every package and its tests; go build
			// would only add linking) and go.mod is tidy. Its tests are
			// those of the tested ones (see testedCombos).
			steps = checks[1 : len(checks)-1]
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
	combos := withK8s()
	for _, c := range [][]string{combos[0], generator.FeatureNames()} {
		if !tested[strings.Join(c, "+")] {
			t.Errorf("%s is not tested", strings.Join(c, "+"))
		}
	}
	checkHolds(t, "tested", tested, 2)
	t.Logf("%d of %d combinations tested: %v", len(tested), len(combos), slices.Sorted(maps.Keys(tested)))
}

// TestMatrixBuildsFeatureTriples checks the claim of builtCombos: every
// three features' values that some combination has are in a combination
// that projects builds and vets, and so is every tested combination.
func TestMatrixBuildsFeatureTriples(t *testing.T) {
	vetted := map[string]bool{}
	for _, p := range projects() {
		if !strings.Contains(p.name, ",") && slices.ContainsFunc(p.steps, func(s []string) bool { return s[1] == "vet" }) {
			vetted[p.name] = true
		}
	}
	for name := range testedCombos() {
		if !vetted[name] {
			t.Errorf("the tested combination %s is not vetted", name)
		}
	}
	checkHolds(t, "vetted", vetted, 3)
	t.Logf("%d of %d combinations vetted", len(vetted), len(withK8s()))
}

// checkHolds fails unless every k features' values (k = 2 or 3) that some
// combination has are those of a combination in picked. It walks the
// features itself rather than trusting featureTuples.
func checkHolds(t *testing.T, what string, picked map[string]bool, k int) {
	t.Helper()
	names := generator.FeatureNames()
	key := func(c []string, f ...int) string {
		var parts []string
		for _, i := range f[:k] {
			parts = append(parts, fmt.Sprintf("%s=%t", names[i], slices.Contains(c, names[i])))
		}
		return strings.Join(parts, " ")
	}
	have := map[string]bool{}
	each := func(c []string, visit func(string)) {
		for a := range names {
			for b := a + 1; b < len(names); b++ {
				if k == 2 {
					visit(key(c, a, b))
					continue
				}
				for d := b + 1; d < len(names); d++ {
					visit(key(c, a, b, d))
				}
			}
		}
	}
	for _, c := range withK8s() {
		if picked[strings.Join(c, "+")] {
			each(c, func(p string) { have[p] = true })
		}
	}
	for _, c := range withK8s() {
		each(c, func(p string) {
			if !have[p] {
				t.Errorf("no %s combination has %s (%s has)", what, p, strings.Join(c, "+"))
				have[p] = true
			}
		})
	}
}

// TestReadmeMatrixNumbers checks that the repository README states the
// matrix's numbers as projects makes them.
func TestReadmeMatrixNumbers(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Join(strings.Fields(string(b)), " ")
	vetted := 0
	for _, p := range projects() {
		if !strings.Contains(p.name, ",") {
			vetted++
		}
	}
	for _, want := range []string{
		fmt.Sprintf("(%d of them;", len(withK8s())),
		fmt.Sprintf("`go mod tidy -diff` in %d, chosen", vetted),
		fmt.Sprintf("`go test -short ./...` run in %d of those", len(testedCombos())),
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md, The matrix: no %q; write the numbers the matrix has", want)
		}
	}
}
