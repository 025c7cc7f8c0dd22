package deploycheck

// The load balancer configs are checked twice with the real Debian binaries:
//
//  1. "rendered": as the cluster conformance test of the generated project
//     runs them against local processes (templates/clustertest/
//     render_test.go.tmpl, renderNginx and renderHAProxy): app-N:PORT becomes
//     127.0.0.1:<port>, nginx's "resolve" parameter and its "resolver" line
//     (Docker's DNS) are dropped, "listen 80" / "bind :8080" become a free
//     loopback port; nginx gets the temp paths testsupport.Nginx adds when it
//     runs as non-root (templates/testsupport/proxy.go).
//  2. "literal": the file the container mounts, run where no name is looked
//     up outside: as root, in private mount and network namespaces (unshare;
//     see isolated), with an /etc/hosts that maps app-N to 127.0.0.1 where
//     Docker's DNS would answer.
//     haproxy: exactly that file, with app-N unresolvable ("init-addr
//     last,libc,none" lets haproxy start before the app containers exist)
//     and with app-N resolving.
//     nginx: that file with ONE difference, the "resolve" parameter of the
//     upstream server lines removed: Debian 12's nginx is 1.22 and "resolve"
//     needs nginx >= 1.27.3 (the image is 1.28). nginx -t must resolve app-N
//     and binds port 80 ("listen 80" as it is).
//     Without root or namespaces, nginx's literal check is skipped (the
//     rendered one still runs) and haproxy's runs once, on this machine's DNS.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func checkLB(t *testing.T, p *project) {
	a := p.answers
	conf := string(p.files[lbFile(a.LB)])
	if conf == "" {
		t.Fatalf("%s was not generated for --lb %s", lbFile(a.LB), a.LB)
	}
	for _, f := range []string{"deploy/nginx.conf", "deploy/haproxy.cfg"} {
		if f != lbFile(a.LB) && p.files[f] != nil {
			t.Errorf("%s was generated for --lb %s", f, a.LB)
		}
	}
	var apps []string
	ports := make([]int, a.Replicas) // the apps' local ports: never bound, only checked
	for i := range ports {
		apps = append(apps, "app-"+strconv.Itoa(i+1))
		ports[i] = 20001 + i
	}

	switch a.LB {
	case "nginx":
		// Every instance twice: in rotation, then again as a backup.
		wantServers(t, conf, `(?m)^\s*server\s+(app-\d+):(\d+)\b`, append(slices.Clone(apps), apps...), a.Port)
		t.Run("rendered", func(t *testing.T) {
			rendered, err := renderNginx(conf, a.Port, ports, freeLoopback(t))
			if err != nil {
				t.Fatal(err)
			}
			nginxTest(t, rendered)
		})
		t.Run("literal", func(t *testing.T) { nginxLiteral(t, conf, apps) })

	case "haproxy":
		wantServers(t, conf, `(?m)^\s*server\s+(app-\d+)\s+(?:app-\d+):(\d+)\b`, apps, a.Port)
		for _, g := range regexp.MustCompile(`(?m)^\s*server\s+(app-\d+)\s+(app-\d+):`).FindAllStringSubmatch(conf, -1) {
			if g[1] != g[2] {
				t.Errorf("haproxy.cfg: server %s has the address of %s", g[1], g[2])
			}
		}
		t.Run("rendered", func(t *testing.T) {
			rendered, err := renderHAProxy(conf, a.Port, ports, freeLoopback(t))
			if err != nil {
				t.Fatal(err)
			}
			haproxyCheck(t, rendered)
		})
		t.Run("literal", func(t *testing.T) { haproxyLiteral(t, conf, apps) })
	}
}

// wantServers checks that the config's server lines are apps, in order, on port.
func wantServers(t *testing.T, conf, pattern string, apps []string, port int) {
	t.Helper()
	var got, want []string
	for _, m := range regexp.MustCompile(pattern).FindAllStringSubmatch(conf, -1) {
		got = append(got, m[1]+":"+m[2])
	}
	for _, app := range apps {
		want = append(want, app+":"+strconv.Itoa(port))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the config's servers are %v, want %v (docker-compose.yml's app services on PORT)", got, want)
	}
}

