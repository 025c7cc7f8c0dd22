//go:build !windows

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	expect "github.com/Netflix/go-expect"
	"github.com/creack/pty"
	"github.com/hinshun/vt10x"

	"github.com/scaffoldhq/scaffold/generator"
)

// The interactive flow on a real pseudo-terminal, the way survey tests its own
// prompts: the command reads from and draws on the slave end of a pty (a
// terminal, so the CLI prompts), the test types on the master end through
// go-expect, and vt10x plays the terminal emulator: it answers survey's cursor
// position queries (ESC[6n) and keeps the screen, which failures print.
//
// The tests do not run in parallel: urfave/cli writes to its package-level
// HelpFlag on every run, so run is not safe to call from two goroutines.
//
// How the test keeps in step with the prompts, without sleeping:
//
//   - go-expect reads the pty only inside an Expect call, and vt10x answers a
//     cursor query only when Expect hands it over. A line typed right after
//     an input prompt's text is therefore in the pty before the answers to
//     that prompt's queries, and survey keeps input that comes before them.
//   - survey draws a prompt first and only then puts the terminal in raw
//     mode. Keys sent before that wait in the line discipline and reach
//     survey all the same, except Ctrl-C: in cooked mode the kernel turns it
//     into a signal (to no process here) and drops it. So before Ctrl-C the
//     test waits for the cursor-hide that survey's input and confirm prompts
//     write after switching to raw mode.

// Keys as a terminal sends them.
const (
	keyEnter = "\r"
	keySpace = " "
	keyDown  = "\x1b[B"
	keyLeft  = "\x1b[D" // multi-select: uncheck all
	keyCtrlC = "\x03"
	// hideCursor is written by survey's input and confirm prompts once the
	// terminal is in raw mode.
	hideCursor = "\x1b[?25l"
)

// session is one run of the command on a fresh pseudo-terminal.
type session struct {
	t    *testing.T
	c    *expect.Console
	vt   vt10x.Terminal
	seen strings.Builder // everything read from the terminal so far
	done chan error      // the command's result
}

func newSession(t *testing.T) *session {
	t.Helper()
	// vt10x writes its answers to survey's queries into a pipe that the
	// console copies to the terminal's input.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	vt := vt10x.New(vt10x.WithWriter(pw), vt10x.WithSize(80, 24))
	c, err := expect.NewConsole(
		expect.WithStdin(pr),
		expect.WithStdout(vt),
		expect.WithCloser(pw, pr),
		expect.WithDefaultTimeout(10*time.Second),
	)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := pty.Setsize(c.Tty(), &pty.Winsize{Cols: 80, Rows: 24}); err != nil {
		t.Fatal(err)
	}
	return &session{t: t, c: c, vt: vt, done: make(chan error, 1)}
}

// run runs the command in process with the terminal as stdin, stdout and
// stderr.
func (s *session) run(args ...string) {
	tty := s.c.Tty()
	go func() {
		err := run(context.Background(), append([]string{"scaffold"}, args...),
			func(string) string { return "" }, tty, tty, tty)
		tty.Close() // the last slave fd: the master reads EOF after the output
		s.done <- err
	}()
}

// exec runs the command as a process (the test binary, which TestMain puts in
// PATH as scaffold) on the terminal, to see its exit status.
func (s *session) exec(args ...string) {
	tty := s.c.Tty()
	cmd := exec.Command("scaffold", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cmd.Process.Kill() }) // if the test fails half-way
	tty.Close()                                // the child holds the slave now
	go func() { s.done <- cmd.Wait() }()
}

// expect waits for text on the terminal.
func (s *session) expect(text string) {
	s.t.Helper()
	out, err := s.c.ExpectString(text)
	s.seen.WriteString(out)
	if err != nil {
		s.fatalf("waiting for %q: %v", text, err)
	}
}

// send types keys.
func (s *session) send(keys ...string) {
	s.t.Helper()
	for _, k := range keys {
		if _, err := s.c.Send(k); err != nil {
			s.fatalf("sending %q: %v", k, err)
		}
	}
}

