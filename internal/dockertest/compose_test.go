package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// -update has nothing to rewrite here; it is defined so that
// `go test ./... -update` (which rewrites the golden trees) runs.
var _ = flag.Bool("update", false, "ignored")

// trees are the generated projects run here, by load balancer: reference-app
// has haproxy (the default) in front, all-nginx nginx.
var trees = []struct{ lb, dir string }{
	{"haproxy", "../../reference-app"},
	{"nginx", "../../testdata/golden/all-nginx/tree"},
}

// script is the engine script, relative to this package.
const script = "../../scripts/docker-engine.sh"

// standinLabel marks the images scripts/docker-engine.sh made.
const standinLabel = "org.scaffold.standin"

// instances are the app services of both trees (3 replicas).
var instances = []string{"app-1", "app-2", "app-3"}

// The tags that keep the app's build between the trees and between runs:
// the classic builder's layer cache is its untagged intermediate images,
// which live as long as an image built on them has a tag. buildCacheTag is
// the Dockerfile's build stage (go mod download, go build), appTag the app
// image compose built last.
const (
	buildCacheTag = "scaffold-dockertest/build-cache:latest"
	appTag        = "scaffold-dockertest/app:latest"
)

// TestCompose runs each tree with `docker compose up --build` on a real
// engine and checks it from outside, as a user would, through the load
// balancer's published port.
//
// REMEMBER: the images the compose file and the Dockerfile pin are local
// stand-ins (see scripts/docker-engine.sh): this checks the compose file,
// the Dockerfile, the healthchecks, the DNS names and depends_on, not the
// upstream images.
func TestCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: installs a Docker engine and builds images")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the engine script is for Debian Linux")
	}
	if os.Getuid() != 0 {
		// dockerd, apt-get and debootstrap need root. Skipped rather than
		// failed on a developer's machine; CI runs as root and must run it.
		if os.Getenv("CI") != "" {
			t.Fatal("TestCompose needs root to install and start the Docker engine (scripts/docker-engine.sh)")
		}
		t.Skip("needs root: scripts/docker-engine.sh installs and starts the Docker engine")
	}
	tm := &timings{}
	defer tm.log(t)

	// Each step is timed on its own: what a warm cache saves shows per step.
	tm.step(t, "engine: install (apt, docker compose build, debootstrap)", func() error {
		_, err := engineScript(t, "install")
		return err
	})
	var started string
	tm.step(t, "engine: start dockerd", func() error {
		out, err := engineScript(t, "start")
		if pid, ok := strings.CutPrefix(strings.TrimSpace(out), "started "); ok {
			started = pid
		}
		return err
	})
	if started != "" {
		// Only a dockerd this test started is stopped, by its PID.
		t.Cleanup(func() {
			begin := time.Now()
			if _, err := engineScript(t, "stop", started); err != nil {
				t.Errorf("stopping dockerd %s: %v", started, err)
			}
			t.Logf("engine: stop dockerd %s took %v", started, time.Since(begin).Round(100*time.Millisecond))
		})
	}
	tm.step(t, "engine: stand-in images", func() error {
		_, err := engineScript(t, "images")
		return err
	})
	out, err := engineScript(t, "compose")
	if err != nil {
		t.Fatal(err)
	}
	composeBin := strings.TrimSpace(out)
	server, err := docker("version", "--format", "{{.Server.Version}}")
	if err != nil {
		t.Fatal(err)
	}
	version, err := exec.Command(composeBin, "version", "--short").Output()
	if err != nil {
		t.Fatalf("%s version: %v", composeBin, err)
	}
	t.Logf("dockerd %s, docker compose %s (%s)", strings.TrimSpace(server), strings.TrimSpace(string(version)), composeBin)

	built := false // a tree's app image was built: the next one's build is all cache
	for _, tree := range trees {
		t.Run(tree.lb, func(t *testing.T) {
			runTree(t, tm, composeBin, tree.lb, tree.dir, &built)
		})
	}
	if t.Failed() {
		// What a failed run built stays, untagged: the next run uses it
		// as cache, and the next run that passes prunes what is stale.
		return
	}
	last := trees[len(trees)-1]
	tm.step(t, "keep the build stage: docker build --target build -t "+buildCacheTag+" (all cached)", func() error {
		return tagBuildStage(t, last.dir)
	})
	tm.step(t, "remove dangling images of earlier runs (docker image prune)", func() error {
		return pruneStale(t)
	})
}

