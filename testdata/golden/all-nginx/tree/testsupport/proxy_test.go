package testsupport_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

func TestNginx(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "hello from backend via %s", r.Header.Get("X-Via"))
	}))
	t.Cleanup(backend.Close)
	addr := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	config := fmt.Sprintf(`
events {}
http {
    upstream app { server %s; }
    server {
        listen %s;
        location / {
            proxy_set_header X-Via nginx;
            proxy_pass http://app;
        }
    }
}
`, strings.TrimPrefix(backend.URL, "http://"), addr)
	if err := testsupport.NginxCheck(t, config); err != nil {
		t.Fatal(err)
	}
	n := testsupport.Nginx(t, config, addr)
	mustGet(t, n.URL+"/", "hello from backend via nginx")
	// A body bigger than nginx's memory buffer goes through a temporary
	// file, which must be writable even when not running as root.
	resp, err := http.Post(n.URL+"/", "application/octet-stream", strings.NewReader(strings.Repeat("x", 512<<10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST 512 KiB through nginx: %s", resp.Status)
	}

	n.Stop(t)
	mustRefuse(t, n.Addr)
	n.Start(t)
	mustGet(t, n.URL+"/", "hello from backend via nginx")
}

func TestNginxCheckWithSpaceInTempDir(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), "a b")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	config := fmt.Sprintf("events {}\nhttp { server { listen 127.0.0.1:%d; } }\n", testsupport.FreePort(t))
	if err := testsupport.NginxCheck(t, config); err != nil {
		t.Fatal(err)
	}
}

// A server that cannot start fails the test at once, with its output.
func TestNginxStartFailureShowsOutput(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	config := fmt.Sprintf("events {}\nhttp { server { listen %s; no_such_directive on; } }\n", addr)
	began := time.Now()
	rec := callWith(t, func(tb testing.TB) { testsupport.Nginx(tb, config, addr) })
	if !strings.Contains(rec.failed, "exited before it was ready") || !strings.Contains(rec.failed, "no_such_directive") {
		t.Fatalf("Nginx with a broken config: failed %q", rec.failed)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("took %v to notice", d)
	}
}

func TestNginxCheckRejectsBrokenConfig(t *testing.T) {
	err := testsupport.NginxCheck(t, "events {}\nhttp { server { listen 127.0.0.1:1; no_such_directive on; } }\n")
	if err == nil || !strings.Contains(err.Error(), "no_such_directive") {
		t.Fatalf("NginxCheck = %v, want an error naming the bad directive", err)
	}
}

func TestHAProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "hello from backend via %s", r.Header.Get("X-Via"))
	}))
	t.Cleanup(backend.Close)
	addr := fmt.Sprintf("127.0.0.1:%d", testsupport.FreePort(t))
	config := fmt.Sprintf(`
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind %s
    http-request set-header X-Via haproxy
    default_backend app

backend app
    server app1 %s
`, addr, strings.TrimPrefix(backend.URL, "http://"))
	if err := testsupport.HAProxyCheck(t, config); err != nil {
		t.Fatal(err)
	}
	h := testsupport.HAProxy(t, config, addr)
	mustGet(t, h.URL+"/", "hello from backend via haproxy")

	h.Kill(t)
	mustRefuse(t, h.Addr)
	h.Start(t)
	mustGet(t, h.URL+"/", "hello from backend via haproxy")
}

func TestHAProxyCheckRejectsBrokenConfig(t *testing.T) {
	err := testsupport.HAProxyCheck(t, "frontend web\n    bind 127.0.0.1:1\n    no_such_keyword\n")
	if err == nil || !strings.Contains(err.Error(), "no_such_keyword") {
		t.Fatalf("HAProxyCheck = %v, want an error naming the bad keyword", err)
	}
}
