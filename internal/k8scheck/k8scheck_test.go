package k8scheck

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/scaffoldhq/scaffold/generator"
)

// -update has nothing to rewrite here; it is defined so that
// `go test ./... -update` (which rewrites the golden trees) runs.
var _ = flag.Bool("update", false, "ignored")

const referenceApp = "../../reference-app"

var overlays = []string{"dev", "prod"}

// installed returns the tools, or skips the test when they are missing (fails
// it when CI is set: a CI run must not pass by skipping).
func installed(t *testing.T) Tools {
	t.Helper()
	tools, err := Paths()
	if err != nil {
		t.Fatal(err)
	}
	if missing := tools.Missing(); len(missing) > 0 {
		msg := fmt.Sprintf("not installed: %s (run `go run ./internal/k8scheck/install`, as make test does)", strings.Join(missing, ", "))
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (CI is set: not skipped)")
		}
		t.Skip(msg)
	}
	return tools
}

// TestManifests renders every overlay of reference-app and of every feature
// combination with k8s (with 1 replica and with 3, on two ports), and
// validates what kustomize makes with kubeconform, strictly, then checks
// what a schema cannot: that the selectors select the app's pods and that
// every ConfigMap and Secret a pod names is there.
func TestManifests(t *testing.T) {
	tools := installed(t)
	eachProject(t, func(t *testing.T, dir string, a generator.Answers) {
		checkOverlays(t, tools, dir, a)
	})
}

// eachProject runs check, in parallel subtests, on a copy of reference-app's
// deploy/k8s and on each project of k8sProjects, generated into a
// temporary directory with the secrets.env scaffold new writes.
func eachProject(t *testing.T, check func(t *testing.T, dir string, a generator.Answers)) {
	t.Run("reference-app", func(t *testing.T) {
		t.Parallel()
		dir, a := referenceManifests(t)
		check(t, dir, a)
	})
	projects, err := k8sProjects()
	if err != nil {
		t.Fatal(err)
	}
	if len(projects) == 0 {
		t.Fatal("no feature combination has k8s")
	}
	for _, p := range projects {
		t.Run(fmt.Sprintf("%s/replicas=%d", strings.Join(p.answers.Features, "+"), p.answers.Replicas), func(t *testing.T) {
			t.Parallel()
			secrets, err := generator.Secrets(p.answers, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writeTree(t, dir, p.files)
			writeTree(t, dir, secrets)
			check(t, dir, p.answers)
		})
	}
}

type k8sProject struct {
	answers generator.Answers
	files   map[string][]byte
}

// k8sProjects are the feature combinations with k8s, each with 1 replica
// and with 3, on two ports, but only those whose deploy/k8s differs from
// one before: features that change no manifest (lock, say) make the same
// objects as a combination already in the list, so the same results.
func k8sProjects() ([]k8sProject, error) {
	var out []k8sProject
	seen := map[[sha256.Size]byte]bool{}
	for i, combo := range generator.Combinations() {
		if !slices.Contains(combo, "k8s") {
			continue
		}
		for _, replicas := range []int{1, 3} {
			a := generator.Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo,
				LB: generator.LBs[i%len(generator.LBs)], Replicas: replicas, Port: []int{generator.DefaultPort, 9090}[i%2]}
			files, err := generator.Generate(a)
			if err != nil {
				return nil, fmt.Errorf("%v: %w", combo, err)
			}
			if sum := manifestsSum(files); !seen[sum] {
				seen[sum] = true
				out = append(out, k8sProject{a, files})
			}
		}
	}
	return out, nil
}

// TestReadmeK8sNumbers checks the numbers of projects and overlays the
// repository README states for these tests.
func TestReadmeK8sNumbers(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Join(strings.Fields(string(b)), " ")
	projects, err := k8sProjects()
	if err != nil {
		t.Fatal(err)
	}
	n := len(projects) + 1 // and reference-app
	want := fmt.Sprintf("applies %d overlays (%d projects,", n*len(overlays), n)
	if !strings.Contains(readme, want) {
		t.Errorf("README.md: no %q; write the numbers k8sProjects gives", want)
	}
}

