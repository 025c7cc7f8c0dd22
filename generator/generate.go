// Package generator turns answers into the files of a new project. It does no
// terminal or disk I/O: Generate returns path -> content and the caller
// decides what to do with it (write it, print it, compare it with a golden
// tree).
package generator

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"go/format"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"text/template"

	"golang.org/x/mod/modfile"

	"github.com/scaffoldhq/scaffold/templates"
)

// Data is what templates see.
type Data struct {
	Name      string // project name: binary, service and compose project
	Module    string // Go module path
	Port      int    // HTTP port of the app
	Replicas  int    // app instances behind the load balancer
	LB        string // "nginx" or "haproxy"
	Version   string // generator version
	GoVersion string // go directive of go.mod
	Features  []string

	// One boolean per feature, whether or not the feature is available yet,
	// so templates can carry its seams before it lands.
	DB, Cache, Blob, Worker, Lock, Queue, Realtime, Compose, K8s bool

	// AppEnv is the app's environment in docker-compose.yml and in the
	// Kubernetes ConfigMap and Secret: one source for both (AppSettings).
	AppEnv []Setting
	// SecretEnv are the names of AppEnv's secret settings.
	SecretEnv []string
	// The images of the backing services, pinned, for docker-compose.yml
	// and the Kubernetes dev overlay alike.
	PostgresImage, RedisImage, MinIOImage string

	// Instances are the compose services of the app: app-1 .. app-N.
	Instances []string
	// InstanceCount is "1 instance" or "N instances", and AppRange
	// "app-1" or "app-1 .. app-N", for prose.
	InstanceCount, AppRange string
	// LBConfig is the path of the load balancer's config in the project.
	LBConfig string
	// PGMaxConnections is PostgreSQL's max_connections in the compose file:
	// room for every instance's pool of 10, its leader connection and the 2
	// it uses while migrating, plus 10 for people and tools; at least
	// PostgreSQL's default of 100.
	PGMaxConnections int
	// StopGracePeriod is the compose file's stop_grace_period, which the
	// README states too: longer than SHUTDOWN_DRAIN_DELAY (5s) plus
	// SHUTDOWN_TIMEOUT (20s) for the HTTP drain, plus SHUTDOWN_TIMEOUT
	// again for the worker's jobs, which stop after it.
	StopGracePeriod string
	// K8s: the HorizontalPodAutoscaler runs Replicas .. K8sMaxReplicas
	// pods. A rolling update adds one that starts (maxSurge 1,
	// maxUnavailable 0) and keeps one that stops: the Deployment controller
	// does not wait for a stopping pod to be gone, only for its replacement
	// to be available, which K8sMinReadySeconds holds back until the pod
	// stopped before it is gone. So K8sMaxPods = K8sMaxReplicas + 2 pods hold
	// a database pool at once, and the database is sized for them
	// (K8sPGMaxConnections, the dev overlay's max_connections).
	K8sMaxReplicas, K8sMaxPods, K8sPGMaxConnections int
	// K8sPreStopSeconds is the pod's preStop sleep: the pod keeps serving,
	// still ready, while its removal from the Service's endpoints reaches
	// every node and the ingress controller (asynchronously); only then does
	// SIGTERM start the app's own drain (SHUTDOWN_DRAIN_DELAY, then
	// SHUTDOWN_TIMEOUT). K8sGraceSeconds, the pod's
	// terminationGracePeriodSeconds, covers both: the preStop sleep plus
	// StopGracePeriod.
	K8sPreStopSeconds, K8sGraceSeconds int
	// K8sMinReadySeconds is the Deployment's minReadySeconds: how long a new
	// pod is ready before it counts as available, and so before the next old
	// pod is stopped. Longer than K8sGraceSeconds, by which the kubelet has
	// killed the pod stopped before, plus k8sStopSlackSeconds.
	K8sMinReadySeconds int
	// Bucket is the default S3_BUCKET: the name, unless it is shorter than
	// the 3 characters S3 requires of a bucket name (a project "r1" gets
	// "r1-files"). Names are otherwise valid bucket names.
	Bucket string
	// TestCommand is the go test command of `make test`, which the README
	// quotes. -p 1: one package at a time, because each package's tests
	// start their own servers, and several packages at once on 2 cores made
	// the servers too slow to answer within the tests' timeouts.
	TestCommand string
	// TestTimeout is the -timeout of make test and make cluster-test.
	TestTimeout string

	// Require is the require blocks of go.mod, from generator/deps.
	Require string
}

