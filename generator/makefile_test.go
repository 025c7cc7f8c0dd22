package generator

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// generateEach calls f with the files of the project of every combination
// of features (behind haproxy: the load balancer changes none of what these
// tests check).
func generateEach(t *testing.T, f func(combo []string, files map[string][]byte)) {
	t.Helper()
	for _, combo := range Combinations() {
		a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: "haproxy", Replicas: 3, Port: 8080}
		files, err := Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		f(combo, files)
	}
}

// writeFiles writes the named generated files into a new directory.
func writeFiles(t *testing.T, files map[string][]byte, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, files[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// helperTargets are phony targets that only other targets use; `make help`
// leaves them out.
var helperTargets = []string{"compose-plugin"}

// `make` alone and `make help` list every target a user runs, each with its
// one line.
func TestMakeHelp(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	generateEach(t, func(combo []string, files map[string][]byte) {
		makefile := string(files["Makefile"])
		phony := regexp.MustCompile(`(?m)^\.PHONY:(.*)$`).FindStringSubmatch(makefile)
		if phony == nil {
			t.Fatalf("%v: Makefile has no .PHONY line", combo)
		}
		dir := writeFiles(t, files, "Makefile")
		for _, args := range [][]string{nil, {"help"}} {
			out, err := exec.Command(makeBin, append([]string{"-s", "-C", dir}, args...)...).CombinedOutput()
			if err != nil {
				t.Errorf("%v: make %v: %v\n%s", combo, args, err, out)
				continue
			}
			for _, target := range strings.Fields(phony[1]) {
				if slices.Contains(helperTargets, target) {
					continue
				}
				if !regexp.MustCompile(`(?m)^  make ` + regexp.QuoteMeta(target) + ` +\S`).Match(out) {
					t.Errorf("%v: make %v does not list %s with its line:\n%s", combo, args, target, out)
				}
			}
		}
	})
}

// The README quotes the commands of `make test` as the Makefile has them.
func TestReadmeQuotesMakeTest(t *testing.T) {
	generateEach(t, func(combo []string, files map[string][]byte) {
		recipe := regexp.MustCompile(`(?m)^test:.*\n((?:\t.*\n)+)`).FindStringSubmatch(string(files["Makefile"]))
		if recipe == nil {
			t.Fatalf("%v: Makefile has no test target", combo)
		}
		var commands []string
		for _, line := range strings.Split(strings.TrimSpace(recipe[1]), "\n") {
			commands = append(commands, strings.TrimSpace(line))
		}
		said := regexp.MustCompile("`make test` runs `([^`]+)` and `([^`]+)`").FindStringSubmatch(string(files["README.md"]))
		if said == nil || !slices.Equal(said[1:], commands) {
			t.Errorf("%v: README.md says `make test` runs %q, the Makefile runs %q", combo, said, commands)
		}
	})
}

// Without Docker's compose plugin, the compose targets say what to install
// instead of failing on "unknown flag: --build".
func TestMakeComposeTargetsNeedThePlugin(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	checked := 0
	generateEach(t, func(combo []string, files map[string][]byte) {
		if !slices.Contains(combo, "compose") {
			return
		}
		checked++
		dir := writeFiles(t, files, "Makefile", ".env.example")
		os.WriteFile(filepath.Join(dir, ".env"), nil, 0o600)
		// A docker without the compose plugin: every command fails.
		stubs, calls := filepath.Join(dir, "stubs"), filepath.Join(dir, "calls")
		os.Mkdir(stubs, 0o755)
		stub := "#!/bin/sh\necho \"$*\" >>" + calls + "\necho 'unknown flag: --build' >&2\nexit 1\n"
		if err := os.WriteFile(filepath.Join(stubs, "docker"), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{"up", "down", "logs", "ps"} {
			os.Remove(calls)
			cmd := exec.Command(makeBin, "-s", "-C", dir, target)
			cmd.Env = append(os.Environ(), "PATH="+stubs+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			ran, _ := os.ReadFile(calls)
			if err == nil || !strings.Contains(string(out), "compose plugin") || !strings.Contains(string(out), "install") {
				t.Errorf("%v: make %s without the compose plugin: %v\n%s\nwant a failure that says what to install", combo, target, err, out)
			}
			if strings.TrimSpace(string(ran)) != "compose version" {
				t.Errorf("%v: make %s without the compose plugin ran docker %q, want only `docker compose version`", combo, target, ran)
			}
		}
	})
	if checked == 0 {
		t.Fatal("no combination with compose")
	}
}

// The README's Set up says how to run one instance without Docker, with the
// variables it needs, for every set of features.
func TestReadmeRunsOneInstance(t *testing.T) {
	generateEach(t, func(combo []string, files map[string][]byte) {
		readme := string(files["README.md"])
		setup, _, _ := strings.Cut(readme[strings.Index(readme, "## Set up"):][1:], "\n## ")
		run := regexp.MustCompile(`(?m)^    (.*)make run$`).FindStringSubmatch(setup)
		switch {
		case run == nil:
			t.Errorf("%v: the Set up section of README.md gives no `make run` command:\n%s", combo, setup)
		case slices.Contains(combo, "db") && !strings.Contains(run[1], "DATABASE_URL="):
			t.Errorf("%v: README.md runs %q without DATABASE_URL, which the db feature needs", combo, run[0])
		}
		if !regexp.MustCompile(`(?m)^run:`).Match(files["Makefile"]) {
			t.Errorf("%v: the Makefile has no run target", combo)
		}
	})
}

// firstScreen is how many lines of the README a user sees before scrolling
// much: what `make test` does with sudo must be said there.
const firstScreen = 60

// Where `make test` installs packages with sudo apt-get, the README's first
// screen says so, and names every TEST_* variable of testsupport, which
// point the tests at servers already running instead.
func TestReadmeFirstScreenSaysSudo(t *testing.T) {
	getenv := regexp.MustCompile(`Getenv\("(TEST_[A-Z0-9_]+)"\)`)
	generateEach(t, func(combo []string, files map[string][]byte) {
		if _, ok := files["scripts/install-servers.sh"]; !ok {
			return
		}
		lines := strings.SplitAfter(string(files["README.md"]), "\n")
		first := strings.Join(lines[:min(firstScreen, len(lines))], "")
		if (slices.Contains(combo, "db") || slices.Contains(combo, "compose")) && !strings.Contains(first, "sudo apt-get install") {
			t.Errorf("%v: the first %d lines of README.md do not say that make test runs sudo apt-get install", combo, firstScreen)
		}
		for name, b := range files {
			if !strings.HasPrefix(name, "testsupport/") {
				continue
			}
			for _, m := range getenv.FindAllStringSubmatch(string(b), -1) {
				if !strings.Contains(first, m[1]+"=") {
					t.Errorf("%v: the first %d lines of README.md do not show %s (read by %s)", combo, firstScreen, m[1], name)
				}
			}
		}
	})
}