// manifestsSum is a hash of the files under deploy/k8s/, names and
// contents, in order.
func manifestsSum(files map[string][]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if strings.HasPrefix(p, "deploy/k8s/") {
			fmt.Fprintf(h, "%s\x00%d\x00", p, len(files[p]))
			h.Write(files[p])
		}
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// referenceManifests copies reference-app's deploy/k8s into a temporary
// directory, with the secrets.env scaffold new would write, and returns the
// directory and reference-app's answers.
func referenceManifests(t *testing.T) (string, generator.Answers) {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "deploy", "k8s"), os.DirFS(filepath.Join(referenceApp, "deploy", "k8s"))); err != nil {
		t.Fatal(err)
	}
	a := answersOf(t, referenceApp)
	// secrets.env is made with the project, never committed: make it
	// as scaffold new does.
	secrets, err := generator.Secrets(a, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, dir, secrets)
	return dir, a
}

func checkOverlays(t *testing.T, tools Tools, dir string, a generator.Answers) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			out := kustomize(t, tools, filepath.Join(dir, "deploy", "k8s", "overlays", overlay))
			results, err := kubeconform(tools, out)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if r.Status != "statusValid" {
					t.Errorf("kubeconform: %s %s: %s %s", r.Kind, r.Name, r.Status, r.Msg)
				}
			}
			checkObjects(t, parseObjects(t, out), a, overlay)
		})
	}
}

// kustomize runs `kustomize build DIR` and returns the YAML it prints.
func kustomize(t *testing.T, tools Tools, dir string) []byte {
	t.Helper()
	cmd := exec.Command(tools.Kustomize, "build", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr.Bytes())
	}
	return out
}

type result struct {
	Filename, Kind, Name, Version, Status, Msg string
}

// kubeconform validates manifests strictly against the converted schemas
// and returns one result per object. A kind with no schema (a removed API
// version) is an error, not skipped.
func kubeconform(tools Tools, manifests []byte) ([]result, error) {
	cmd := exec.Command(tools.Kubeconform, "-strict", "-verbose", "-output", "json",
		"-schema-location", SchemaLocation(tools.Schemas))
	cmd.Stdin = bytes.NewReader(manifests)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return nil, fmt.Errorf("kubeconform: %w", err)
	}
	var report struct{ Resources []result }
	if jsonErr := json.Unmarshal(out, &report); jsonErr != nil {
		return nil, fmt.Errorf("kubeconform: reading its report: %v (exit: %v)\n%s\n%s", jsonErr, err, out, stderr.Bytes())
	}
	if len(report.Resources) == 0 {
		return nil, fmt.Errorf("kubeconform reported no resource (exit: %v)\n%s\n%s", err, out, stderr.Bytes())
	}
	invalid := slices.ContainsFunc(report.Resources, func(r result) bool { return r.Status != "statusValid" })
	if (err != nil) != invalid {
		return nil, fmt.Errorf("kubeconform exited with %v but reported invalid=%v:\n%s\n%s", err, invalid, out, stderr.Bytes())
	}
	return report.Resources, nil
}

type object = map[string]any

func parseObjects(t *testing.T, manifests []byte) []object {
	t.Helper()
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(manifests))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("kustomize output: %v", err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
}

// get follows keys through nested maps; nil when a step is missing.
func get(o any, keys ...string) any {
	for _, k := range keys {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[k]
	}
	return o
}

func str(o any, keys ...string) string {
	s, _ := get(o, keys...).(string)
	return s
}

// selects reports whether every label of selector is in labels (and the
// selector is not empty: an empty one would select every pod).
func selects(selector, labels any) bool {
	sel, _ := selector.(map[string]any)
	have, _ := labels.(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if have[k] != v {
			return false
		}
	}
	return true
}

