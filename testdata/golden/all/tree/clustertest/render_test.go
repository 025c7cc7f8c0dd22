package clustertest

// This file is everything the conformance test changes between the deploy
// files (docker-compose.yml, deploy/nginx.conf, deploy/haproxy.cfg) and what
// it runs. Read it to know how far the test is from `docker compose up`.
//
// Environment of each app-N (composeEnv, then cluster.instanceEnv):
//   - taken from the service's environment: in docker-compose.yml, with the
//     ${VARIABLES} filled from .env.example (docker compose fills them from .env);
//   - PORT: a free loopback port instead of 8080 (three processes share one host);
//   - DATABASE_URL (postgres:5432): a fresh, empty database on the test's
//     PostgreSQL server (its own user and password);
//   - REDIS_URL (redis:6379): the test's redis-server (no password);
//   - S3_ENDPOINT (minio:9000), S3_ACCESS_KEY, S3_SECRET_KEY: the test's MinIO
//     server and its random root keys;
//   - a test may override a setting to make something observable in seconds
//     (it says so where it does).
// A value that still names a compose service after this mapping fails the
// test, so a new dependency cannot be silently left pointing nowhere.
//
// With CLUSTERTEST_APP_ENV set (appenv_test.go), the instances and their
// environment come from that file instead: one per pod of the Kubernetes
// manifests, named as the pod, with what the manifests give it (ConfigMap,
// Secret, env; INSTANCE_ID the pod's name). The mapping above is the same:
// the k8s feature's dev overlay names its Services as compose names its
// services, with the same ports. A value that still names one of the file's
// Services (or a compose service) fails the test. The load balancer stays
// deploy/haproxy.cfg rendered for that many instances, standing in for the
// Ingress controller.
//
// Load balancer config: see renderNginx and renderHAProxy below, and the
// comment at the top of each config file.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// projectDir is the generated project's root: the tests run in clustertest/.
const projectDir = ".."

