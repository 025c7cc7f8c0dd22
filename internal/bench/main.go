// Command bench is `make bench` in this repository: it runs the generated
// project's benchmark on reference-app/ (make -C reference-app bench, which
// prints the table) and adds the row that only the generator can measure:
// generation, and the "through the load balancer" row of the nginx golden
// tree after haproxy's. The generator binary is built once; `scaffold new` of the
// "all" preset and `go build ./...` of the result are timed 3 times each
// (median), with the shared module and build caches warm, as a developer
// who already built reference-app has them.
//
//	go run ./internal/bench            # from the repository root
//	go run ./internal/bench -skip-cluster   # the generation row only
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	skip := flag.Bool("skip-cluster", false, "measure generation only")
	flag.Parse()
	if err := run(*skip, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(skipCluster bool, stdout, stderr io.Writer) error {
	gen, err := generation(stderr)
	if err != nil {
		return err
	}
	if skipCluster {
		fmt.Fprintln(stdout, "| row | what | measured | reference | ratio |\n| --- | --- | --- | --- | --- |")
		fmt.Fprintln(stdout, gen)
		return nil
	}
	// The generated project's benchmark; its output is passed on with the
	// generation row added after the table's last row.
	var out bytes.Buffer
	cmd := exec.Command("make", "-C", "reference-app", "bench")
	cmd.Stdout = io.MultiWriter(&out, stderr) // progress while it runs
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("make -C reference-app bench: %w", err)
	}
	lines := strings.Split(out.String(), "\n")
	last := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "| ") {
			last = i
		}
	}
	if last < 0 {
		return fmt.Errorf("make -C reference-app bench printed no table")
	}
	// reference-app puts haproxy in front; the same read through nginx
	// comes from the nginx golden tree, as the row after haproxy's.
	if lb, err := nginxRow(stderr); err != nil {
		return err
	} else if i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "| through the load balancer |") }); i >= 0 {
		lines = slices.Insert(lines, i+1, lb)
		last++
	}
	lines = slices.Insert(lines, last+1, gen)
	// Only the table and the line above it (the machine), not go test's output.
	first := last
	for first > 0 && strings.HasPrefix(lines[first-1], "| ") {
		first--
	}
	if first >= 2 {
		first -= 2 // the machine line and the blank line after it
	}
	fmt.Fprintln(stdout, "\n--- make bench ---")
	fmt.Fprintln(stdout, strings.Join(lines[first:last+2], "\n"))
	return nil
}

// nginxRow runs the "through the load balancer" row of the nginx golden
// tree's benchmark (the same test, the other load balancer) and returns it.
func nginxRow(stderr io.Writer) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command("go", "test", "-count=1", "-run", "^$", "-bench", "^BenchmarkCluster$", "-benchtime", "1x", "-timeout", "15m", "./clustertest/")
	cmd.Dir = "testdata/golden/all-nginx/tree"
	cmd.Env = append(os.Environ(), "GOWORK=off", "BENCH_ROWS=lb")
	cmd.Stdout = io.MultiWriter(&out, stderr)
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("the nginx tree's benchmark: %w", err)
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "| through the load balancer |") {
			return l, nil
		}
	}
	return "", fmt.Errorf("the nginx tree's benchmark printed no load balancer row")
}

// generation measures scaffold new and go build, and returns the table row.
func generation(stderr io.Writer) (string, error) {
	tmp, err := os.MkdirTemp("", "scaffold-bench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "scaffold")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/scaffold").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/scaffold: %v\n%s", err, out)
	}
	var gens, builds []time.Duration
	for i := range 3 {
		dir := filepath.Join(tmp, fmt.Sprintf("shop%d", i))
		t0 := time.Now()
		cmd := exec.Command(bin, "new", "--yes", "--answers", "testdata/golden/all/answers.yaml", dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("scaffold new: %v\n%s", err, out)
		}
		gens = append(gens, time.Since(t0))
		t0 = time.Now()
		cmd = exec.Command("go", "build", "./...")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./... in the generated project: %v\n%s", err, out)
		}
		builds = append(builds, time.Since(t0))
	}
	fmt.Fprintf(stderr, "bench: scaffold new %v, go build %v\n", gens, builds)
	return fmt.Sprintf("| generation | `scaffold new` of the `all` preset, then `go build ./...` of the result (median of 3; module and build caches warm) | scaffold new %s, go build %s | - | - |",
		ms(median(gens)), ms(median(builds))), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