// The lines the renderers change, as in render_test.go.tmpl.
var (
	nginxServer   = regexp.MustCompile(`^(\s*server\s+)app-(\d+):(\d+)((?:\s+[^;\s]+)*?)(?:\s+resolve)?\s*;`)
	nginxResolver = regexp.MustCompile(`^\s*resolver\s+127\.0\.0\.11\b`)
	nginxListen   = regexp.MustCompile(`^(\s*)listen\s+80\s*;`)
	haproxyServer = regexp.MustCompile(`^(\s*server\s+app-(\d+)\s+)app-(\d+):(\d+)\b`)
	haproxyBind   = regexp.MustCompile(`^(\s*)bind\s+:8080\b`)
	appHost       = regexp.MustCompile(`\bapp-\d+\b`)
)

// renderNginx: "server app-N:PORT ... resolve;" -> "server 127.0.0.1:<ports[N-1]> ...;",
// the resolver line commented out, "listen 80;" -> "listen <listen>;".
func renderNginx(conf string, port int, ports []int, listen string) (string, error) {
	servers, listens := map[int]int{}, 0 // server lines per app-N
	lines := strings.Split(conf, "\n")
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		switch {
		case nginxServer.MatchString(line):
			g := nginxServer.FindStringSubmatch(line)
			n, _ := strconv.Atoi(g[2])
			if n < 1 || n > len(ports) || g[3] != strconv.Itoa(port) {
				return "", fmt.Errorf("nginx.conf: %q: want app-N:%d for an app-N of docker-compose.yml", strings.TrimSpace(line), port)
			}
			lines[i] = fmt.Sprintf("%s127.0.0.1:%d%s;", g[1], ports[n-1], g[4])
			servers[n]++
		case nginxResolver.MatchString(line):
			lines[i] = "# " + line
		case nginxListen.MatchString(line):
			lines[i] = nginxListen.ReplaceAllString(line, "${1}listen "+listen+";")
			listens++
		case appHost.MatchString(line):
			return "", fmt.Errorf("nginx.conf: %q names an app host in a form the conformance test cannot render", strings.TrimSpace(line))
		}
	}
	for n := 1; n <= len(ports); n++ {
		if servers[n] != 2 {
			return "", fmt.Errorf("nginx.conf: app-%d has %d server lines, want 2 (in rotation and backup)", n, servers[n])
		}
	}
	if listens != 1 {
		return "", fmt.Errorf("nginx.conf: rendered %d listen lines, want 1", listens)
	}
	return strings.Join(lines, "\n"), nil
}

// renderHAProxy: "server app-N app-N:PORT" -> "server app-N 127.0.0.1:<ports[N-1]>",
// "bind :8080" -> "bind <listen>".
func renderHAProxy(conf string, port int, ports []int, listen string) (string, error) {
	servers, binds := 0, 0
	lines := strings.Split(conf, "\n")
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		switch {
		case haproxyServer.MatchString(line):
			g := haproxyServer.FindStringSubmatch(line)
			n, _ := strconv.Atoi(g[3])
			if g[2] != g[3] || n < 1 || n > len(ports) || g[4] != strconv.Itoa(port) {
				return "", fmt.Errorf("haproxy.cfg: %q: want server app-N app-N:%d for an app-N of docker-compose.yml", strings.TrimSpace(line), port)
			}
			lines[i] = haproxyServer.ReplaceAllString(line, fmt.Sprintf("${1}127.0.0.1:%d", ports[n-1]))
			servers++
		case haproxyBind.MatchString(line):
			lines[i] = haproxyBind.ReplaceAllString(line, "${1}bind "+listen)
			binds++
		case appHost.MatchString(line):
			return "", fmt.Errorf("haproxy.cfg: %q names an app host in a form the conformance test cannot render", strings.TrimSpace(line))
		}
	}
	if servers != len(ports) || binds != 1 {
		return "", fmt.Errorf("haproxy.cfg: rendered %d server lines for %d apps and %d bind lines (want 1)", servers, len(ports), binds)
	}
	return strings.Join(lines, "\n"), nil
}

