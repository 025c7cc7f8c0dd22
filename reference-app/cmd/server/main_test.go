package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/acme/shop/config"
	"example.com/acme/shop/testsupport"
)

// TestMain lets testsupport stop the servers the tests started.
func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }

// unusedDatabaseURL satisfies the config of commands that never connect.
const unusedDatabaseURL = "postgres://unused@127.0.0.1:1/unused"

// instance is the service started in-process through run, as main would.
type instance struct {
	URL    string
	cancel context.CancelFunc // what SIGTERM does
	done   chan error
	mu     sync.Mutex
	lines  []string // JSON log lines written so far
}

// start runs the service with env (PORT=0 picks a free port) and waits for
// its "listening" log line.
func start(t *testing.T, env map[string]string) *instance {
	t.Helper()
	// db: a fresh database per instance, unless the test shares one
	// between instances by setting DATABASE_URL itself.
	if _, ok := env["DATABASE_URL"]; !ok {
		withDB := map[string]string{"DATABASE_URL": testsupport.Postgres(t)}
		maps.Copy(withDB, env)
		env = withDB
	}
	// blob: files in a temporary directory, not in ./data/blobs here.
	if _, ok := env["BLOB_DIR"]; !ok {
		withDir := map[string]string{"BLOB_DIR": t.TempDir()}
		maps.Copy(withDir, env)
		env = withDir
	}
	getenv := func(k string) string {
		if k == "PORT" && env[k] == "" {
			return "0"
		}
		return env[k]
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	in := &instance{cancel: cancel, done: make(chan error, 1)}
	go func() {
		in.done <- run(ctx, []string{"server"}, getenv, pw, io.Discard)
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			in.mu.Lock()
			in.lines = append(in.lines, line)
			in.mu.Unlock()
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
				addr <- l.Addr
			} else if a, ok := textListening(line); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		in.URL = "http://127.0.0.1:" + a[strings.LastIndex(a, ":")+1:]
	case err := <-in.done:
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no listening log line after 30s")
	}
	t.Cleanup(func() {
		cancel()
		<-in.done
	})
	return in
}

// textListening finds the address in the "listening" line of LOG_FORMAT=text.
func textListening(line string) (string, bool) {
	if !strings.Contains(line, " msg=listening ") {
		return "", false
	}
	_, rest, ok := strings.Cut(line, " addr=")
	addr, _, _ := strings.Cut(rest, " ")
	return addr, ok
}

func (in *instance) logs() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.lines...)
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestServeBasics(t *testing.T) {
	in := start(t, map[string]string{"INSTANCE_ID": "test-1", "SHUTDOWN_DRAIN_DELAY": "0s"})

	resp, body := get(t, in.URL+"/healthz")
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, in.URL+"/readyz")
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, in.URL+"/api/instance", "X-Request-ID", "req-42")
	var got struct {
		InstanceID string `json:"instance_id"`
		Version    string `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.InstanceID != "test-1" {
		t.Fatalf("/api/instance = %s (%v), want instance_id test-1", body, err)
	}
	if h := resp.Header.Get("X-Instance-ID"); h != "test-1" {
		t.Errorf("X-Instance-ID = %q, want test-1", h)
	}
	if h := resp.Header.Get("X-Request-ID"); h != "req-42" {
		t.Errorf("X-Request-ID = %q, want the client's req-42 echoed", h)
	}

	// Every log line is JSON and carries the instance id; the request line
	// carries the client's request id. It is written once the response has
	// gone, so it may reach the log just after the client has its answer.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(strings.Join(in.logs(), "\n"), `"request_id":"req-42"`) {
			break
		}
	}
	found := false
	for _, line := range in.logs() {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if l["instance_id"] != "test-1" {
			t.Errorf("log line without instance_id: %s", line)
		}
		if l["msg"] == "request" && l["request_id"] == "req-42" {
			found = true
		}
	}
	if !found {
		t.Errorf("no request log line with request_id req-42 in %q", in.logs())
	}
}

func TestErrorsAreJSON(t *testing.T) {
	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s"})
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/nope", 404, "not_found"},
		{"POST", "/healthz", 405, "method_not_allowed"},
	} {
		req, _ := http.NewRequest(tc.method, in.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error     struct{ Code, Message string }
			RequestID string `json:"request_id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.status || body.Error.Code != tc.code || body.RequestID == "" {
			t.Errorf("%s %s: %d %+v (%v), want %d %s with a request id", tc.method, tc.path, resp.StatusCode, body, err, tc.status, tc.code)
		}
	}
}