// wait reads the terminal until the command is over, and returns its error.
func (s *session) wait() error {
	s.t.Helper()
	// Writing the project prints nothing for a while: a longer timeout.
	out, err := s.c.Expect(expect.EOF, expect.PTSClosed, expect.WithTimeout(2*time.Minute))
	s.seen.WriteString(out)
	if err != nil {
		s.fatalf("waiting for the command to end: %v", err)
	}
	select {
	case err := <-s.done:
		return err
	case <-time.After(time.Minute):
		s.fatalf("the terminal is closed but the command has not returned")
		return nil
	}
}

func (s *session) fatalf(format string, args ...any) {
	s.t.Helper()
	var screen []string
	for _, line := range strings.Split(s.vt.String(), "\n") {
		if line = strings.TrimRight(line, " "); line != "" {
			screen = append(screen, "  | "+line)
		}
	}
	s.t.Fatalf(format+"\nscreen:\n%s\nterminal output:\n%q", append(args, strings.Join(screen, "\n"), s.seen.String())...)
}

// pickFeatures is what the interactive test chooses: cache (which needs db),
// blob and compose (so that the load balancer is asked) when they exist,
// else the last feature, else none. It works with
// whatever features the generator has.
func pickFeatures() []string {
	var pick []string
	for _, f := range generator.Features {
		if f.Name == "cache" || f.Name == "blob" || f.Name == "compose" {
			pick = append(pick, f.Name)
		}
	}
	if len(pick) == 0 && len(generator.Features) > 0 {
		pick = []string{generator.Features[len(generator.Features)-1].Name}
	}
	return pick
}

// TestPTYAnswersMakeTheSameTreeAsFlags answers every prompt on a terminal,
// including an invalid module path first, and compares the project with the
// one the same answers give as flags with --yes.
func TestPTYAnswersMakeTheSameTreeAsFlags(t *testing.T) {
	pick := pickFeatures()
	features, added := generator.Resolve(pick)
	const (
		name, module, replicas, port = "shop-api", "example.com/acme/shop", 5, 9090
		lb                           = "nginx" // not the default: the prompt's cursor moves
	)

	dir := filepath.Join(t.TempDir(), "shop")
	s := newSession(t)
	s.run("new", dir)

	s.expect("Project name:")
	s.send(name + keyEnter)

	s.expect("Go module path:")
	const url = "https://github.com/acme/shop" // pasted: refused, with the fix
	s.send(url + keyEnter)
	s.expect("Sorry, your reply was invalid: " + generator.CheckModule(url).Error())
	s.expect("Go module path:") // asked again
	s.send(module + keyEnter)

	if len(generator.Features) > 0 {
		// All are checked to begin with: uncheck all, then walk down the
		// list checking the picked ones.
		s.expect("Features:")
		keys := []string{keyLeft}
		for _, f := range generator.Features {
			if slices.Contains(pick, f.Name) {
				keys = append(keys, keySpace)
			}
			keys = append(keys, keyDown)
		}
		s.send(append(keys, keyEnter)...)
		for _, a := range added {
			s.expect(fmt.Sprintf("%s needs %s, so %s is on too", a.NeededBy, a.Feature, a.Feature))
		}
	}

	s.expect("Load balancer:")
	for range slices.Index(generator.LBs, lb) - slices.Index(generator.LBs, generator.DefaultLB) {
		s.send(keyDown)
	}
	s.send(keyEnter)

	s.expect("App instances behind the load balancer (1..20):")
	s.send(strconv.Itoa(replicas) + keyEnter)
	s.expect("HTTP port (1..65535):")
	s.send(strconv.Itoa(port) + keyEnter)

	list := strings.Join(features, ", ")
	if list == "" {
		list = "none"
	}
	s.expect("features: " + list) // the summary
	s.expect("Generate it?")
	s.send("y" + keyEnter)

	if err := s.wait(); err != nil {
		t.Fatalf("scaffold new on a terminal: %v\n%s", err, s.seen.String())
	}
	if !strings.Contains(s.seen.String(), "wrote "+dir) {
		t.Errorf("no \"wrote %s\" on the terminal:\n%q", dir, s.seen.String())
	}

	got := readAnswers(t, dir)
	wantAnswers := generator.Answers{Name: name, Module: module, Features: features, LB: lb, Replicas: replicas, Port: port}
	if fmt.Sprint(got) != fmt.Sprint(wantAnswers) {
		t.Errorf(".scaffold.yaml answers = %+v, want %+v", got, wantAnswers)
	}

	flagFeatures := strings.Join(pick, ",")
	if flagFeatures == "" {
		flagFeatures = "none"
	}
	flagsDir := filepath.Join(t.TempDir(), "shop")
	var out bytes.Buffer
	err := run(context.Background(), []string{"scaffold", "new", "--yes",
		"--name", name, "--module", module, "--features", flagFeatures, "--lb", lb,
		"--replicas", strconv.Itoa(replicas), "--port", strconv.Itoa(port), flagsDir},
		func(string) string { return "" }, strings.NewReader(""), &out, &out)
	if err != nil {
		t.Fatalf("scaffold new --yes: %v\n%s", err, out.String())
	}
	compareTrees(t, dir, flagsDir, got)
}

