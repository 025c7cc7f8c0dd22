// Package clustertest is the cluster conformance test: it runs the topology of
// docker-compose.yml as local processes - N instances of the app binary built
// from this project, the real haproxy with deploy/haproxy.cfg, and real
// PostgreSQL, Redis, MinIO started by testsupport - and checks, through the
// load balancer only, that the service behaves as one service.
//
//	make cluster-test
//
// One file per hazard: roundrobin, cache, blob, migrate, leader, restart,
// faults_*, clustermode, logs. Each test starts its own cluster (its own
// servers), so a fault injected by one test never leaks into another.
// render_test.go lists every difference between the deploy files and what
// runs here.
package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

func TestMain(m *testing.M) {
	began := time.Now()
	code := testsupport.Main(m)
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	printMeasurements(time.Since(began))
	os.Exit(code)
}

// build is the app binary, built once per test run from ../cmd/server.
var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func appBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		began := time.Now()
		build.dir, build.err = os.MkdirTemp("", "clustertest-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "server")
		cmd := exec.Command("go", "build", "-o", build.bin, "./cmd/server")
		cmd.Dir = projectDir
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
			return
		}
		record("build of the app binary", time.Since(began))
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// cluster is one running topology.
type cluster struct {
	t      testing.TB
	lbKind string // nginx or haproxy
	lb     *testsupport.Server
	apps   []*instance

	// The dependencies docker-compose.yml gives the app.
	dbURL string
	redis *testsupport.Server
	minio *testsupport.MinIOServer

	client *http.Client

	appsReady time.Duration // from the simultaneous start to all instances ready
}

// startCluster starts the dependencies the compose file's app services
// name, then every app-N at the same moment, then the load balancer. env
// overrides settings of the compose file; the caller says why.
func startCluster(t testing.TB, env map[string]string) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the conformance test starts the whole cluster; run it without -short (make cluster-test)")
	}
	began := time.Now()
	p, err := loadCompose()
	if err != nil {
		t.Fatal(err)
	}
	kind, confPath, err := lbConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	bin := appBinary(t)
	c := &cluster{t: t, lbKind: kind, client: newClient()}

	// Dependencies: those the app's environment asks for.
	appEnv := p.Services[p.Apps[0]].Environment
	if _, ok := appEnv["DATABASE_URL"]; ok {
		c.dbURL = testsupport.Postgres(t)
	}
	if _, ok := appEnv["REDIS_URL"]; ok {
		c.redis = testsupport.Redis(t)
	}
	if _, ok := appEnv["S3_ENDPOINT"]; ok {
		c.minio = testsupport.MinIO(t)
	}

	ports := make([]int, len(p.Apps))
	for i, name := range p.Apps {
		ports[i] = testsupport.FreePort(t)
		e, err := c.instanceEnv(p, p.Services[name].Environment, ports[i], env)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a := &instance{name: name, port: ports[i], bin: bin, env: e}
		viaFaultProxies(t, a)
		c.apps = append(c.apps, a)
	}
	t.Cleanup(func() {
		for _, a := range c.apps {
			a.kill()
		}
		if t.Failed() {
			for _, a := range c.apps {
				t.Logf("--- %s output (last lines) ---\n%s", a.name, a.tail(40))
			}
		}
	})

	// All instances at the same moment, on an empty database: the migration
	// lock is what keeps them from racing.
	appsStarted := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(c.apps))
	gate := make(chan struct{})
	for i, a := range c.apps {
		wg.Go(func() {
			<-gate
			errs[i] = a.start()
		})
	}
	close(gate)
	wg.Wait()
	for i, a := range c.apps {
		if errs[i] != nil {
			t.Fatalf("start %s: %v", a.name, errs[i])
		}
	}
	for _, a := range c.apps {
		if err := a.waitReady(60 * time.Second); err != nil {
			t.Fatalf("%v\n%s", err, a.tail(40))
		}
	}
	c.appsReady = time.Since(appsStarted)

	lbAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testsupport.FreePort(t)))
	rendered, err := renderLB(kind, string(conf), ports, lbAddr)
	if err != nil {
		t.Fatal(err)
	}
	if kind == "haproxy" {
		c.lb = testsupport.HAProxy(t, rendered, lbAddr)
	} else {
		c.lb = testsupport.Nginx(t, rendered, lbAddr)
	}
	t.Logf("cluster of %s (%s) behind %s on %s started in %v", instances(len(c.apps)), strings.Join(p.Apps, " "), kind, lbAddr, time.Since(began).Round(time.Millisecond))
	return c
}