// tagBuildStage tags the build stage of the app's Dockerfile, so that it
// and the layers under it (go mod download, go build) survive the prune
// and the next run of the test finds them in the cache. It is built again
// from a copy of tree, as compose built it: every step must come from the
// cache, or the tag would not hold what compose built.
func tagBuildStage(t *testing.T, tree string) error {
	dir := t.TempDir()
	if err := copyTree(tree, dir); err != nil {
		return err
	}
	cmd := exec.Command("docker", "build", "--target", "build", "-t", buildCacheTag, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker build --target build: %w\n%s", err, tail(string(out), 40))
	}
	steps := buildSteps(string(out))
	if len(steps) == 0 {
		return fmt.Errorf("docker build --target build: no step in its output:\n%s", tail(string(out), 40))
	}
	for _, s := range steps {
		if !s.cached {
			return fmt.Errorf("docker build --target build ran %q instead of taking it from the cache compose filled: the tag would not hold what compose built\n%s", s.instr, tail(string(out), 40))
		}
	}
	t.Logf("%s: the build stage, %d steps, all from the cache", buildCacheTag, len(steps))
	return nil
}

// pruneStale removes the dangling images made from the stand-ins (they
// carry the stand-in label): the build chains and app images of earlier
// runs that the tags no longer hold, after the app changed. So the disk use
// stays bounded by one build chain and one app image. Images not made from
// a stand-in are not touched.
func pruneStale(t *testing.T) error {
	out, err := docker("image", "prune", "-f", "--filter", "label="+standinLabel)
	if err != nil {
		return err
	}
	deleted := strings.Count(out, "deleted: sha256:")
	reclaimed := "0B"
	if m := regexp.MustCompile(`Total reclaimed space: (\S+)`).FindStringSubmatch(out); m != nil {
		reclaimed = m[1]
	}
	df, _ := docker("system", "df", "--format", "{{.Type}}: {{.TotalCount}}, {{.Size}}")
	t.Logf("docker image prune: %d image layers deleted, %s reclaimed; now %s", deleted, reclaimed, strings.SplitN(strings.TrimSpace(df), "\n", 2)[0])
	return nil
}

// buildStep is one step of the classic builder's output.
type buildStep struct {
	instr  string // "RUN go build ...", as the builder prints it
	cached bool   // " ---> Using cache"
}

// buildSteps parses the classic builder's output ("Step 3/9 : RUN ...",
// then " ---> Using cache" when the step came from the cache) into its
// steps. FROM steps never come from the cache and are left out.
func buildSteps(out string) []buildStep {
	var steps []buildStep
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if m := regexp.MustCompile(`^Step \d+/\d+ : (.*)$`).FindStringSubmatch(line); m != nil {
			steps = append(steps, buildStep{instr: m[1]})
			continue
		}
		if line == "---> Using cache" && len(steps) > 0 {
			steps[len(steps)-1].cached = true
		}
	}
	return slices.DeleteFunc(steps, func(s buildStep) bool { return strings.HasPrefix(strings.ToUpper(s.instr), "FROM ") })
}