// TestPTYCtrlCWritesNothing presses Ctrl-C at a prompt: the command fails, and
// nothing is written, not even a temporary directory beside DIR.
func TestPTYCtrlCWritesNothing(t *testing.T) {
	t.Run("in process, at the module prompt", func(t *testing.T) {
		parent := t.TempDir()
		s := newSession(t)
		s.run("new", filepath.Join(parent, "shop"))
		s.expect("Project name:")
		s.send(keyEnter) // the default
		s.expect("Go module path:")
		s.expect(hideCursor)
		s.send(keyCtrlC)
		err := s.wait()
		if err == nil || !strings.Contains(err.Error(), "interrupted, nothing written") {
			t.Errorf("run after Ctrl-C = %v, want an \"interrupted, nothing written\" error", err)
		}
		assertEmpty(t, parent)
	})
	t.Run("as a process, at the confirm", func(t *testing.T) {
		parent := t.TempDir()
		s := newSession(t)
		s.exec("new", "--name", "shop", "--module", "example.com/shop", "--features", "none",
			"--lb", "nginx", "--replicas", "2", "--port", "8081", filepath.Join(parent, "shop"))
		s.expect("Generate it?")
		s.expect(hideCursor)
		s.send(keyCtrlC)
		err := s.wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Errorf("scaffold after Ctrl-C: %v, want exit status 130", err)
		}
		if !strings.Contains(s.seen.String(), "scaffold: interrupted, nothing written") {
			t.Errorf("no one-line interrupted message on the terminal:\n%q", s.seen.String())
		}
		assertEmpty(t, parent)
	})
}

// TestPTYAsksOnlyWhatFlagsDidNotGive gives the name and module as flags: their
// prompts never appear, and Enter takes the defaults of the others.
func TestPTYAsksOnlyWhatFlagsDidNotGive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x")
	s := newSession(t)
	s.run("new", "--name", "x", "--module", "example.com/x", dir)
	if len(generator.Features) > 0 {
		s.expect("Features:")
		s.send(keyEnter)
	}
	s.expect("Load balancer:")
	s.send(keyEnter)
	s.expect("App instances behind the load balancer (1..20):")
	s.send(keyEnter)
	s.expect("HTTP port (1..65535):")
	s.send(keyEnter)
	s.expect("Generate it?")
	s.send(keyEnter)
	if err := s.wait(); err != nil {
		t.Fatalf("scaffold new on a terminal: %v\n%s", err, s.seen.String())
	}
	for _, q := range []string{"Project name", "Go module path"} {
		if strings.Contains(s.seen.String(), q) {
			t.Errorf("asked %q although the flag gave it:\n%q", q, s.seen.String())
		}
	}
	features, _ := generator.Resolve(generator.DefaultFeatures())
	want := generator.Answers{Name: "x", Module: "example.com/x", Features: features,
		LB: generator.DefaultLB, Replicas: generator.DefaultReplicas, Port: generator.DefaultPort}
	if got := readAnswers(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf(".scaffold.yaml answers = %+v, want %+v", got, want)
	}
}