func newData(a Answers, lock Lock) Data {
	return Data{
		Name:                a.Name,
		Module:              a.Module,
		Port:                a.Port,
		Replicas:            a.Replicas,
		LB:                  a.LB,
		Version:             Version,
		GoVersion:           GoVersion,
		Features:            slices.Clone(a.Features),
		DB:                  a.Has("db"),
		Cache:               a.Has("cache"),
		Blob:                a.Has("blob"),
		Worker:              a.Has("worker"),
		Lock:                a.Has("lock"),
		Queue:               a.Has("queue"),
		Realtime:            a.Has("realtime"),
		Compose:             a.Has("compose"),
		K8s:                 a.Has("k8s"),
		AppEnv:              AppSettings(a),
		SecretEnv:           secretNames(AppSettings(a)),
		PostgresImage:       "postgres:17.6-alpine",
		RedisImage:          "redis:7.4.5-alpine",
		MinIOImage:          "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
		Instances:           instances(a.Replicas),
		InstanceCount:       map[bool]string{true: "1 instance", false: fmt.Sprintf("%d instances", a.Replicas)}[a.Replicas == 1],
		AppRange:            map[bool]string{true: "app-1", false: fmt.Sprintf("app-1 .. app-%d", a.Replicas)}[a.Replicas == 1],
		PGMaxConnections:    connectionBudget(a.Replicas, a.Has("queue")),
		StopGracePeriod:     fmt.Sprintf("%ds", stopGraceSeconds(a)),
		K8sMaxReplicas:      k8sMaxReplicas(a.Replicas),
		K8sMaxPods:          k8sMaxReplicas(a.Replicas) + 2,
		K8sPGMaxConnections: connectionBudget(k8sMaxReplicas(a.Replicas)+2, a.Has("queue")),
		K8sPreStopSeconds:   k8sPreStopSeconds,
		K8sGraceSeconds:     k8sPreStopSeconds + stopGraceSeconds(a),
		K8sMinReadySeconds:  k8sPreStopSeconds + stopGraceSeconds(a) + k8sStopSlackSeconds,
		TestCommand:         "go test -count=1 -p 1 -timeout " + testTimeout(a.Replicas) + " ./...",
		TestTimeout:         testTimeout(a.Replicas),
		LBConfig:            lbConfigPath(a.LB),
		Require:             lock.Require,
		Bucket:              bucket(a.Name),
	}
}

// stopGraceSeconds is how long an instance may take to stop after SIGTERM:
// more than SHUTDOWN_DRAIN_DELAY (5s) plus SHUTDOWN_TIMEOUT (20s) for the
// HTTP drain, plus SHUTDOWN_TIMEOUT again for the worker's jobs, which stop
// after it.
func stopGraceSeconds(a Answers) int {
	if a.Has("worker") {
		return 50
	}
	return 30
}

// k8sPreStopSeconds: endpoint removal usually reaches kube-proxy and the
// ingress controllers within a few seconds; 5 more seconds of serving
// while still ready, on top of the app's own SHUTDOWN_DRAIN_DELAY, covers a
// busy control plane.
const k8sPreStopSeconds = 5

// k8sStopSlackSeconds is what K8sMinReadySeconds adds to the grace period:
// the kubelet kills a pod at the end of its grace period (2 s later when a
// preStop hook ran over it), and the API server removes it after that.
const k8sStopSlackSeconds = 10

// k8sMaxReplicas is the HorizontalPodAutoscaler's maxReplicas: twice the
// answered replicas, which are its minimum.
func k8sMaxReplicas(replicas int) int {
	return 2 * replicas
}

// testTimeout bounds `make test`: the cluster tests start every instance
// for each test, and a rolling restart takes about 17s per instance, so
// 20 instances need well over the 30 minutes that 3 take about 6 of.
func testTimeout(replicas int) string {
	if replicas > 5 {
		return "60m"
	}
	return "30m"
}

func bucket(name string) string {
	if len(name) < 3 {
		return name + "-files"
	}
	return name
}

func instances(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("app-%d", i+1)
	}
	return names
}

// Generate returns the files of the project described by a, keyed by
// slash-separated path. The same answers always give the same bytes.
func Generate(a Answers) (map[string][]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	lock, err := LockFor(a.Features)
	if err != nil {
		return nil, err
	}
	return GenerateWithLock(a, lock)
}