// engineScript runs scripts/docker-engine.sh with args and returns its
// standard output; what it says on standard error goes to the test log.
func engineScript(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Log(s)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("sh %s %s: %w", script, strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}

// project is one tree copied to a temporary directory and run as a compose
// project of its own name.
type project struct {
	t       *testing.T
	compose string // the docker compose binary
	name    string // compose project name, unique per run
	dir     string
	secrets []string // the values written to .env
	lbPort  string   // the load balancer's port inside its container
	base    string   // http://127.0.0.1:<published port>
	client  *http.Client
	down    bool   // down -v has run
	image   string // the id of the app image compose built
}

// runTree runs one tree. built says whether an earlier tree's app image
// was built; then this one's build must come from the cache, since the
// build context is the same (.dockerignore leaves out what differs).
func runTree(t *testing.T, tm *timings, composeBin, lb, src string, built *bool) {
	p := &project{t: t, compose: composeBin, dir: t.TempDir(),
		name:   fmt.Sprintf("scaffoldtest-%s-%d-%s", lb, os.Getpid(), randomHex(t, 3)),
		client: &http.Client{Timeout: 15 * time.Second},
	}
	if err := copyTree(src, p.dir); err != nil {
		t.Fatal(err)
	}
	p.writeEnv()
	p.writeOverride()
	checkStandins(t, p.dir)
	t.Cleanup(p.cleanup)

	// A failed step shows the state of every service and its last words.
	step := func(name string, fn func() error) {
		tm.step(t, lb+": "+name, func() error {
			err := fn()
			if err != nil && !p.down {
				ps, _ := p.run("ps", "-a")
				logs, _ := p.run("logs", "--no-color", "--tail", "15")
				err = fmt.Errorf("%w\n--- docker compose ps -a:\n%s\n--- docker compose logs --tail 15:\n%s", err, ps, logs)
			}
			return err
		})
	}

	// app-1's image first, on its own: compose would build app-1..3 (one
	// build: . each) in parallel, three times the same compile on a machine
	// of 2 cores. up --build then builds app-2 and app-3 from the builder's
	// cache. The layers of earlier runs and trees are kept (see
	// buildCacheTag): with an unchanged app, every step is a cache hit.
	cachedBefore := *built
	step("compose build app-1", func() error {
		out, err := p.run("build", "app-1")
		if err != nil {
			return err
		}
		*built = true
		// compose names the image PROJECT-SERVICE.
		id, err := docker("image", "inspect", "-f", "{{.Id}}", p.name+"-app-1")
		if err != nil {
			return err
		}
		p.image = strings.TrimSpace(id)
		return p.checkBuildCache(out, cachedBefore)
	})
	step("compose up -d --build --wait (every service healthy)", func() error {
		_, err := p.run("up", "-d", "--build", "--wait", "--wait-timeout", "300")
		return err
	})
	step("every service running, healthy where it has a healthcheck", p.checkHealthy)
	port, err := p.run("port", "lb", p.lbPort)
	if err != nil {
		t.Fatal(err)
	}
	p.base = "http://" + strings.TrimSpace(port)
	t.Logf("load balancer published at %s", p.base)

	step("round robin over app-1..3", p.checkRoundRobin)
	var noteID int64
	step("note write, read (X-Cache miss, then redis)", func() (err error) {
		noteID, err = p.checkNote()
		return err
	})
	step("file put, get through MinIO", p.checkFile)
	var leader string
	step("exactly one leader", func() (err error) {
		leader, err = p.findLeader("")
		return err
	})
	step("app runs as non-root", p.checkNonRoot)
	step("healthcheck is exec form, image has no shell", p.checkNoShell)
	step("load balancer version and config check", func() error { return p.checkLB(lb) })
	step("no secret in the image's layers, history or config", p.checkNoSecret)
	step("compose stop app-1 under load: 0 failed requests", func() error { return p.checkStopUnderLoad(noteID) })
	step("app-1 back (up -d --wait app-1)", func() error {
		_, err := p.run("up", "-d", "--no-build", "--wait", "--wait-timeout", "120", "app-1")
		return err
	})
	step("compose kill of the leader: another takes over", func() error {
		// app-1 was stopped since: it may have been the leader then.
		l, err := p.findLeader("")
		if err != nil {
			return err
		}
		leader = l
		return p.checkTakeover(leader)
	})
	step("compose down -v; nothing of the project left; app image kept as "+appTag, p.downAndCheck)
}

// checkBuildCache logs which steps of the app's build came from the cache.
// After another tree's build (mustHit) the go build must have: the build
// contexts are the same, or .dockerignore lets in a file that differs.
func (p *project) checkBuildCache(out string, mustHit bool) error {
	steps := buildSteps(out)
	if len(steps) == 0 {
		return fmt.Errorf("no build step in docker compose build's output (is it still the classic builder?):\n%s", tail(out, 40))
	}
	cached, goBuild := 0, -1
	var ran []string
	for i, s := range steps {
		if s.cached {
			cached++
		} else {
			ran = append(ran, s.instr)
		}
		if strings.HasPrefix(s.instr, "RUN ") && strings.Contains(s.instr, "go build") {
			goBuild = i
		}
	}
	if goBuild < 0 {
		return fmt.Errorf("no RUN ... go build step in the app's build:\n%s", tail(out, 40))
	}
	context := ""
	if m := regexp.MustCompile(`Sending build context to Docker daemon\s+([0-9.]+[kMG]?B)`).FindAllStringSubmatch(out, -1); m != nil {
		context = ", context sent " + m[len(m)-1][1]
	}
	p.t.Logf("app image build: %d of %d steps from the cache%s; go build cached: %v; ran: %q", cached, len(steps), context, steps[goBuild].cached, ran)
	if mustHit && !steps[goBuild].cached {
		return fmt.Errorf("the app's go build ran again although the tree before built it: the build contexts differ (.dockerignore must leave out every file the trees do not share; see TestBuildContextsSame)")
	}
	return nil
}

// run runs docker compose in the project with args and returns its output.
func (p *project) run(args ...string) (string, error) {
	return p.runCtx(context.Background(), args...)
}

func (p *project) runCtx(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"-p", p.name, "-f", "docker-compose.yml", "-f", "compose.dockertest.yml"}, args...)
	cmd := exec.CommandContext(ctx, p.compose, full...)
	cmd.Dir = p.dir
	// The classic builder: there is no buildx on these machines.
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0", "COMPOSE_PROJECT_NAME=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker compose %s: %w\n%s", strings.Join(args, " "), err, tail(string(out), 40))
	}
	return string(out), nil
}

