package testsupport

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis starts a redis-server for this test only (no persistence, data in a
// temporary directory) and kills it when the test ends. URL is
// redis://127.0.0.1:PORT/0.
//
// When TEST_REDIS_URL is set, that server is returned instead; it is shared,
// so tests should use their own keys, and Stop, Kill and Start skip the test.
func Redis(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return externalServer(t, "redis", "TEST_REDIS_URL", u)
	}
	bin, ok := lookBinary("redis-server")
	if !ok {
		missing(t, "redis-server", "install it with `apt-get install redis-server` or `sh scripts/install-servers.sh`, or set TEST_REDIS_URL")
	}
	dir := t.TempDir()
	out := newRingBuffer(64 << 10)
	return startPerTest(t, func(port int) *Server {
		addr := loopback(port)
		return &Server{Addr: addr, URL: "redis://" + addr + "/0", control: &control{
			name:    "redis",
			stopSig: syscall.SIGTERM,
			timeout: 15 * time.Second,
			out:     out,
			command: func() *exec.Cmd {
				cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
					"--save", "", "--appendonly", "no", "--dir", dir)
				cmd.Dir = dir
				return cmd
			},
			ready: func(ctx context.Context) error { return redisPing(ctx, addr) },
		}}
	})
}

// redisPing sends an inline PING and wants +PONG: a server still loading its
// data answers -LOADING instead, so an open port is not enough.
func redisPing(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