// composeService is the part of a docker-compose.yml service the test reads.
type composeService struct {
	Image       string            `yaml:"image"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
}

// composeProject is docker-compose.yml with the .env.example values filled in.
type composeProject struct {
	Services map[string]composeService
	Apps     []string // app-1, app-2, ... in order
	// Hosts are the names no app setting may still name once instanceEnv
	// has mapped it: every service's.
	Hosts []string
}

// loadCompose reads docker-compose.yml the way docker compose would with
// .env.example as its .env: YAML anchors and merges (<<) resolved by the YAML
// decoder, ${VAR}, ${VAR:-default} and ${VAR:?message} filled in.
func loadCompose() (*composeProject, error) {
	dotenv, err := readDotEnv(filepath.Join(projectDir, ".env.example"))
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(projectDir, "docker-compose.yml"))
	if err != nil {
		return nil, err
	}
	var file struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		return nil, fmt.Errorf("docker-compose.yml: %w", err)
	}
	p := &composeProject{Services: map[string]composeService{}}
	for name, svc := range file.Services {
		for k, v := range svc.Environment {
			if svc.Environment[k], err = interpolate(v, dotenv); err != nil {
				return nil, fmt.Errorf("docker-compose.yml: service %s: %s: %w", name, k, err)
			}
		}
		p.Services[name] = svc
		p.Hosts = append(p.Hosts, name)
	}
	for i := 1; ; i++ {
		name := "app-" + strconv.Itoa(i)
		if _, ok := p.Services[name]; !ok {
			break
		}
		p.Apps = append(p.Apps, name)
	}
	if len(p.Apps) == 0 {
		return nil, fmt.Errorf("docker-compose.yml: no app-1 service")
	}
	if path := os.Getenv(appEnvVar); path != "" {
		return p, p.useAppEnvFile(path)
	}
	return p, nil
}

// readDotEnv reads KEY=VALUE lines; blank lines and # comments are skipped.
func readDotEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE", path, n)
		}
		env[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return env, sc.Err()
}

var composeVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// interpolate fills ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}
// and ${VAR?message} from env, as compose does; $$ is a literal $.
func interpolate(s string, env map[string]string) (string, error) {
	var err error
	out := composeVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := composeVar.FindStringSubmatch(m)
		name, op, arg := g[1], g[2], g[3]
		v, set := env[name]
		empty := !set || (strings.HasPrefix(op, ":") && v == "")
		switch {
		case !empty:
			return v
		case strings.HasSuffix(op, "-"):
			return arg
		case strings.HasSuffix(op, "?"):
			err = fmt.Errorf("%s is not set: %s", name, arg)
		case !set:
			err = fmt.Errorf("%s is not set in .env.example", name)
		}
		return v
	})
	return out, err
}

// lbConfig is the load balancer's config file, read from the volume the lb
// service mounts, and its kind.
func lbConfig(p *composeProject) (kind, path string, err error) {
	lb, ok := p.Services["lb"]
	if !ok {
		return "", "", fmt.Errorf("docker-compose.yml: no lb service")
	}
	switch {
	case strings.HasPrefix(lb.Image, "nginx:"):
		kind = "nginx"
	case strings.HasPrefix(lb.Image, "haproxy:"):
		kind = "haproxy"
	default:
		return "", "", fmt.Errorf("docker-compose.yml: lb image %q is neither nginx nor haproxy", lb.Image)
	}
	for _, v := range lb.Volumes {
		src, _, _ := strings.Cut(v, ":")
		if strings.HasPrefix(src, "./deploy/") {
			return kind, filepath.Join(projectDir, filepath.FromSlash(src)), nil
		}
	}
	return "", "", fmt.Errorf("docker-compose.yml: lb mounts no ./deploy/ config")
}

// The lines renderNginx and renderHAProxy change. Everything else is kept,
// comments included.
var (
	nginxServer   = regexp.MustCompile(`^(\s*server\s+)app-(\d+):8080((?:\s+[^;\s]+)*?)(?:\s+resolve)?\s*;`)
	nginxResolver = regexp.MustCompile(`^\s*resolver\s+127\.0\.0\.11\b`)
	nginxListen   = regexp.MustCompile(`^(\s*)listen\s+80\s*;`)
	haproxyServer = regexp.MustCompile(`^(\s*server\s+app-(\d+)\s+)app-(\d+):8080\b`)
	haproxyBind   = regexp.MustCompile(`^(\s*)bind\s+:8080\b`)
	appHost       = regexp.MustCompile(`\bapp-\d+\b`)
)

// renderNginx turns deploy/nginx.conf into the config for local processes:
// "server app-N:8080 ... resolve;" -> "server 127.0.0.1:<ports[N-1]> ...;",
// the resolver line commented out, "listen 80;" -> "listen <listen>;".
func renderNginx(conf string, ports []int, listen string) (string, error) {
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
			if n < 1 || n > len(ports) {
				return "", fmt.Errorf("nginx.conf: %q: no app-%d in docker-compose.yml", strings.TrimSpace(line), n)
			}
			lines[i] = fmt.Sprintf("%s127.0.0.1:%d%s; # was app-%d:8080 (rendered by clustertest)", g[1], ports[n-1], g[3], n)
			servers[n]++
		case nginxResolver.MatchString(line):
			lines[i] = "# " + strings.TrimSpace(line) + " (Docker's DNS; commented out by clustertest)"
		case nginxListen.MatchString(line):
			lines[i] = nginxListen.ReplaceAllString(line, "${1}listen "+listen+"; # was 80 (rendered by clustertest)")
			listens++
		case appHost.MatchString(line):
			return "", fmt.Errorf("nginx.conf: %q names an app host in a form the test cannot render", strings.TrimSpace(line))
		}
	}
	// Each instance is named twice: once in rotation, once as a backup.
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

// renderHAProxy turns deploy/haproxy.cfg into the config for local processes:
// "server app-N app-N:8080" -> "server app-N 127.0.0.1:<ports[N-1]>",
// "bind :8080" -> "bind <listen>".
func renderHAProxy(conf string, ports []int, listen string) (string, error) {
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
			if g[2] != g[3] || n < 1 || n > len(ports) {
				return "", fmt.Errorf("haproxy.cfg: %q: want server app-N app-N:8080 for an app-N of docker-compose.yml", strings.TrimSpace(line))
			}
			lines[i] = haproxyServer.ReplaceAllString(line, fmt.Sprintf("${1}127.0.0.1:%d", ports[n-1]))
			servers++
		case haproxyBind.MatchString(line):
			lines[i] = haproxyBind.ReplaceAllString(line, "${1}bind "+listen)
			binds++
		case appHost.MatchString(line):
			return "", fmt.Errorf("haproxy.cfg: %q names an app host in a form the test cannot render", strings.TrimSpace(line))
		}
	}
	if servers != len(ports) || binds != 1 {
		return "", fmt.Errorf("haproxy.cfg: rendered %d server lines for %d apps and %d bind lines (want 1)", servers, len(ports), binds)
	}
	return strings.Join(lines, "\n"), nil
}

// renderLB renders the config of either kind.
func renderLB(kind, conf string, ports []int, listen string) (string, error) {
	if kind == "haproxy" {
		return renderHAProxy(conf, ports, listen)
	}
	return renderNginx(conf, ports, listen)
}