// checkObjects checks what kubeconform cannot: the objects each overlay must
// have, that the selectors select the app's pods, and that every ConfigMap
// and Secret the pods read is in the output (in prod, the Secret
// NAME-secrets is made outside kustomize, as the README says).
func checkObjects(t *testing.T, objs []object, a generator.Answers, overlay string) {
	t.Helper()
	byKind := map[string][]object{}
	names := map[string]bool{} // kind/name
	for _, o := range objs {
		kind := str(o, "kind")
		byKind[kind] = append(byKind[kind], o)
		names[kind+"/"+str(o, "metadata", "name")] = true
	}
	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "Ingress", "ConfigMap"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("no %s", kind)
		}
	}
	var app object
	for _, d := range byKind["Deployment"] {
		if str(d, "metadata", "name") == a.Name {
			app = d
		}
	}
	if app == nil {
		t.Fatalf("no Deployment %s", a.Name)
	}
	podLabels := get(app, "spec", "template", "metadata", "labels")
	// One stopping pod at most during a rollout (TestServerRollout shows
	// why): the next old pod is stopped only after the last one is gone.
	minReady, _ := get(app, "spec", "minReadySeconds").(int)
	grace, _ := get(app, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)
	if grace == 0 || minReady <= grace {
		t.Errorf("the Deployment's minReadySeconds (%d) is not longer than its pods' terminationGracePeriodSeconds (%d)", minReady, grace)
	}
	if !selects(get(app, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("the Deployment's selector does not select its own pods")
	}
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for _, o := range byKind[kind] {
			if !selects(get(o, "spec", "selector", "matchLabels"), get(o, "spec", "template", "metadata", "labels")) {
				t.Errorf("%s %s: the selector does not select its own pods", kind, str(o, "metadata", "name"))
			}
		}
	}
	for _, check := range []struct {
		kind string
		path []string
	}{
		{"Service", []string{"spec", "selector"}},
		{"PodDisruptionBudget", []string{"spec", "selector", "matchLabels"}},
		{"NetworkPolicy", []string{"spec", "podSelector", "matchLabels"}},
	} {
		for _, o := range byKind[check.kind] {
			if str(o, "metadata", "name") == a.Name && !selects(get(o, check.path...), podLabels) {
				t.Errorf("%s %s does not select the app's pods", check.kind, a.Name)
			}
		}
	}
	for _, h := range byKind["HorizontalPodAutoscaler"] {
		if ref := str(h, "spec", "scaleTargetRef", "name"); str(h, "spec", "scaleTargetRef", "kind") != "Deployment" || ref != a.Name {
			t.Errorf("HorizontalPodAutoscaler scales %s, want Deployment %s", ref, a.Name)
		}
	}
	for _, ing := range byKind["Ingress"] {
		for _, rule := range asList(get(ing, "spec", "rules")) {
			for _, p := range asList(get(rule, "http", "paths")) {
				if svc := str(p, "backend", "service", "name"); !names["Service/"+svc] {
					t.Errorf("the Ingress sends traffic to Service %s, which is not there", svc)
				}
			}
		}
	}
	// Every ConfigMap and Secret a pod reads, by envFrom or by one key.
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for _, o := range byKind[kind] {
			for _, c := range asList(get(o, "spec", "template", "spec", "containers")) {
				var refs []string
				for _, from := range asList(get(c, "envFrom")) {
					if n := str(from, "configMapRef", "name"); n != "" {
						refs = append(refs, "ConfigMap/"+n)
					}
					if n := str(from, "secretRef", "name"); n != "" {
						refs = append(refs, "Secret/"+n)
					}
				}
				for _, e := range asList(get(c, "env")) {
					if n := str(e, "valueFrom", "secretKeyRef", "name"); n != "" {
						refs = append(refs, "Secret/"+n)
					}
				}
				for _, ref := range refs {
					external := overlay == "prod" && ref == "Secret/"+a.Name+"-secrets"
					if !names[ref] && !external {
						t.Errorf("%s %s reads %s, which is not in the output", kind, str(o, "metadata", "name"), ref)
					}
				}
			}
		}
	}
}

func asList(o any) []any {
	l, _ := o.([]any)
	return l
}

// writeTree writes files (path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		target := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, b, fs.FileMode(0o644)); err != nil {
			t.Fatal(err)
		}
	}
}