// nginxTest runs `nginx -t` on config as testsupport.Nginx runs nginx:
//
//	nginx -p DIR -c nginx.conf -e stderr -g 'daemon off; master_process off; pid DIR/nginx.pid;'
//
// with the temp paths (and access_log off) added at the start of the http
// block when the config does not set them. nginx -t binds the listen address.
func nginxTest(t *testing.T, config string) {
	bin := binary(t, "nginx")
	dir := t.TempDir()
	quote := func(path string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(path) + `"` }
	if loc := regexp.MustCompile(`(?m)^\s*http\s*\{`).FindStringIndex(config); loc != nil {
		var add strings.Builder
		directive := func(name, value string) {
			if !regexp.MustCompile(`\b` + name + `\b`).MatchString(config) {
				fmt.Fprintf(&add, "    %s %s;\n", name, value)
			}
		}
		directive("access_log", "off")
		for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
			directive(name+"_temp_path", quote(filepath.Join(dir, name+"_temp")))
		}
		config = config[:loc[1]] + "\n" + add.String() + config[loc[1]:]
	}
	writeFile(t, filepath.Join(dir, "nginx.conf"), config)
	cmd := exec.Command(bin, "-t", "-q", "-p", dir, "-c", "nginx.conf", "-e", "stderr",
		"-g", "daemon off; master_process off; pid "+quote(filepath.Join(dir, "nginx.pid"))+";")
	cmd.Dir = dir
	run(t, cmd, config)
}

// nginxLiteral runs nginx -t on the container's nginx.conf without its
// "resolve" parameters, with app-N resolving to 127.0.0.1 (see isolated).
func nginxLiteral(t *testing.T, conf string, apps []string) {
	bin := binary(t, "nginx")
	resolve := regexp.MustCompile(`(?m)^(\s*server\s+app-\d+:\d+[^;]*?)\s+resolve\s*;`)
	literal := resolve.ReplaceAllString(conf, "$1;")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "nginx.conf"), literal)
	cmd := isolated(t, hostsFile(t, apps), bin, "-t", "-q", "-p", dir+"/", "-c", "nginx.conf", "-e", "stderr",
		"-g", "pid "+dir+"/nginx.pid;")
	cmd.Dir = dir
	run(t, cmd, literal)
}

// haproxyLiteral runs haproxy -c on the container's haproxy.cfg as it is,
// once with app-N unresolvable (an app container not up yet: init-addr
// none) and once with app-N resolving (see isolated). Without namespaces it
// runs once, on this machine's DNS (which can be slow to say no).
func haproxyLiteral(t *testing.T, conf string, apps []string) {
	bin := binary(t, "haproxy")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	writeFile(t, cfg, conf)
	// What haproxy 2.6 says, and only that, when app-N does not resolve.
	unresolved := regexp.MustCompile(`\[WARNING\].*'server app/app-\d+' : could not resolve address 'app-\d+', disabling server\.$`)
	if err := namespaces(); err != nil {
		t.Logf("cannot make private namespaces (%v): haproxy -c runs with this machine's DNS", err)
		run(t, exec.Command(bin, "-c", "-f", cfg), conf, unresolved)
		return
	}
	run(t, isolated(t, "", bin, "-c", "-f", cfg), conf, unresolved)
	run(t, isolated(t, hostsFile(t, apps), bin, "-c", "-f", cfg), conf)
}

// nsSetup prepares the namespaces of isolated: loopback up (so that a
// lookup of Docker's DNS, 127.0.0.11, fails at once instead of not being
// sent at all), and $1, when set, bind-mounted on /etc/hosts.
const nsSetup = `PATH=$PATH:/usr/sbin:/sbin; ip link set lo up || exit; if [ -n "$1" ]; then mount --bind "$1" /etc/hosts || exit; fi; `