// GenerateWithLock is Generate with the go.mod requirements and go.sum given
// rather than taken from generator/deps; `make deps` uses it with an empty
// Lock to make the project it then tidies.
func GenerateWithLock(a Answers, lock Lock) (map[string][]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	data := newData(a, lock)
	on := map[string]bool{"": true, "lb=" + a.LB: true}
	for _, f := range a.Features {
		on[f] = true
	}
	included := func(outPath string) (bool, error) {
		owner, with, err := Owner(outPath)
		if err != nil {
			return false, err
		}
		return on[owner] && (with == "" || slices.ContainsFunc(strings.Split(with, "|"), func(w string) bool { return on[w] })), nil
	}
	// Fragments are gathered first: they are not files of their own but
	// parts of the file they are fragments of, and only those of the
	// features that are on are parsed, so that including one of a feature
	// that is off is an error.
	var outputs [][2]string
	fragments := map[string][]string{} // parent output path -> fragment template paths
	err := walkTemplates(func(tmplPath, outPath string) error {
		ok, err := included(outPath)
		if err != nil || !ok {
			return err
		}
		if parent, isFragment := FragmentOf(outPath); isFragment {
			fragments[parent] = append(fragments[parent], tmplPath)
		} else {
			outputs = append(outputs, [2]string{tmplPath, outPath})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, o := range outputs {
		tmplPath, outPath := o[0], o[1]
		if _, dup := files[outPath]; dup {
			return nil, fmt.Errorf("templates/%s and another template both make %s (keep one)", tmplPath, outPath)
		}
		content, err := render(tmplPath, outPath, data, fragments[outPath])
		if err != nil {
			return nil, err
		}
		files[outPath] = content
		delete(fragments, outPath)
	}
	for _, parent := range slices.Sorted(maps.Keys(fragments)) {
		return nil, fmt.Errorf("templates/%s: a fragment of %s, which is not a file of this project", fragments[parent][0], parent)
	}
	files[AnswersFileName] = a.MarshalFile()
	if len(bytes.TrimSpace(lock.Sum)) > 0 {
		files["go.sum"] = lock.Sum
	}
	return files, nil
}

// walkTemplates calls fn for every file of the template tree, in lexical
// order, with its path in the tree and the output path it makes.
func walkTemplates(fn func(tmplPath, outPath string) error) error {
	return fs.WalkDir(templates.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || p == templates.Self {
			return nil
		}
		return fn(p, strings.TrimSuffix(p, ".tmpl"))
	})
}

// FragmentOf reports whether output path p is a template fragment rather
// than a file: a template in a directory named after a shared file plus
// ".d" (templates/README.md.d/db.md.tmpl) is parsed along with that file's
// template (templates/README.md.tmpl), which includes it by name
// ({{template "db.md" .}}, or the names it defines). Fragments let a
// feature own its part of a shared file; they are never written.
func FragmentOf(p string) (parent string, ok bool) {
	dir := path.Dir(p)
	if !strings.HasSuffix(dir, ".d") {
		return "", false
	}
	return strings.TrimSuffix(dir, ".d"), true
}

// TemplatePaths lists the template tree (paths within templates/) in order.
func TemplatePaths() ([]string, error) {
	var paths []string
	err := walkTemplates(func(tmplPath, _ string) error {
		paths = append(paths, tmplPath)
		return nil
	})
	return paths, err
}

func render(tmplPath, outPath string, data Data, fragments []string) ([]byte, error) {
	src, err := fs.ReadFile(templates.FS, tmplPath)
	if err != nil {
		return nil, err
	}
	out := src
	if len(fragments) > 0 && !strings.HasSuffix(tmplPath, ".tmpl") {
		return nil, fmt.Errorf("templates/%s has fragments (%s) but is not a template (name it %s.tmpl)", tmplPath, fragments[0], tmplPath)
	}
	if strings.HasSuffix(tmplPath, ".tmpl") {
		t, err := template.New(tmplPath).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("template %s: %v (fix the template)", tmplPath, oneLine(err.Error()))
		}
		for _, f := range fragments {
			if !strings.HasSuffix(f, ".tmpl") {
				return nil, fmt.Errorf("templates/%s: a fragment must end in .tmpl", f)
			}
			src, err := fs.ReadFile(templates.FS, f)
			if err != nil {
				return nil, err
			}
			// Parsed on its own first, to check the names it defines: each
			// starts with the fragment's own (db.md defines db.api, db.config
			// ...), so that two fragments cannot define one name, which
			// text/template would let the later one replace.
			name := path.Base(strings.TrimSuffix(f, ".tmpl"))
			ft, err := template.New(name).Parse(string(src))
			if err != nil {
				return nil, fmt.Errorf("template %s: %v (fix the template)", f, oneLine(err.Error()))
			}
			prefix, _, _ := strings.Cut(name, ".")
			for _, def := range ft.Templates() {
				if def.Name() != name && !strings.HasPrefix(def.Name(), prefix+".") || t.Lookup(def.Name()) != nil {
					return nil, fmt.Errorf("template %s defines %q: a fragment's names start with %q and are its own", f, def.Name(), prefix+".")
				}
				if _, err := t.AddParseTree(def.Name(), def.Tree); err != nil {
					return nil, fmt.Errorf("template %s: %v", f, err)
				}
			}
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return nil, fmt.Errorf("template %s: %v (fix the template)", tmplPath, oneLine(err.Error()))
		}
		out = buf.Bytes()
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, fmt.Errorf("template %s makes an empty %s (give the file to a feature in the manifest instead of emptying it)", tmplPath, outPath)
	}
	switch {
	case strings.HasSuffix(outPath, ".go"):
		formatted, err := formatGo(out)
		if err != nil {
			return nil, fmt.Errorf("template %s makes invalid Go: %v (fix the template)", tmplPath, oneLine(err.Error()))
		}
		out = formatted
	case path.Base(outPath) == "go.mod":
		// Format like the go command does, so `go mod tidy` finds nothing to change.
		f, err := modfile.Parse(outPath, out, nil)
		if err != nil {
			return nil, fmt.Errorf("template %s makes an invalid go.mod: %v (fix the template)", tmplPath, oneLine(err.Error()))
		}
		out, err = f.Format()
		if err != nil {
			return nil, fmt.Errorf("template %s: formatting go.mod: %v", tmplPath, err)
		}
	}
	return out, nil
}

// Entries are the manifest entries: the base first, then the features.
func Entries() []Feature {
	return append([]Feature{Base}, Features...)
}

// Owner returns the name of the manifest entry that owns output path p (""
// for the base) and, for a file listed in the entry's With, the other
// feature or answer that must be on as well. It is an error for p to have
// no owner or several.
func Owner(p string) (owner, with string, err error) {
	var owners []string
	for _, e := range Entries() {
		if ok, w := e.Owns(p); ok {
			owners = append(owners, e.label())
			owner, with = e.Name, w
		}
	}
	switch len(owners) {
	case 1:
		return owner, with, nil
	case 0:
		return "", "", fmt.Errorf("no manifest entry owns %s (add it to the Files of base or a feature in generator/manifest.go)", p)
	default:
		return "", "", fmt.Errorf("%s is owned by %s (keep it in one manifest entry in generator/manifest.go)", p, strings.Join(owners, " and "))
	}
}

// Owns reports whether one of the entry's Files or With patterns matches
// output path p, and for a With pattern, its condition.
func (f Feature) Owns(p string) (bool, string) {
	for _, pat := range f.Files {
		if matchFile(pat, p) {
			return true, ""
		}
	}
	for _, cond := range slices.Sorted(maps.Keys(f.With)) {
		for _, pat := range f.With[cond] {
			if matchFile(pat, p) {
				return true, cond
			}
		}
	}
	return false, ""
}

// Patterns are all the entry's file patterns, With included.
func (f Feature) Patterns() []string {
	pats := slices.Clone(f.Files)
	for _, cond := range slices.Sorted(maps.Keys(f.With)) {
		pats = append(pats, f.With[cond]...)
	}
	return pats
}

func (f Feature) label() string {
	if f.Name == "" {
		return "base"
	}
	return f.Name
}

// matchFile matches an output path against a Files pattern: a directory
// ("internal/db/") owns everything under it; anything else is a path.Match
// pattern, which an exact path is too.
func matchFile(pattern, p string) bool {
	if strings.HasSuffix(pattern, "/") {
		return strings.HasPrefix(p, pattern)
	}
	ok, _ := path.Match(pattern, p)
	return ok
}

// FileMode is the permission a generated file gets on disk. The embedded
// template tree keeps no modes, so scripts are recognised by name.
func FileMode(p string) fs.FileMode {
	switch {
	case strings.HasSuffix(p, ".sh"):
		return 0o755
	case path.Base(p) == ".env":
		return 0o600 // random passwords: for the owner only
	}
	return 0o644
}

// formatted holds the gofmt output of every Go source this process has
// formatted, by the sha256 of the source. Most files come out of their
// templates the same in many feature combinations, and formatting is most
// of the time Generate takes: the tests that generate every combination
// took minutes without it.
var formatted sync.Map // [sha256.Size]byte -> []byte

// formatGo is format.Source, remembered; each call gets its own copy.
func formatGo(src []byte) ([]byte, error) {
	key := sha256.Sum256(src)
	if out, ok := formatted.Load(key); ok {
		return bytes.Clone(out.([]byte)), nil
	}
	out, err := format.Source(src)
	if err != nil {
		return nil, err
	}
	formatted.Store(key, bytes.Clone(out))
	return out, nil
}