// TestGracefulShutdown checks the order that loses no request: readiness
// turns 503 first while requests are still served, then run returns nil.
// The drain delay is long so that a loaded machine still sees it.
func TestGracefulShutdown(t *testing.T) {
	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "3s"})
	in.cancel()
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp, _ := get(t, in.URL+"/readyz")
		if resp.StatusCode == http.StatusServiceUnavailable {
			if !resp.Close {
				t.Errorf("draining response without Connection: close")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d while draining", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Still draining: requests are served.
	if resp, body := get(t, in.URL+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("/healthz while draining: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatalf("run after SIGTERM: %v, want nil (exit 0)", err)
		}
		in.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after drain")
	}
}

func TestHealthcheckCommand(t *testing.T) {
	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s"})
	port := in.URL[strings.LastIndex(in.URL, ":")+1:]
	getenv := func(k string) string {
		if k == "PORT" {
			return port
		}
		if k == "DATABASE_URL" {
			return unusedDatabaseURL
		}
		return ""
	}
	if err := run(context.Background(), []string{"server", "healthcheck"}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatalf("healthcheck of a ready instance: %v", err)
	}
	in.cancel()
	<-in.done
	in.done <- nil
	if err := run(context.Background(), []string{"server", "healthcheck"}, getenv, io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck of a stopped instance succeeded")
	}
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	env := map[string]string{"PORT": "99999"}
	err := run(context.Background(), []string{"server"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PORT") {
		t.Fatalf("run with PORT=99999: %v, want an error naming PORT", err)
	}
}

// noEnv is an environment where nothing is set.
func noEnv(string) string { return "" }

// An unknown command is a usage error (exit status 2) that says where the
// commands are listed, whatever the environment.
func TestUnknownCommand(t *testing.T) {
	err := run(context.Background(), []string{"server", "bogus"}, noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"bogus"`) || !strings.Contains(err.Error(), "server --help") {
		t.Fatalf("run bogus: %v, want an error naming \"bogus\" and server --help", err)
	}
	if code := exitCode(err); code != 2 {
		t.Errorf("exit status of an unknown command = %d, want 2", code)
	}
}

// help needs no configuration (where DATABASE_URL is not set, say) and
// lists the commands and every variable config.Load reads.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		var out strings.Builder
		if err := run(context.Background(), []string{"/some/dir/shop", arg}, noEnv, &out, io.Discard); err != nil {
			t.Fatalf("shop %s with no environment: %v, want the help", arg, err)
		}
		help := out.String()
		want := []string{"Usage: shop [command]", "healthcheck", "version", "migrate", "DATABASE_URL          required", "  jobs  ",
			"SHUTDOWN_DRAIN_DELAY  0s, 3s when CLUSTER_MODE=true"}
		for _, v := range config.Vars() {
			want = append(want, "  "+v.Name+" ")
		}
		for _, w := range want {
			if !strings.Contains(help, w) {
				t.Errorf("shop %s does not show %q:\n%s", arg, w, help)
			}
		}
	}
}

// version needs no configuration and says what the binary was built from.
func TestVersion(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), []string{"server", "version"}, noEnv, &out, io.Discard); err != nil {
		t.Fatalf("server version with no environment: %v", err)
	}
	for _, w := range []string{"version:  " + version, "module:   ", "revision: ", "go:       " + runtime.Version()} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("server version does not show %q:\n%s", w, out.String())
		}
	}
}

// LOG_FORMAT=text writes slog's text lines, for a terminal.
func TestLogFormatText(t *testing.T) {
	in := start(t, map[string]string{"LOG_FORMAT": "text"})
	get(t, in.URL+"/api/instance")
	for _, line := range in.logs() {
		if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " instance_id=") {
			t.Errorf("LOG_FORMAT=text wrote %q, want a text line with the instance id", line)
		}
	}
}

// Ctrl-C on an instance outside cluster mode stops it at once (no drain
// delay: no load balancer is waiting) and, the stop being clean, with exit
// status 0, so that neither a terminal nor make reports a failure. The
// binary is built and run as a user would.
func TestInterruptStopsAtOnce(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send on Windows")
	}
	bin := filepath.Join(t.TempDir(), "server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"PORT=0", "PATH=" + os.Getenv("PATH")}
	cmd.Env = append(cmd.Env, "DATABASE_URL="+testsupport.Postgres(t))
	cmd.Env = append(cmd.Env, "BLOB_DIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	listening, exited := make(chan bool, 1), make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"msg":"listening"`) {
				listening <- true
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-listening:
	case err := <-exited:
		t.Fatalf("exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not listening after 30s")
	}
	sent := time.Now()
	cmd.Process.Signal(os.Interrupt)
	// Far below the 3s drain of cluster mode, with room for a loaded machine.
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after Ctrl-C: %v, want exit status 0", err)
		}
		if d := time.Since(sent); d > 1500*time.Millisecond {
			t.Errorf("stopped %v after Ctrl-C, want at once (no drain delay outside cluster mode)", d.Round(time.Millisecond))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30s after Ctrl-C")
	}
}