func readAnswers(t *testing.T, dir string) generator.Answers {
	t.Helper()
	file := filepath.Join(dir, generator.AnswersFileName)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fa, err := generator.ParseFile(file, data)
	if err != nil {
		t.Fatal(err)
	}
	return fa.Answers
}

// compareTrees checks that two projects hold the same files with the same
// bytes, except the secrets (random by design), which only have to exist in
// both.
func compareTrees(t *testing.T, dirA, dirB string, a generator.Answers) {
	t.Helper()
	secrets, err := generator.Secrets(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := treeDiff(dirA, dirB, secrets)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("interactive (%s) and --yes (%s) trees: %s", dirA, dirB, d)
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("written although interrupted: %s", filepath.Join(dir, e.Name()))
	}
}

// TestPTYNonEmptyDirFailsBeforeAsking runs on a terminal into a non-empty DIR:
// the error comes before the first question, not after the last.
func TestPTYNonEmptyDirFailsBeforeAsking(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "used")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSession(t)
	s.exec("new", dir)
	s.expect("scaffold: " + dir + " is not empty")
	err := s.wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("scaffold into a non-empty DIR: %v, want exit status 1", err)
	}
	if strings.Contains(s.seen.String(), "Project name") {
		t.Errorf("asked a question before refusing DIR:\n%q", s.seen.String())
	}
}

// TestPTYNoComposeAsksNoLB chooses features without compose: the load
// balancer and replicas change nothing then, so they are not asked, and
// .scaffold.yaml records their defaults.
func TestPTYNoComposeAsksNoLB(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x")
	s := newSession(t)
	s.run("new", "--name", "x", "--module", "example.com/x", "--features", "db", dir)
	s.expect("HTTP port")
	s.send(keyEnter)
	s.expect("Generate it?")
	s.send(keyEnter)
	if err := s.wait(); err != nil {
		t.Fatalf("scaffold new on a terminal: %v\n%s", err, s.seen.String())
	}
	for _, q := range []string{"Load balancer", "App instances"} {
		if strings.Contains(s.seen.String(), q) {
			t.Errorf("asked %q without compose:\n%q", q, s.seen.String())
		}
	}
	want := generator.Answers{Name: "x", Module: "example.com/x", Features: []string{"db"},
		LB: generator.DefaultLB, Replicas: generator.DefaultReplicas, Port: generator.DefaultPort}
	if got := readAnswers(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf(".scaffold.yaml answers = %+v, want %+v", got, want)
	}
}

// TestPTYNameDefaultIsValid: a DIR that is not a valid name pre-fills the
// name it gives, which Enter takes.
func TestPTYNameDefaultIsValid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "My_Service")
	s := newSession(t)
	s.run("new", "--module", "example.com/x", "--features", "none", "--port", "8080", dir)
	s.expect("Project name:")
	s.expect("(my-service)")
	s.send(keyEnter)
	s.expect("Generate it?")
	s.send(keyEnter)
	if err := s.wait(); err != nil {
		t.Fatalf("scaffold new on a terminal: %v\n%s", err, s.seen.String())
	}
	if got := readAnswers(t, dir).Name; got != "my-service" {
		t.Errorf(".scaffold.yaml name = %q, want my-service", got)
	}
}

// screen is what the terminal shows now, lines trimmed.
func (s *session) screen() string {
	var lines []string
	for _, line := range strings.Split(s.vt.String(), "\n") {
		lines = append(lines, strings.TrimRight(line, " "))
	}
	return strings.Join(lines, "\n")
}

