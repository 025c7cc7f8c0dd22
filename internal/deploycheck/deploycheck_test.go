package deploycheck

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"

	"github.com/scaffoldhq/scaffold/generator"
)

// -update has nothing to rewrite here; it is defined so that
// `go test ./... -update` (which rewrites the golden trees) runs.
var _ = flag.Bool("update", false, "ignored")

// project is one generated project on disk.
type project struct {
	answers generator.Answers
	dir     string
	files   map[string][]byte // as Generate returned them
	env     map[string]string // .env, as generator.Secrets wrote it
}

// The backing services each feature adds to docker-compose.yml. Every app-N
// must wait for them to be healthy.
var backing = []struct{ feature, service string }{
	{"db", "postgres"},
	{"cache", "redis"},
	{"blob", "minio"},
}

// TestDeployFiles generates every feature combination with compose, with each
// load balancer, with 1 and 3 replicas (and 20, the maximum, once), on the
// default port and on 9090, and checks the deploy files of each.
func TestDeployFiles(t *testing.T) {
	combos := composeCombinations()
	if len(combos) == 0 {
		t.Fatal("no feature combination contains compose")
	}
	for i, features := range combos {
		port := generator.DefaultPort
		if i%2 == 1 {
			port = 9090 // a non-default port: every {{.Port}} must follow it
		}
		replicas := []int{1, 3}
		if i == len(combos)-1 {
			replicas = append(replicas, generator.MaxReplicas)
		}
		for _, lb := range generator.LBs {
			for _, n := range replicas {
				a := generator.Answers{Name: "shop", Module: "example.com/acme/shop",
					Features: features, LB: lb, Replicas: n, Port: port}
				name := fmt.Sprintf("%s/%s/replicas=%d/port=%d", strings.Join(features, "+"), lb, n, port)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					p := generate(t, a)
					t.Run("compose", func(t *testing.T) { checkCompose(t, p) })
					t.Run(lb, func(t *testing.T) { checkLB(t, p) })
				})
			}
		}
	}
}

func composeCombinations() [][]string {
	var out [][]string
	for _, c := range generator.Combinations() {
		// k8s changes none of the compose and load balancer files (the
		// generator's TestK8sChangesOnlyItsFiles): each set is checked once,
		// without it.
		if slices.Contains(c, "compose") && !slices.Contains(c, "k8s") {
			out = append(out, c)
		}
	}
	return out
}