// instances is "1 instance" or "N instances", for messages.
func instances(n int) string {
	if n == 1 {
		return "1 instance"
	}
	return fmt.Sprintf("%d instances", n)
}

// instanceEnv is the environment of one app-N: what docker-compose.yml gives
// the service, with compose host names mapped to this test's servers (see
// the list at the top of render_test.go). Nothing is inherited from the
// test's own environment. With CLUSTERTEST_APP_ENV, the environment
// is a pod's, from that file (appenv_test.go), mapped the same way.
func (c *cluster) instanceEnv(p *composeProject, compose map[string]string, port int, overrides map[string]string) ([]string, error) {
	env := map[string]string{}
	for k, v := range compose {
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(port)
	if v, ok := env["DATABASE_URL"]; ok {
		if err := wantHost(v, "postgres:5432"); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		env["DATABASE_URL"] = c.dbURL
	}
	if v, ok := env["REDIS_URL"]; ok {
		if err := wantHost(v, "redis:6379"); err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		env["REDIS_URL"] = c.redis.URL
	}
	if v, ok := env["S3_ENDPOINT"]; ok {
		if v != "minio:9000" {
			return nil, fmt.Errorf("S3_ENDPOINT=%q: the test maps minio:9000 only", v)
		}
		env["S3_ENDPOINT"] = c.minio.Endpoint
		env["S3_ACCESS_KEY"] = c.minio.AccessKey
		env["S3_SECRET_KEY"] = c.minio.SecretKey
	}
	for k, v := range overrides {
		env[k] = v
	}
	var out []string
	for k, v := range env {
		for _, svc := range p.Hosts {
			// svc:port, or a longer DNS name of it (Kubernetes:
			// svc.namespace.svc.cluster.local:port).
			if regexp.MustCompile(`\b` + regexp.QuoteMeta(svc) + `(\.[a-z0-9-]+)*:\d`).MatchString(v) {
				return nil, fmt.Errorf("%s=%q still names the service %s: map it in instanceEnv", k, v, svc)
			}
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// viaFaultProxies routes the instance's connections to PostgreSQL and
// Redis through fault proxies of its own: a test can then cut one instance
// off from one dependency while the others keep theirs (robust_test.go).
// With every proxy passing, the only difference is one loopback hop.
func viaFaultProxies(t testing.TB, a *instance) {
	t.Helper()
	for i, kv := range a.env {
		k, v, _ := strings.Cut(kv, "=")
		var proxy **testsupport.FaultProxy
		switch k {
		case "DATABASE_URL":
			proxy = &a.dbProxy
		case "REDIS_URL":
			proxy = &a.redisProxy
		default:
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			t.Fatalf("%s: %s: %v", a.name, k, err)
		}
		*proxy = testsupport.NewFaultProxy(t, u.Host)
		u.Host = (*proxy).Addr
		a.env[i] = k + "=" + u.String()
	}
}

func wantHost(rawURL, host string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if u.Host != host {
		return fmt.Errorf("host %q: the test maps %s only", u.Host, host)
	}
	return nil
}

// instance is one app process. It can be stopped and started again on the
// same port with the same environment, as a container restart would.
type instance struct {
	name string // INSTANCE_ID, e.g. app-1
	port int
	bin  string
	env  []string
	// Its own links to PostgreSQL and Redis (see viaFaultProxies).
	dbProxy    *testsupport.FaultProxy
	redisProxy *testsupport.FaultProxy

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current run ended
	err    error         // the current run's exit, once exited is closed
	runs   int
	lines  []logLine // stdout of every run, line by line
	quiet  bool      // stdout is read but not kept (benchmarks: a line per request)
	stderr bytes.Buffer
}

type logLine struct {
	run  int
	text string
}

func (a *instance) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port)) }

// start runs the binary. Its stdout is kept line by line; Pdeathsig kills it
// if the test binary dies.
func (a *instance) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		select {
		case <-a.exited:
		default:
			return fmt.Errorf("%s is running", a.name)
		}
	}
	a.runs++
	run := a.runs
	cmd := exec.Command(a.bin)
	cmd.Env = a.env
	cmd.Stderr = lockedWriter{&a.mu, &a.stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := startLocked(cmd); err != nil {
		return err
	}
	a.cmd, a.exited = cmd, make(chan struct{})
	exited := a.exited
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			a.mu.Lock()
			if !a.quiet {
				a.lines = append(a.lines, logLine{run, sc.Text()})
			}
			a.mu.Unlock()
		}
		err := cmd.Wait()
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		close(exited)
	}()
	return nil
}

