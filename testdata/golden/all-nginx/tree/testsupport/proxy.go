package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Nginx runs the real nginx with config as its whole nginx.conf, in the
// foreground, in a temporary directory (the prefix, -p), and waits until addr
// - the address the config listens on, e.g. loopback of FreePort - accepts
// connections. URL is http://addr. The server is killed when the test ends.
//
// nginx is run as
//
//	nginx -p DIR -c nginx.conf -e stderr -g 'daemon off; master_process off; pid DIR/nginx.pid;'
//
// so the config must not set daemon, master_process or pid (nginx rejects
// duplicates). One process serves everything (master_process off) so that a
// crashed test binary cannot leave workers behind holding the port; the
// config's worker_processes is ignored. Errors go to stderr, which is
// captured; a config that sets error_log sends them there as well. The config
// must not set user to an account that does not exist here (nginx:alpine's
// "nginx"), must include mime.types by absolute path
// (/etc/nginx/mime.types), and upstream host names must resolve on this
// machine (use 127.0.0.1).
//
// Because the Debian build keeps logs and temporary files under /var, which
// only root may write, Nginx adds these directives at the start of the http
// block, each only when the config does not mention it: access_log off, and
// client_body_temp_path, proxy_temp_path, fastcgi_temp_path, uwsgi_temp_path
// and scgi_temp_path inside DIR. The rest of the config is used as given.
func Nginx(t testing.TB, config, addr string) *Server {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxLocal(config, dir)), 0o644); err != nil {
		t.Fatalf("write nginx.conf: %v", err)
	}
	return startProxy(t, "nginx", addr, func() *exec.Cmd {
		cmd := exec.Command(bin, nginxArgs(dir)...)
		cmd.Dir = dir
		return cmd
	})
}

// NginxCheck runs `nginx -t` on config, prepared as Nginx would run it, and
// returns an error holding nginx's complaint when the config is invalid.
// nginx -t binds the listen addresses and resolves upstream host names: a
// port below 1024 fails unless the tests run as root, and so does a port in
// use or a name this machine cannot resolve.
func NginxCheck(t testing.TB, config string) error {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxLocal(config, dir)), 0o644); err != nil {
		t.Fatalf("write nginx.conf: %v", err)
	}
	cmd := exec.Command(bin, append([]string{"-t", "-q"}, nginxArgs(dir)...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nginx -t: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nginxBinary(t testing.TB) string {
	t.Helper()
	bin, ok := lookBinary("nginx")
	if !ok {
		missing(t, "nginx", "install it with `apt-get install nginx` or `sh scripts/install-servers.sh`")
	}
	return bin
}

func nginxArgs(dir string) []string {
	return []string{"-p", dir, "-c", "nginx.conf", "-e", "stderr",
		"-g", "daemon off; master_process off; pid " + nginxQuote(filepath.Join(dir, "nginx.pid")) + ";"}
}

// nginxQuote quotes a path for nginx's config syntax (TMPDIR may hold spaces).
func nginxQuote(path string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(path) + `"`
}

var nginxHTTPBlock = regexp.MustCompile(`(?m)^\s*http\s*\{`)

// nginxLocal adds to the http block the directives that keep nginx's files
// inside dir (see Nginx).
func nginxLocal(config, dir string) string {
	loc := nginxHTTPBlock.FindStringIndex(config)
	if loc == nil {
		return config // no http block (a stream-only config): nothing to add
	}
	var add strings.Builder
	directive := func(name, value string) {
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(config) {
			fmt.Fprintf(&add, "    %s %s; # added by testsupport\n", name, value)
		}
	}
	directive("access_log", "off")
	for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		directive(name+"_temp_path", nginxQuote(filepath.Join(dir, name+"_temp")))
	}
	return config[:loc[1]] + "\n" + add.String() + config[loc[1]:]
}

// HAProxy runs the real haproxy with config in the foreground
// (`haproxy -f DIR/haproxy.cfg -db`) and waits until addr - the address the
// config binds, e.g. loopback of FreePort - accepts connections. URL is
// http://addr. The server is killed when the test ends.
//
// -db keeps haproxy in the foreground whatever the config says about daemon.
// Unless the tests run as root, the config must not use chroot, user/group,
// or a stats socket in a directory only root may write (/run/haproxy), as the
// Debian default config does. Server host names must resolve on this machine
// (use 127.0.0.1), or be marked init-addr none.
func HAProxy(t testing.TB, config, addr string) *Server {
	t.Helper()
	bin := haproxyBinary(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatalf("write haproxy.cfg: %v", err)
	}
	return startProxy(t, "haproxy", addr, func() *exec.Cmd {
		cmd := exec.Command(bin, "-f", cfg, "-db")
		cmd.Dir = filepath.Dir(cfg)
		return cmd
	})
}

// HAProxyCheck runs `haproxy -c` on config and returns an error holding
// haproxy's complaint when the config is invalid.
func HAProxyCheck(t testing.TB, config string) error {
	t.Helper()
	bin := haproxyBinary(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatalf("write haproxy.cfg: %v", err)
	}
	if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		return fmt.Errorf("haproxy -c: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func haproxyBinary(t testing.TB) string {
	t.Helper()
	bin, ok := lookBinary("haproxy")
	if !ok {
		missing(t, "haproxy", "install it with `apt-get install haproxy` or `sh scripts/install-servers.sh`")
	}
	return bin
}

// startProxy starts a load balancer on the caller's address: unlike the
// other servers there is no retry on another port, since the port is in the
// caller's config.
func startProxy(t testing.TB, name, addr string, command func() *exec.Cmd) *Server {
	t.Helper()
	s := &Server{Addr: addr, URL: "http://" + addr, control: &control{
		name:    name,
		command: command,
		ready:   tcpReady(addr),
		stopSig: syscall.SIGTERM,
		timeout: 15 * time.Second,
		out:     newRingBuffer(64 << 10),
	}}
	if err := s.start(addr); err != nil {
		t.Fatalf("%v\n%s", err, s.tail(8<<10))
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("%s", s.tail(8<<10))
		}
	})
	return s
}