// generate writes the project of a into a temporary directory, with the .env
// the generator writes beside it.
func generate(t *testing.T, a generator.Answers) *project {
	t.Helper()
	files, err := generator.Generate(a)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := generator.Secrets(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if secrets[".env"] == nil {
		t.Fatal("generator.Secrets made no .env")
	}
	p := &project{answers: a, dir: t.TempDir(), files: files}
	write := func(files map[string][]byte) {
		for name, b := range files {
			target := filepath.Join(p.dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, b, generator.FileMode(name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(files)
	write(secrets)
	if p.env, err = dotenv.Read(filepath.Join(p.dir, ".env")); err != nil {
		t.Fatal(err)
	}
	return p
}

// compose-go logs its warnings through logrus's standard logger. loadMu
// serializes the loads so that what warned is known to come from the load in
// progress.
var (
	loadMu   sync.Mutex
	warnings = &warningHook{}
)

type warningHook struct{ lines []string }

func (h *warningHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h *warningHook) Fire(e *logrus.Entry) error {
	h.lines = append(h.lines, e.Level.String()+": "+e.Message)
	return nil
}

func TestMain(m *testing.M) {
	logrus.AddHook(warnings)
	logrus.SetOutput(io.Discard) // the hook has them; they are reported by the test that loaded
	if !logrus.IsLevelEnabled(logrus.WarnLevel) {
		logrus.SetLevel(logrus.WarnLevel)
	}
	os.Exit(m.Run())
}

// loadCompose loads docker-compose.yml as `docker compose` does in the
// project's directory, with envFile as its .env. Any error or warning fails.
func loadCompose(t *testing.T, p *project, envFile string) *types.Project {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	warnings.lines = nil

	opts, err := cli.NewProjectOptions([]string{filepath.Join(p.dir, "docker-compose.yml")},
		cli.WithWorkingDirectory(p.dir),
		cli.WithName(p.answers.Name),
		cli.WithEnvFiles(filepath.Join(p.dir, envFile)),
		cli.WithDotEnv,
	)
	if err != nil {
		t.Fatalf("compose-go (with %s): %v", envFile, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("compose-go (with %s): %v", envFile, err)
	}
	if len(warnings.lines) > 0 {
		t.Errorf("compose-go (with %s) warned:\n\t%s", envFile, strings.Join(warnings.lines, "\n\t"))
	}
	return cp
}

func checkCompose(t *testing.T, p *project) {
	a := p.answers
	raw := p.files["docker-compose.yml"]
	if raw == nil || p.files[".env.example"] == nil {
		t.Fatal("docker-compose.yml or .env.example was not generated")
	}

	// `cp .env.example .env` must give a project that loads as well, and
	// both files must name the same variables.
	loadCompose(t, p, ".env.example")
	exampleEnv, err := dotenv.Read(filepath.Join(p.dir, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(p.env)), slices.Sorted(maps.Keys(exampleEnv)); !slices.Equal(got, want) {
		t.Errorf(".env names %v, .env.example %v", got, want)
	}
	cp := loadCompose(t, p, ".env")

	var top map[string]any
	if err := yaml.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	if _, ok := top["version"]; ok {
		t.Error("docker-compose.yml: the compose spec has no version: key; remove it")
	}

	// The services: app-1..N, lb, and the backing services of the features.
	var apps, want []string
	for i := 1; i <= a.Replicas; i++ {
		apps = append(apps, "app-"+strconv.Itoa(i))
	}
	want = append(append(want, apps...), "lb")
	var deps []string
	for _, b := range backing {
		if a.Has(b.feature) {
			deps = append(deps, b.service)
		}
	}
	want = append(want, deps...)
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(cp.Services)); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	for name, svc := range cp.Services {
		// Images pinned to a version tag, never latest; the app is built.
		if svc.Image != "" {
			if tag := imageTag(svc.Image); tag == "" || tag == "latest" || !strings.ContainsAny(tag, "0123456789") {
				t.Errorf("%s: image %q is not pinned to a version tag", name, svc.Image)
			}
		} else if svc.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		if len(svc.Ports) > 0 && name != "lb" {
			t.Errorf("%s publishes %v: only the load balancer may publish a port", name, svc.Ports)
		}
	}

	lbPort, lbConfig := uint32(80), "/etc/nginx/nginx.conf"
	if a.LB == "haproxy" {
		lbPort, lbConfig = 8080, "/usr/local/etc/haproxy/haproxy.cfg"
	}
	lb := cp.Services["lb"]
	if !strings.HasPrefix(lb.Image, a.LB+":") {
		t.Errorf("lb: image %q, want %s", lb.Image, a.LB)
	}
	if len(lb.Ports) != 1 || lb.Ports[0].Published != strconv.Itoa(a.Port) || lb.Ports[0].Target != lbPort {
		t.Errorf("lb publishes %+v, want one port %d:%d", lb.Ports, a.Port, lbPort)
	}
	if !slices.ContainsFunc(lb.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeBind && v.Source == filepath.Join(p.dir, lbFile(a.LB)) && v.Target == lbConfig && v.ReadOnly
	}) {
		t.Errorf("lb: volumes %+v, want ./%s mounted read-only on %s", lb.Volumes, lbFile(a.LB), lbConfig)
	}

	instanceIDs := map[string]string{}
	for _, name := range apps {
		svc := cp.Services[name]
		env := func(k string) string {
			if v := svc.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		if env("CLUSTER_MODE") != "true" {
			t.Errorf("%s: CLUSTER_MODE=%q, want true", name, env("CLUSTER_MODE"))
		}
		id := env("INSTANCE_ID")
		if id == "" || instanceIDs[id] != "" {
			t.Errorf("%s: INSTANCE_ID=%q: want one of its own (app services %v)", name, id, instanceIDs)
		}
		instanceIDs[id] = name
		if env("PORT") != strconv.Itoa(a.Port) {
			t.Errorf("%s: PORT=%q, want %d (the port of the load balancer's server lines)", name, env("PORT"), a.Port)
		}
		drain, err1 := time.ParseDuration(env("SHUTDOWN_DRAIN_DELAY"))
		timeout, err2 := time.ParseDuration(env("SHUTDOWN_TIMEOUT"))
		if err1 != nil || err2 != nil {
			t.Errorf("%s: SHUTDOWN_DRAIN_DELAY and SHUTDOWN_TIMEOUT must be durations: %v, %v", name, err1, err2)
		} else if svc.StopGracePeriod == nil || time.Duration(*svc.StopGracePeriod) <= drain+timeout {
			t.Errorf("%s: stop_grace_period %v must be longer than SHUTDOWN_DRAIN_DELAY + SHUTDOWN_TIMEOUT = %v", name, svc.StopGracePeriod, drain+timeout)
		}
		if got := slices.Sorted(maps.Keys(svc.DependsOn)); !slices.Equal(got, slices.Sorted(slices.Values(deps))) {
			t.Errorf("%s depends on %v, want %v", name, got, deps)
		}
		for dep, d := range svc.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s depends on %s with condition %q, want %s", name, dep, d.Condition, types.ServiceConditionHealthy)
			}
		}
	}

	if a.LB == "haproxy" {
		checkHAProxyDetection(t, p, cp.Services["app-1"])
	}

	for _, name := range deps {
		svc := cp.Services[name]
		if hc := svc.HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s: no healthcheck, but the app waits for it to be healthy", name)
		}
		if name == "redis" {
			continue // no volume on purpose: see the comment in docker-compose.yml
		}
		named := 0
		for _, v := range svc.Volumes {
			if _, declared := cp.Volumes[v.Source]; v.Type == types.VolumeTypeVolume && declared {
				named++
			} else {
				t.Errorf("%s: volume %s:%s is not a named volume declared under volumes:", name, v.Source, v.Target)
			}
		}
		if named == 0 {
			t.Errorf("%s: no named volume for its data", name)
		}
	}

	checkSecrets(t, p, exampleEnv, cp)
}

// checkSecrets: the random values of .env are in no generated file (compose
// and .env.example included), and every secret the services get comes from
// .env through ${VAR}: values of secret-looking variables and passwords in
// URLs are .env values.
func checkSecrets(t *testing.T, p *project, exampleEnv map[string]string, cp *types.Project) {
	fromEnv := map[string]bool{}
	for k, v := range p.env {
		fromEnv[v] = true
		if v == exampleEnv[k] {
			continue // not a secret: the same in .env.example (MINIO_ROOT_USER)
		}
		for name, b := range p.files {
			if strings.Contains(string(b), v) {
				t.Errorf("%s holds the value of %s from .env; use ${%s}", name, k, k)
			}
		}
		if !strings.Contains(string(p.files["docker-compose.yml"]), "${"+k) {
			t.Errorf("docker-compose.yml never uses ${%s}, which .env sets", k)
		}
	}
	secretName := regexp.MustCompile(`(?i)PASSWORD|SECRET|ACCESS_KEY|_AUTH|TOKEN`)
	for name, svc := range cp.Services {
		for k, v := range svc.Environment {
			if v == nil {
				continue
			}
			if secretName.MatchString(k) && !fromEnv[*v] {
				t.Errorf("%s: %s is not taken from .env (use ${VAR} and put the value in .env)", name, k)
			}
			if u, err := url.Parse(*v); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && !fromEnv[pw] {
					t.Errorf("%s: %s has a password that is not taken from .env", name, k)
				}
			}
		}
	}
}

// checkHAProxyDetection: an instance's drain must outlast haproxy's
// detection of it, a check every inter, fall failures in a row, plus up to
// one inter until the first.
func checkHAProxyDetection(t *testing.T, p *project, app types.ServiceConfig) {
	m := regexp.MustCompile(`\binter\s+(\d+)(ms|s)\b.*\bfall\s+(\d+)`).FindStringSubmatch(string(p.files["deploy/haproxy.cfg"]))
	if m == nil {
		t.Error(`haproxy.cfg: no "inter <n>s ... fall <n>" on the servers`)
		return
	}
	inter, _ := time.ParseDuration(m[1] + m[2])
	fall, _ := strconv.Atoi(m[3])
	var drain time.Duration
	if v := app.Environment["SHUTDOWN_DRAIN_DELAY"]; v != nil {
		drain, _ = time.ParseDuration(*v)
	}
	if detect := time.Duration(fall+1) * inter; drain <= detect {
		t.Errorf("SHUTDOWN_DRAIN_DELAY=%v must be longer than haproxy's detection time (fall+1) x inter = %v", drain, detect)
	}
}

func lbFile(lb string) string {
	if lb == "haproxy" {
		return "deploy/haproxy.cfg"
	}
	return "deploy/nginx.conf"
}

// imageTag is the tag of an image reference: after the last ":" of its last
// path element ("" when there is none).
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, _ := strings.Cut(last, ":")
	return tag
}