// waitReady waits until the instance's own /readyz answers 200, asking
// every 50ms.
func (a *instance) waitReady(timeout time.Duration) error {
	return a.waitReadyEvery(timeout, 50*time.Millisecond)
}

// waitReadyEvery is waitReady asking every poll. A benchmark that measures
// the time until ready needs a short poll: what it measures is rounded up to
// the next ask, so with 50ms an instance ready after 52ms counts as 100ms.
func (a *instance) waitReadyEvery(timeout, poll time.Duration) error {
	a.mu.Lock()
	exited := a.exited
	a.mu.Unlock()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + a.addr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready: %v", a.name, a.exitErr())
		case <-time.After(poll):
		}
	}
	return fmt.Errorf("%s not ready on %s after %v", a.name, a.addr(), timeout)
}

// signal sends sig and waits up to timeout for the process to exit.
func (a *instance) signal(sig syscall.Signal, timeout time.Duration) error {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v of %v", a.name, timeout, sig)
	}
}

// sendSignal sends sig to the instance's process without waiting for it to
// exit (SIGSTOP, SIGCONT).
func (a *instance) sendSignal(sig syscall.Signal) error {
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s is not running", a.name)
	}
	return cmd.Process.Signal(sig)
}

// stop is what docker compose stop does: SIGTERM, then wait for the drain.
func (a *instance) stop() error { return a.signal(syscall.SIGTERM, 40*time.Second) }

// kill is SIGKILL: no drain, no clean-up, as when a machine dies.
func (a *instance) kill() { _ = a.signal(syscall.SIGKILL, 10*time.Second) }

func (a *instance) exitErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// logLines returns the stdout lines of every run so far.
func (a *instance) logLines() []logLine {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]logLine(nil), a.lines...)
}

func (a *instance) tail(n int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b strings.Builder
	lines := a.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "[run %d] %s\n", l.run, l.text)
	}
	if a.stderr.Len() > 0 {
		fmt.Fprintf(&b, "stderr:\n%s", lastBytes(a.stderr.String(), 4<<10))
	}
	return b.String()
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startLocked starts cmd from one OS thread that lives as long as the test
// binary: Pdeathsig fires when the thread that started the child exits, and
// the Go runtime may end threads while the test still runs.
func startLocked(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked
			for f := range spawner.reqs {
				f()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- func() { done <- cmd.Start() }
	return <-done
}

var spawner struct {
	once sync.Once
	reqs chan func()
}

// byName returns the instance with this INSTANCE_ID.
func (c *cluster) byName(name string) *instance {
	for _, a := range c.apps {
		if a.name == name {
			return a
		}
	}
	c.t.Fatalf("no instance %q answered (X-Instance-ID)", name)
	return nil
}

// restart stops an instance (SIGTERM and drain), starts it again on the same
// port and waits until the load balancer sends it requests again.
func (c *cluster) restart(t testing.TB, a *instance) {
	t.Helper()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	if err := a.waitReady(60 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, a.tail(40))
	}
	c.waitInRotation(t, a, 30*time.Second)
}

// waitInRotation waits until a request through the load balancer reaches a:
// nginx retries a restarted instance after fail_timeout, haproxy after
// "rise" successful health checks.
func (c *cluster) waitInRotation(t testing.TB, a *instance, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r, err := c.do("GET", "/api/instance", nil, nil); err == nil && r.instance == a.name {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the load balancer sent nothing to %s for %v after it was ready", a.name, timeout)
}

// response is a whole HTTP response through the load balancer.
type response struct {
	status   int
	header   http.Header
	body     []byte
	instance string // X-Instance-ID: the instance that served it
}

func (r response) String() string {
	return fmt.Sprintf("%d from %q: %s", r.status, r.instance, bytes.TrimSpace(r.body))
}

// decode unmarshals the JSON body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

func newClient() *http.Client {
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
}

// do sends a request through the load balancer and reads the whole answer.
func (c *cluster) do(method, path string, body []byte, header map[string]string) (response, error) {
	return c.doAt(c.lb.URL, method, path, body, header)
}

// doAt is do against another base URL: "http://" + an instance's addr()
// reaches that instance directly.
func (c *cluster) doAt(base, method, path string, body []byte, header map[string]string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, base+path, rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b, instance: resp.Header.Get("X-Instance-ID")}, nil
}