var namespaces = sync.OnceValue(func() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", nsSetup+"exit 0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unshare: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
})

// isolated is a command run in private mount and network namespaces
// (unshare and ip, as root): the network has only its own loopback, so no
// name is looked up outside (a lookup fails at once) and port 80 is free;
// when hosts is not "", that file is bind-mounted on /etc/hosts. It skips
// the test when namespaces cannot be made.
func isolated(t *testing.T, hosts string, args ...string) *exec.Cmd {
	t.Helper()
	if err := namespaces(); err != nil {
		t.Skipf("cannot make private namespaces (%v): the container's file is checked only as rendered", err)
	}
	return exec.Command("unshare", append([]string{"--mount", "--net", "--propagation", "private", "sh", "-c",
		nsSetup + `shift; exec "$@"`, "sh", hosts}, args...)...)
}

// hostsFile is an /etc/hosts where localhost and every app resolve to 127.0.0.1.
func hostsFile(t *testing.T, apps []string) string {
	path := filepath.Join(t.TempDir(), "hosts")
	writeFile(t, path, "127.0.0.1 localhost "+strings.Join(apps, " ")+"\n")
	return path
}

// haproxyCheck runs `haproxy -c` on config (see run).
func haproxyCheck(t *testing.T, config string) {
	bin := binary(t, "haproxy")
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	writeFile(t, cfg, config)
	run(t, exec.Command(bin, "-c", "-f", cfg), config)
}

// Output of haproxy -c that is no problem. (nginx -t -q prints only
// problems, warnings included; haproxy -c has no such mode: its -q hides the
// errors too.)
var harmless = regexp.MustCompile(`^(Configuration file is valid|Warnings were found\.|\[NOTICE\].*)$`)

// run runs a config check. It fails on a non-zero exit, and on any line of
// output that is neither harmless nor matched by one of expected.
func run(t *testing.T, cmd *exec.Cmd, config string, expected ...*regexp.Regexp) {
	t.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line = strings.TrimSpace(line); line != "" && !harmless.MatchString(line) &&
			!slices.ContainsFunc(expected, func(re *regexp.Regexp) bool { return re.MatchString(line) }) {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		command := strings.Join(cmd.Args, " ")
		if cmd.Args[0] == "unshare" { // see isolated: unshare ... sh -c SCRIPT sh HOSTS COMMAND...
			i := slices.Index(cmd.Args, "sh") + 4
			hosts := "app-N do not resolve"
			if cmd.Args[i] != "" {
				hosts = "app-N in /etc/hosts"
			}
			command = "(in namespaces, " + hosts + ") " + strings.Join(cmd.Args[i+1:], " ")
		}
		t.Errorf("%s: exit: %v\n%s%s", command, err, strings.Join(problems, "\n"), excerpts(config, problems))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Logf("%s took %v", filepath.Base(cmd.Args[0]), d.Round(time.Millisecond))
	}
}

// binary finds nginx or haproxy (in /usr/sbin, which is not on every PATH).
// Without it the test is skipped, or fails when CI is set.
func binary(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found: the load balancer configs are checked with the real binaries; install them with `apt-get install nginx haproxy`", name)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set: not skipped)")
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// freeLoopback is a loopback address no one listens on now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// excerpts are the lines of config around each line the problems name
// ("...nginx.conf:93", "[...haproxy.cfg:76]"): the checked file is the
// generated one rendered or changed, so its line numbers are not the template's.
func excerpts(config string, problems []string) string {
	lines := strings.Split(config, "\n")
	var b strings.Builder
	for _, m := range regexp.MustCompile(`(?:nginx\.conf|haproxy\.cfg):(\d+)`).FindAllStringSubmatch(strings.Join(problems, "\n"), -1) {
		n, _ := strconv.Atoi(m[1])
		fmt.Fprintf(&b, "\nchecked file, around line %d:\n", n)
		for i := max(n-3, 1); i <= min(n+2, len(lines)); i++ {
			fmt.Fprintf(&b, "%4d  %s\n", i, lines[i-1])
		}
	}
	return b.String()
}