// TestPTYPromptHelpAndErrors: every question has ? help, the numbers show
// their bounds, errors in prompts name no flag, and an empty feature choice
// shows "none".
func TestPTYPromptHelpAndErrors(t *testing.T) {
	t.Run("without compose", func(t *testing.T) {
		parent := t.TempDir()
		s := newSession(t)
		s.run("new", "--name", "x", "--module", "example.com/x", filepath.Join(parent, "x"))
		s.expect("Features:")
		s.send("?")
		s.expect("Space turns the feature under the cursor on or off")
		s.send(keyLeft, keyEnter) // none
		s.expect("HTTP port (1..65535):")
		if !strings.Contains(s.screen(), "? Features: none") {
			t.Errorf("an empty choice does not show none:\n%s", s.screen())
		}
		s.send("?" + keyEnter)
		s.expect("The port each instance listens on")
		s.expect("HTTP port (1..65535):")
		s.send("0" + keyEnter)
		s.expect("port 0 is out of range (use a number between 1 and 65535)")
		s.expect("HTTP port (1..65535):")
		s.send("80x" + keyEnter)
		s.expect(`"80x" is not a whole number`)
		s.expect("HTTP port (1..65535):")
		s.send(keyEnter)
		s.expect("Generate it?")
		s.send("?" + keyEnter)
		s.expect("n ends without writing anything")
		s.expect("Generate it?")
		s.send("n" + keyEnter)
		if err := s.wait(); err == nil || !strings.Contains(err.Error(), "not confirmed") {
			t.Errorf("run after n = %v, want a \"not confirmed\" error", err)
		}
		if strings.Contains(s.seen.String(), "--") {
			t.Errorf("a prompt names a flag:\n%q", s.seen.String())
		}
		assertEmpty(t, parent)
	})
	t.Run("with compose", func(t *testing.T) {
		parent := t.TempDir()
		s := newSession(t)
		s.run("new", "--module", "example.com/x", "--features", "compose", filepath.Join(parent, "x"))
		s.expect("Project name:")
		s.send("?" + keyEnter)
		s.expect("used for the binary, the service and the compose project")
		s.expect("Project name:")
		s.send("X" + keyEnter)
		s.expect(`invalid name "X" (use lowercase letters, digits and '-', starting with a letter, at most 63 characters, e.g. my-shop)`)
		s.expect("Project name:")
		s.send(keyEnter)
		s.expect("Load balancer:")
		s.send("?")
		s.expect("What spreads requests over the instances")
		s.send(keyEnter)
		s.expect("App instances behind the load balancer (1..20):")
		s.send("?" + keyEnter)
		s.expect("How many copies of the app docker compose starts")
		s.send("21" + keyEnter)
		s.expect("replicas 21 is out of range (use a number between 1 and 20)")
		s.expect("App instances behind the load balancer (1..20):")
		s.expect(hideCursor)
		s.send(keyCtrlC)
		if err := s.wait(); err == nil || !strings.Contains(err.Error(), "interrupted, nothing written") {
			t.Errorf("run after Ctrl-C = %v, want an \"interrupted, nothing written\" error", err)
		}
		if strings.Contains(s.seen.String(), "--") {
			t.Errorf("a prompt names a flag:\n%q", s.seen.String())
		}
		assertEmpty(t, parent)
	})
}

// TestPTYCtrlDWritesNothing: Ctrl-D at a question ends the command like
// Ctrl-C, where survey would take it as Enter and accept the default.
func TestPTYCtrlDWritesNothing(t *testing.T) {
	parent := t.TempDir()
	s := newSession(t)
	s.run("new", "--module", "example.com/x", "--features", "none", "--port", "8080", filepath.Join(parent, "shop"))
	s.expect("Project name:")
	s.expect(hideCursor)
	s.send("\x04")
	err := s.wait()
	if err == nil || !strings.Contains(err.Error(), "input ended (Ctrl-D), nothing written") {
		t.Errorf("run after Ctrl-D = %v, want an \"input ended (Ctrl-D), nothing written\" error", err)
	}
	assertEmpty(t, parent)
}