// must is do that fails the test on an error or an unexpected status.
func (c *cluster) must(t testing.TB, want int, method, path string, body []byte, header map[string]string) response {
	t.Helper()
	r, err := c.do(method, path, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status != want {
		t.Fatalf("%s %s: got %s, want %d", method, path, r, want)
	}
	return r
}

// onEveryInstance sends the request until every instance has answered it
// once, and returns the first answer of each, by instance. Round robin makes
// that about one request per instance; the bound is generous.
func (c *cluster) onEveryInstance(t testing.TB, method, path string, body []byte) map[string]response {
	t.Helper()
	var names []string
	for _, a := range c.apps {
		names = append(names, a.name)
	}
	return c.onInstances(t, names, method, path, body)
}

// onInstances is onEveryInstance for some of the instances (the others are
// stopped); an answer from an instance not in names fails the test.
func (c *cluster) onInstances(t testing.TB, names []string, method, path string, body []byte) map[string]response {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	seen := map[string]response{}
	limit := 10 * len(c.apps)
	for i := 0; i < limit && len(seen) < len(want); i++ {
		r, err := c.do(method, path, body, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if !want[r.instance] {
			t.Fatalf("%s %s answered by %q, want one of %v", method, path, r.instance, names)
		}
		if _, ok := seen[r.instance]; !ok {
			seen[r.instance] = r
		}
	}
	if len(seen) < len(want) {
		t.Fatalf("%s %s reached only %d of %v in %d requests", method, path, len(seen), names, limit)
	}
	return seen
}

// eventually polls cond every 50ms until it returns true or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Measurements are printed at the end of the run (go test -v shows them).
var measurements struct {
	mu    sync.Mutex
	lines []string
}

func record(what string, v any) {
	measurements.mu.Lock()
	defer measurements.mu.Unlock()
	measurements.lines = append(measurements.lines, fmt.Sprintf("%-44s %v", what+":", v))
}

func printMeasurements(total time.Duration) {
	measurements.mu.Lock()
	defer measurements.mu.Unlock()
	fmt.Printf("\n--- cluster conformance measurements, load balancer haproxy ---\n")
	for _, l := range measurements.lines {
		fmt.Println(l)
	}
	fmt.Printf("%-44s %v\n", "total test time:", total.Round(time.Millisecond))
}

// envInt is a number from the app's environment in docker-compose.yml.
func (c *cluster) envInt(t testing.TB, name string) int64 {
	t.Helper()
	p, err := loadCompose()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(p.Services[p.Apps[0]].Environment[name], 10, 64)
	if err != nil {
		t.Fatalf("docker-compose.yml: %s: %v", name, err)
	}
	return n
}

// sendBody sends n bytes with Content-Length and "Expect: 100-continue", as
// clients of large uploads do: a server that refuses the size answers
// before the body is sent.
func (c *cluster) sendBody(t testing.TB, method, path string, n int64) response {
	t.Helper()
	req, err := http.NewRequest(method, c.lb.URL+path, io.LimitReader(zeros{}, n))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = n
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("Content-Type", "application/octet-stream")
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s with %d bytes: %v", method, path, n, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: bytes.TrimSpace(b), instance: resp.Header.Get("X-Instance-ID")}
}

// zeros reads as an endless run of zero bytes: request bodies of any size.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// createNote creates a note through the load balancer and returns its path.
func (c *cluster) createNote(t testing.TB, title, body string) string {
	t.Helper()
	r := c.must(t, 201, "POST", "/api/notes", fmt.Appendf(nil, `{"title":%q,"body":%q}`, title, body), nil)
	var n struct {
		ID int64 `json:"id"`
	}
	r.decode(t, &n)
	return fmt.Sprintf("/api/notes/%d", n.ID)
}

// wantBody reads the note twice through every instance and wants body.
func (c *cluster) wantBody(t testing.TB, path, body string) {
	t.Helper()
	for round := 0; round < 2; round++ {
		for name, r := range c.onEveryInstance(t, "GET", path, nil) {
			var n struct {
				Body string `json:"body"`
			}
			if r.status != 200 {
				t.Errorf("GET %s through %s: %s", path, name, r)
				continue
			}
			r.decode(t, &n)
			if n.Body != body {
				t.Errorf("GET %s through %s: body %q (X-Cache %s), want %q", path, name, n.Body, r.header.Get("X-Cache"), body)
			}
		}
	}
}
