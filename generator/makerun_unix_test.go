//go:build unix

package generator

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ctrl-C on `make run` stops the instance at once and cleanly, and make
// reports no error: the terminal sends SIGINT to the whole process group
// (make and what it runs), as this test does. It builds the smallest
// project, so it is skipped with -short.
func TestMakeRunCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a project")
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: nil, LB: "haproxy", Replicas: 1, Port: 8080}
	files, err := Generate(a)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range files {
		names = append(names, name)
	}
	dir := writeFiles(t, files, names...)

	cmd := exec.Command(makeBin, "-C", dir, "run")
	cmd.Env = append(os.Environ(), "PORT=0", "GOWORK=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	wait := func(until time.Time, stop func(string) bool) bool {
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					return false
				}
				seen = append(seen, line)
				if stop(line) {
					return true
				}
			case <-time.After(time.Until(until)):
				return false
			}
		}
	}
	if !wait(time.Now().Add(2*time.Minute), func(l string) bool { return strings.Contains(l, `"msg":"listening"`) }) {
		t.Fatalf("make run: not listening:\n%s", strings.Join(seen, "\n"))
	}
	sent := time.Now()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	wait(time.Now().Add(30*time.Second), func(string) bool { return false })
	cmd.Wait()
	all := strings.Join(seen, "\n")
	if d := time.Since(sent); d > 2*time.Second {
		t.Errorf("make run took %v to stop after Ctrl-C, want at once", d.Round(time.Millisecond))
	}
	if !strings.Contains(all, `"msg":"stopped"`) || strings.Contains(all, "make: ***") {
		t.Errorf("make run after Ctrl-C printed:\n%s\nwant a clean stop (\"stopped\") and no error from make", all)
	}
}
