package testsupport_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

func TestRedis(t *testing.T) {
	r := testsupport.Redis(t)
	if !strings.HasPrefix(r.URL, "redis://127.0.0.1:") || !strings.HasSuffix(r.URL, "/0") {
		t.Fatalf("URL = %q", r.URL)
	}
	redisPing(t, r.Addr)

	r.Stop(t)
	mustRefuse(t, r.Addr)
	r.Start(t)
	redisPing(t, r.Addr)

	r.Kill(t)
	mustRefuse(t, r.Addr)
	r.Start(t)
	redisPing(t, r.Addr)
}

func TestRedisIsPerTest(t *testing.T) {
	if os.Getenv("TEST_REDIS_URL") != "" {
		t.Skip("TEST_REDIS_URL is set: one external server for all")
	}
	a, b := testsupport.Redis(t), testsupport.Redis(t)
	if a.Addr == b.Addr {
		t.Fatalf("two Redis calls share %s", a.Addr)
	}
}

func TestMissingBinarySkipsLocallyAndFailsInCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // nothing to find
	t.Setenv("TEST_REDIS_URL", "")
	t.Setenv("CI", "")
	r := callWith(t, func(tb testing.TB) { testsupport.Redis(tb) })
	if !strings.Contains(r.skipped, "apt-get install redis-server") || r.failed != "" {
		t.Fatalf("without CI: skipped %q, failed %q; want a skip naming the package", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r = callWith(t, func(tb testing.TB) { testsupport.Redis(tb) })
	if !strings.Contains(r.failed, "apt-get install redis-server") || r.skipped != "" {
		t.Fatalf("with CI: skipped %q, failed %q; want a failure naming the package", r.skipped, r.failed)
	}
}

func TestExternalRedisCannotBeStopped(t *testing.T) {
	t.Setenv("TEST_REDIS_URL", "redis://127.0.0.1:1/0")
	r := testsupport.Redis(t)
	if r.Addr != "127.0.0.1:1" {
		t.Fatalf("Addr = %q", r.Addr)
	}
	rec := callWith(t, func(tb testing.TB) { r.Stop(tb) })
	if !strings.Contains(rec.skipped, "TEST_REDIS_URL") {
		t.Fatalf("Stop on an external server: skipped %q, want a skip naming TEST_REDIS_URL", rec.skipped)
	}
}

// Servers must not outlive a test binary that dies without cleaning up
// (a panic, a timeout, SIGKILL). A helper copy of this test binary starts
// servers and reports their addresses; we kill it and watch them go.
func TestServersDieWithTestProcess(t *testing.T) {
	if os.Getenv("TESTSUPPORT_HELPER") != "" {
		r := testsupport.Redis(t)
		pg, _ := url.Parse(testsupport.Postgres(t))
		fmt.Printf("ADDRS %s %s\n", r.Addr, pg.Host)
		select {} // wait to be killed
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs Pdeathsig (Linux)")
	}
	if os.Getenv("TEST_REDIS_URL") != "" || os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("uses external servers")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServersDieWithTestProcess$", "-test.v")
	// The helper dies without cleaning up: its directories go in ours.
	cmd.Env = append(os.Environ(), "TESTSUPPORT_HELPER=1", "TMPDIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var addrs []string
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ADDRS" {
			addrs = f[1:]
			break
		}
	}
	if addrs == nil {
		t.Fatalf("helper did not report its servers:\n%s", out.String())
	}
	go io.Copy(io.Discard, stdout)
	for _, a := range addrs {
		mustAnswer(t, a)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	for _, a := range addrs {
		mustRefuse(t, a)
	}
	// The next Main would remove the helper's shared directories (their
	// owner.pid names a dead process); do not leave them until then.
	dirs, _ := filepath.Glob("/tmp/testsupport-shared-*/owner.pid")
	for _, f := range dirs {
		if b, _ := os.ReadFile(f); string(b) == fmt.Sprint(cmd.Process.Pid) {
			os.RemoveAll(filepath.Dir(f))
		}
	}
}

func redisPing(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial redis: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING: %q, %v", line, err)
	}
}