// docker runs the docker CLI and returns its standard output.
func docker(args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// cleanup removes what the project created, whatever state a failure left
// it in: containers, networks, volumes, and the project's names for the
// images it built. The layers stay (untagged unless kept): the next run
// builds from them, and TestCompose prunes what is stale.
func (p *project) cleanup() {
	if !p.down {
		if out, err := p.run("down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			p.t.Errorf("cleanup: %v\n%s", err, out)
		}
	}
	if err := p.untagImages(); err != nil {
		p.t.Errorf("cleanup: %v", err)
	}
}

// projectImages returns the references of the images named after the
// project (compose names what it builds PROJECT-SERVICE).
func (p *project) projectImages() ([]string, error) {
	out, err := docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+p.name+"-*")
	return strings.Fields(out), err
}

// untagImages removes the project's names of the images it built. An
// image with no other tag goes with its name; the app image compose built
// is tagged appTag first (downAndCheck), so it stays.
func (p *project) untagImages() error {
	refs, err := p.projectImages()
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		return nil
	}
	_, err = docker(append([]string{"rmi"}, refs...)...)
	return err
}

// writeEnv writes .env as the generator would: the names of .env.example,
// a random value for each secret, the user names kept.
func (p *project) writeEnv() {
	example, err := os.ReadFile(filepath.Join(p.dir, ".env.example"))
	if err != nil {
		p.t.Fatalf("reading .env.example: %v", err)
	}
	var env strings.Builder
	for _, line := range strings.Split(string(example), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasSuffix(name, "_USER") {
			value = randomHex(p.t, 16)
			p.secrets = append(p.secrets, value)
		}
		fmt.Fprintf(&env, "%s=%s\n", name, value)
	}
	if len(p.secrets) == 0 {
		p.t.Fatal(".env.example names no secret")
	}
	if err := os.WriteFile(filepath.Join(p.dir, ".env"), []byte(env.String()), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// writeOverride publishes the load balancer on a free loopback port instead
// of the compose file's fixed host port, so that the test neither collides
// with what else runs on the machine nor listens beyond loopback. It is the
// only change to the project's files.
func (p *project) writeOverride() {
	compose, err := os.ReadFile(filepath.Join(p.dir, "docker-compose.yml"))
	if err != nil {
		p.t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+- "\d+:(\d+)"`).FindSubmatch(compose)
	if m == nil {
		p.t.Fatal("docker-compose.yml publishes no port")
	}
	p.lbPort = string(m[1])
	override := fmt.Sprintf("# Written by internal/dockertest.\nservices:\n  lb:\n    ports: !override\n      - \"127.0.0.1::%s\"\n", p.lbPort)
	if err := os.WriteFile(filepath.Join(p.dir, "compose.dockertest.yml"), []byte(override), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// checkStandins fails when the compose file or the Dockerfile pins an image
// that scripts/docker-engine.sh does not make: compose would try to pull it
// from a registry these machines cannot reach.
func checkStandins(t *testing.T, dir string) {
	refs, err := pinnedImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		out, err := docker("image", "inspect", "-f", `{{index .Config.Labels "`+standinLabel+`"}}`, ref)
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("the project pins %s, for which scripts/docker-engine.sh makes no stand-in image: add it there (%v)", ref, err)
		}
	}
}

// pinnedImages returns the image references of docker-compose.yml (image:)
// and of the Dockerfile (FROM, stage names excluded).
func pinnedImages(dir string) ([]string, error) {
	var refs []string
	compose, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		return nil, fmt.Errorf("reading docker-compose.yml: %w", err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+image:\s*"?([^"\s]+)"?`).FindAllSubmatch(compose, -1) {
		refs = append(refs, string(m[1]))
	}
	dockerfile, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		return nil, fmt.Errorf("reading Dockerfile: %w", err)
	}
	stages := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?mi)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?`).FindAllSubmatch(dockerfile, -1) {
		if !stages[string(m[1])] {
			refs = append(refs, string(m[1]))
		}
		if len(m[2]) > 0 {
			stages[string(m[2])] = true
		}
	}
	if len(refs) < 3 {
		return nil, fmt.Errorf("found only %v as pinned images in %s", refs, dir)
	}
	return refs, nil
}

// psEntry is one line of `docker compose ps --format json`.
type psEntry struct {
	Service string
	State   string
	Health  string
	ID      string
}

func (p *project) ps() ([]psEntry, error) {
	out, err := p.run("ps", "-a", "--format", "json")
	if err != nil {
		return nil, err
	}
	var entries []psEntry
	// One JSON object per line (compose >= 2.21).
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e psEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("parsing docker compose ps: %w: %q", err, line)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func (p *project) checkHealthy() error {
	entries, err := p.ps()
	if err != nil {
		return err
	}
	want := append([]string{"lb", "postgres", "redis", "minio"}, instances...)
	var got []string
	for _, e := range entries {
		got = append(got, e.Service)
		if e.State != "running" {
			return fmt.Errorf("service %s is %s", e.Service, e.State)
		}
		// Every service but the load balancer has a healthcheck.
		if e.Service != "lb" && e.Health != "healthy" {
			return fmt.Errorf("service %s is %q, not healthy", e.Service, e.Health)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("services %v, want %v", got, want)
	}
	return nil
}

// instanceInfo is GET /api/instance.
type instanceInfo struct {
	InstanceID string `json:"instance_id"`
	Leader     *bool  `json:"leader"`
}

func (p *project) instance() (instanceInfo, error) {
	var info instanceInfo
	resp, err := p.client.Get(p.base + "/api/instance")
	if err != nil {
		return info, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return info, fmt.Errorf("reading /api/instance: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return info, fmt.Errorf("GET /api/instance: %s: %s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return info, fmt.Errorf("GET /api/instance: %w: %s", err, body)
	}
	if hdr := resp.Header.Get("X-Instance-ID"); hdr != info.InstanceID {
		return info, fmt.Errorf("X-Instance-ID %q but body says %q", hdr, info.InstanceID)
	}
	return info, nil
}

func (p *project) checkRoundRobin() error {
	counts := map[string]int{}
	const n = 30
	for range n {
		info, err := p.instance()
		if err != nil {
			return err
		}
		counts[info.InstanceID]++
	}
	p.t.Logf("round robin over %d requests: %v", n, counts)
	for _, id := range instances {
		// Round robin gives each 10; a little slack for the load
		// balancer's health checks and connection reuse.
		if counts[id] < n/len(instances)-3 {
			return fmt.Errorf("round robin: %s answered %d of %d requests: %v", id, counts[id], n, counts)
		}
	}
	if len(counts) != len(instances) {
		return fmt.Errorf("round robin: answers from %v, want %v", counts, instances)
	}
	return nil
}

// checkNote creates a note and reads it back: the first read misses the
// cache, a later one (on another instance) finds it in Redis.
func (p *project) checkNote() (int64, error) {
	in := map[string]string{"title": "dockertest", "body": "written through the load balancer"}
	b, _ := json.Marshal(in)
	resp, err := p.client.Post(p.base+"/api/notes", "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("POST /api/notes: %s: %s", resp.Status, body)
	}
	var note struct {
		ID    int64  `json:"id"`
		Title string `json:"title"`
		Body  string `json:"body"`
	}
	if err := json.Unmarshal(body, &note); err != nil {
		return 0, fmt.Errorf("POST /api/notes: %w: %s", err, body)
	}
	var sources []string
	for range 3 {
		resp, err := p.client.Get(fmt.Sprintf("%s/api/notes/%d", p.base, note.ID))
		if err != nil {
			return 0, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET /api/notes/%d: %s: %s", note.ID, resp.Status, body)
		}
		var got struct{ Title, Body string }
		if err := json.Unmarshal(body, &got); err != nil || got.Title != in["title"] || got.Body != in["body"] {
			return 0, fmt.Errorf("GET /api/notes/%d: %s (%v), want %v", note.ID, body, err, in)
		}
		sources = append(sources, resp.Header.Get("X-Cache")+"@"+resp.Header.Get("X-Instance-ID"))
	}
	p.t.Logf("note %d read 3 times, X-Cache@instance: %v", note.ID, sources)
	if !strings.HasPrefix(sources[0], "miss@") {
		return 0, fmt.Errorf("first read of a new note: X-Cache %v, want miss first", sources)
	}
	if !strings.HasPrefix(sources[1], "redis@") && !strings.HasPrefix(sources[1], "local@") {
		return 0, fmt.Errorf("second read of a note: X-Cache %v, want redis or local", sources)
	}
	return note.ID, nil
}

// checkFile puts a file and reads it back (through other instances: round
// robin), so the bytes went through MinIO.
func (p *project) checkFile() error {
	data := make([]byte, 256<<10)
	if _, err := rand.Read(data); err != nil {
		return err
	}
	url := p.base + "/api/files/dockertest/" + randomHex(p.t, 4) + ".bin"
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(data))
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: %s: %s", url, resp.Status, body)
	}
	for range 2 {
		resp, err := p.client.Get(url)
		if err != nil {
			return err
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("reading GET %s: %w", url, err)
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
			return fmt.Errorf("GET %s from %s: %s, %d bytes, want the %d bytes put", url,
				resp.Header.Get("X-Instance-ID"), resp.Status, len(got), len(data))
		}
	}
	return nil
}

// findLeader asks every instance (through the load balancer, round robin)
// until exactly one says it leads, other than not; it returns that one.
func (p *project) findLeader(not string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaders := map[string]bool{}
		seen := map[string]bool{}
		var lastErr error
		for range 9 {
			info, err := p.instance()
			if err != nil {
				lastErr = err
				continue
			}
			if info.Leader == nil {
				return "", fmt.Errorf("/api/instance of %s has no leader field", info.InstanceID)
			}
			seen[info.InstanceID] = true
			if *info.Leader {
				leaders[info.InstanceID] = true
			}
		}
		if len(leaders) > 1 {
			return "", fmt.Errorf("more than one leader: %v", leaders)
		}
		for id := range leaders {
			if id != not {
				p.t.Logf("leader: %s (instances answering: %d)", id, len(seen))
				return id, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no leader other than %q within 30s (last error: %v)", not, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containerOf returns the container id of service.
func (p *project) containerOf(service string) (string, error) {
	out, err := p.run("ps", "-q", service)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	if id == "" {
		return "", fmt.Errorf("service %s has no container", service)
	}
	return id, nil
}

// checkNonRoot reads the user of each app process from /proc on the host:
// what the kernel says, not what the image claims.
func (p *project) checkNonRoot() error {
	for _, svc := range instances {
		id, err := p.containerOf(svc)
		if err != nil {
			return err
		}
		out, err := docker("inspect", "-f", "{{.State.Pid}} {{.Config.User}}", id)
		if err != nil {
			return err
		}
		pid, user, _ := strings.Cut(strings.TrimSpace(out), " ")
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			return fmt.Errorf("reading the status of %s's process: %w", svc, err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 5 && f[0] == "Uid:" {
				if slices.Contains(f[1:], "0") {
					return fmt.Errorf("%s runs with uids %v (image user %q): root", svc, f[1:], user)
				}
				if svc == "app-1" {
					p.t.Logf("app process uids %v, image user %q", f[1:], user)
				}
			}
		}
	}
	return nil
}

// appImage returns the image id app-1 runs.
func (p *project) appImage() (string, error) {
	id, err := p.containerOf("app-1")
	if err != nil {
		return "", err
	}
	out, err := docker("inspect", "-f", "{{.Image}}", id)
	return strings.TrimSpace(out), err
}

// checkNoShell: the healthcheck is in exec form and passed (the containers
// are healthy), and the image really has no shell to run a shell form.
func (p *project) checkNoShell() error {
	img, err := p.appImage()
	if err != nil {
		return err
	}
	out, err := docker("image", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", img)
	if err != nil {
		return err
	}
	var test []string
	if err := json.Unmarshal([]byte(out), &test); err != nil {
		return fmt.Errorf("the app image's healthcheck %s: %w", out, err)
	}
	if len(test) < 2 || test[0] != "CMD" {
		return fmt.Errorf("the app image's healthcheck is %q, want the exec form [CMD ...]", test)
	}
	id, err := p.containerOf("app-1")
	if err != nil {
		return err
	}
	out, err = docker("inspect", "-f", "{{.State.Health.Status}} {{len .State.Health.Log}}", id)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(out, "healthy ") {
		return fmt.Errorf("app-1 health: %s", out)
	}
	name := p.name + "-noshell"
	run := exec.Command("docker", "run", "--rm", "--name", name, "--network", "none", "--entrypoint", "/bin/sh", img, "-c", "true")
	shellOut, err := run.CombinedOutput()
	if err == nil {
		return fmt.Errorf("/bin/sh ran in the app image: it has a shell")
	}
	// A container left by a failed start is removed; --rm does not cover
	// every failure.
	_, _ = docker("rm", "-f", name)
	p.t.Logf("healthcheck %q; /bin/sh in the image: %s", test, strings.SplitN(strings.TrimSpace(string(shellOut)), "\n", 2)[0])
	return nil
}

// checkLB checks, in the running load balancer container, what only the
// container shows: its version (nginx needs >= 1.27.3 for "resolve") and
// that it accepts the project's config as mounted.
func (p *project) checkLB(lb string) error {
	var version, check []string
	switch lb {
	case "nginx":
		version, check = []string{"nginx", "-v"}, []string{"nginx", "-t"}
	case "haproxy":
		version, check = []string{"haproxy", "-v"}, []string{"haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg"}
	}
	out, err := p.run(append([]string{"exec", "-T", "lb"}, version...)...)
	if err != nil {
		return err
	}
	first := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]
	p.t.Logf("load balancer: %s", first)
	if lb == "nginx" {
		m := regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("nginx -v said %q", out)
		}
		v := [3]int{}
		for i := range v {
			v[i], _ = strconv.Atoi(m[i+1])
		}
		if v[0] < 1 || v[0] == 1 && (v[1] < 27 || v[1] == 27 && v[2] < 3) {
			return fmt.Errorf("nginx %s.%s.%s predates 'server ... resolve;' (1.27.3)", m[1], m[2], m[3])
		}
	}
	if out, err := p.run(append([]string{"exec", "-T", "lb"}, check...)...); err != nil {
		return fmt.Errorf("config check: %w\n%s", err, out)
	}
	return nil
}

// checkNoSecret looks for every value of .env in the app image: its
// history, its config, and the content and names of every file of every
// layer (docker save).
func (p *project) checkNoSecret() error {
	img, err := p.appImage()
	if err != nil {
		return err
	}
	history, err := docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", img)
	if err != nil {
		return err
	}
	inspect, err := docker("image", "inspect", img)
	if err != nil {
		return err
	}
	for _, s := range p.secrets {
		if strings.Contains(history, s) {
			return fmt.Errorf("a secret of .env is in the app image's history")
		}
		if strings.Contains(inspect, s) {
			return fmt.Errorf("a secret of .env is in the app image's config")
		}
	}
	cmd := exec.Command("docker", "save", img)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("docker save: %w", err)
	}
	files, scanErr := p.scanForSecrets(stdout, 0)
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("docker save: %w: %s", err, stderr.String())
	}
	if scanErr != nil {
		return scanErr
	}
	p.t.Logf("no secret in the app image: history, config and %d files of its layers searched", files)
	return nil
}

// scanForSecrets reads a tar stream (docker save's, and the layer tars in
// it) and fails on a file named .env or holding a secret's value.
func (p *project) scanForSecrets(r io.Reader, depth int) (int, error) {
	files := 0
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("reading the image's tar: %w", err)
		}
		if filepath.Base(hdr.Name) == ".env" {
			return files, fmt.Errorf("the app image holds %s", hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if depth == 0 && strings.HasSuffix(hdr.Name, ".tar") {
			n, err := p.scanForSecrets(tr, depth+1)
			files += n
			if err != nil {
				return files, err
			}
			continue
		}
		files++
		data, err := io.ReadAll(tr)
		if err != nil {
			return files, fmt.Errorf("reading %s from the image: %w", hdr.Name, err)
		}
		for _, s := range p.secrets {
			if bytes.Contains(data, []byte(s)) {
				return files, fmt.Errorf("a secret of .env is in %s of the app image", hdr.Name)
			}
		}
	}
}

// load sends requests through the load balancer from a few clients until
// stopped: reads of the instance and of a note, and note writes. It counts
// what failed: a transport error or an unexpected status.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func (p *project) startLoad(noteID int64, clients int) *load {
	l := &load{stop: make(chan struct{})}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				var req *http.Request
				want := http.StatusOK
				switch (i + c) % 3 {
				case 0:
					req, _ = http.NewRequest(http.MethodGet, p.base+"/api/instance", nil)
				case 1:
					req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/notes/%d", p.base, noteID), nil)
				case 2:
					b := fmt.Sprintf(`{"title":"load %d-%d","body":"x"}`, c, i)
					req, _ = http.NewRequest(http.MethodPost, p.base+"/api/notes", strings.NewReader(b))
					req.Header.Set("Content-Type", "application/json")
					want = http.StatusCreated
				}
				resp, err := p.client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != want {
						err = fmt.Errorf("%s (from %s)", resp.Status, resp.Header.Get("X-Instance-ID"))
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.failures) < 10 {
						l.failures = append(l.failures, fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) end() (ok, failed int64, failures []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.failures
}

// checkStopUnderLoad stops app-1 the way docker compose does (SIGTERM, the
// app drains) while clients keep sending requests: none may fail.
func (p *project) checkStopUnderLoad(noteID int64) error {
	l := p.startLoad(noteID, 4)
	time.Sleep(2 * time.Second)
	begin := time.Now()
	_, stopErr := p.run("stop", "app-1")
	stopped := time.Since(begin)
	time.Sleep(2 * time.Second) // and a while after, on two instances
	ok, failed, failures := l.end()
	if stopErr != nil {
		return stopErr
	}
	p.t.Logf("compose stop app-1 took %v; under load: %d requests ok, %d failed", stopped.Round(100*time.Millisecond), ok, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d requests failed while app-1 stopped: %v", failed, ok+failed, failures)
	}
	if ok < 20 {
		return fmt.Errorf("only %d requests were sent while app-1 stopped", ok)
	}
	return nil
}

// checkTakeover kills the leader (SIGKILL: no drain, no unlock) while
// clients keep reading; another instance must lead, and reads must not fail
// (the load balancer retries them elsewhere).
func (p *project) checkTakeover(leader string) error {
	// Only reads: kill -9 may cut a write after its commit, which a client
	// cannot tell from a failure (retrying with an Idempotency-Key is the
	// cluster conformance test's business).
	reads := &load{stop: make(chan struct{})}
	reads.wg.Add(1)
	go func() {
		defer reads.wg.Done()
		for {
			select {
			case <-reads.stop:
				return
			default:
			}
			if _, err := p.instance(); err != nil {
				reads.failed.Add(1)
				reads.mu.Lock()
				if len(reads.failures) < 10 {
					reads.failures = append(reads.failures, err.Error())
				}
				reads.mu.Unlock()
			} else {
				reads.ok.Add(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	begin := time.Now()
	if _, err := p.run("kill", leader); err != nil {
		reads.end()
		return err
	}
	next, err := p.findLeader(leader)
	took := time.Since(begin)
	time.Sleep(time.Second)
	ok, failed, failures := reads.end()
	if err != nil {
		return fmt.Errorf("after killing %s: %w", leader, err)
	}
	p.t.Logf("killed leader %s: %s leads %v later; reads meanwhile: %d ok, %d failed", leader, next, took.Round(100*time.Millisecond), ok, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d reads failed after the leader was killed: %v", failed, ok+failed, failures)
	}
	return nil
}

// downAndCheck runs down -v and checks nothing of the project is left:
// no container, volume or network, and no image under the project's name.
// The app image compose built is kept as appTag, with the layers under it,
// for the next tree and the next run.
func (p *project) downAndCheck() error {
	if _, err := p.run("down", "-v", "--remove-orphans", "-t", "10"); err != nil {
		return err
	}
	p.down = true
	if _, err := docker("tag", p.image, appTag); err != nil {
		return err
	}
	if err := p.untagImages(); err != nil {
		return err
	}
	filter := "label=com.docker.compose.project=" + p.name
	for _, what := range [][]string{
		{"ps", "-a", "-q", "--filter", filter},
		{"volume", "ls", "-q", "--filter", filter},
		{"network", "ls", "-q", "--filter", filter},
		{"image", "ls", "-q", "--filter", "reference=" + p.name + "-*"},
	} {
		out, err := docker(what...)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("after down -v: docker %s lists %s", strings.Join(what, " "), strings.Fields(out))
		}
	}
	return nil
}

// copyTree copies the regular files of src into dst, keeping their modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() || rel == ".env" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("copying %s: %w", path, err)
		}
		return os.WriteFile(target, data, info.Mode().Perm())
	})
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// timings records how long each step took, for the table at the end: the
// cold and warm times CI cares about.
type timings struct {
	mu   sync.Mutex
	rows []string
}

// step runs fn as a named step: timed, and fatal when it fails (the steps
// after it depend on it).
func (tm *timings) step(t *testing.T, name string, fn func() error) {
	t.Helper()
	begin := time.Now()
	err := fn()
	d := time.Since(begin)
	tm.mu.Lock()
	status := "ok"
	if err != nil {
		status = "FAILED"
	}
	tm.rows = append(tm.rows, fmt.Sprintf("%8.1fs  %-6s %s", d.Seconds(), status, name))
	tm.mu.Unlock()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func (tm *timings) log(t *testing.T) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	t.Log("--- docker compose on a real engine: time of each step\n" + strings.Join(tm.rows, "\n"))
}
