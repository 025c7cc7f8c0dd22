package k8scheck

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scaffoldhq/scaffold/generator"
)

// envClusterTests are the project's cluster tests run with the pods'
// environment: round robin, the shared cache, shared blobs, leader election
// and the rolling restart.
var envClusterTests = []string{"TestRoundRobin", "TestSharedCache", "TestSharedBlobs", "TestOneLeader", "TestRollingRestart"}

// TestManifestEnvCluster runs the app binaries as local processes with the
// environment the dev overlay's manifests give each pod, behind the load
// balancer the Ingress implies, and runs a subset of the project's own
// cluster tests against them (clustertest/appenv_test.go reads the file
// written here). The Ingress names no class, so it goes to the cluster's
// default controller, which in most clusters is nginx-based (ingress-nginx):
// all-nginx puts nginx in front, with the project's deploy/nginx.conf
// rendered for the pods. ingress-nginx itself is not run, nor is any other
// part of Kubernetes: what is proven is that the pods' environment, as
// Kubernetes computes it from the rendered manifests, makes a working
// cluster. reference-app (haproxy in front) runs too, for its manifests.
func TestManifestEnvCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts the cluster several times")
	}
	tools := installed(t)
	for _, tree := range []struct{ name, dir string }{
		{"reference-app", referenceApp},
		{"all-nginx", "../../testdata/golden/all-nginx/tree"},
	} {
		t.Run(tree.name, func(t *testing.T) {
			// A copy: the tests write nothing into the repository, and
			// secrets.env (never committed) is made in it.
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(tree.dir)); err != nil {
				t.Fatal(err)
			}
			writeSecrets(t, dir)
			envFile := filepath.Join(t.TempDir(), "env.json")
			app := answersOf(t, dir).Name
			pods := writePodEnv(t, tools, dir, app, envFile)

			began := time.Now()
			out, err := clusterTests(dir, envFile, envClusterTests)
			if err != nil {
				t.Fatalf("the cluster tests failed with the pods' environment: %v\n%s", err, lastBytes(out, 30000))
			}
			for _, name := range envClusterTests {
				if strings.Contains(out, "--- SKIP: "+name) {
					msg := name + " skipped (a server is not installed: sh reference-app/scripts/install-servers.sh)\n" + lastBytes(out, 3000)
					if os.Getenv("CI") != "" {
						t.Fatal(msg + " (CI is set: not skipped)")
					}
					t.Skip(msg)
				}
				if !strings.Contains(out, "--- PASS: "+name+" ") {
					t.Fatalf("%s did not pass (renamed? run at all?):\n%s", name, lastBytes(out, 30000))
				}
			}
			// startCluster names its instances: they must be the pods, or
			// the file was not read.
			for _, pod := range pods {
				if !strings.Contains(out, pod) {
					t.Fatalf("pod %s is not in the cluster tests' output: was %s read?\n%s", pod, envFile, lastBytes(out, 30000))
				}
			}
			t.Logf("%s passed with the environment of pods %s in %v", strings.Join(envClusterTests, ", "), strings.Join(pods, " "), time.Since(began).Round(time.Second))

			if tree.name != "reference-app" {
				return // the harness is the same code in both trees
			}
			// The harness must refuse what it cannot map, so that a pod
			// pointing at a Service the test does not provide never passes
			// by reaching something else: a DATABASE_URL at db:5432, and a
			// setting naming the app's own Service.
			for _, bad := range []struct{ name, old, new, want string }{
				{"DATABASE_URL at db:5432", "@postgres:5432/", "@db:5432/", `DATABASE_URL: host "db:5432": the test maps postgres:5432 only`},
				{"a setting naming the app's Service", "\nREDIS_PASSWORD=", "\nUPSTREAM_URL=http://shop:80/\nREDIS_PASSWORD=", `UPSTREAM_URL="http://shop:80/" still names the service shop`},
			} {
				t.Run(bad.name, func(t *testing.T) {
					k8s := filepath.Join(t.TempDir(), "deploy", "k8s")
					if err := os.CopyFS(k8s, os.DirFS(filepath.Join(dir, "deploy", "k8s"))); err != nil {
						t.Fatal(err)
					}
					secrets := filepath.Join(k8s, "overlays", "dev", "secrets.env")
					b, err := os.ReadFile(secrets)
					if err != nil {
						t.Fatal(err)
					}
					if !strings.Contains(string(b), bad.old) {
						t.Fatalf("secrets.env has no %q to change", bad.old)
					}
					if err := os.WriteFile(secrets, []byte(strings.Replace(string(b), bad.old, bad.new, 1)), 0o644); err != nil {
						t.Fatal(err)
					}
					badEnv := filepath.Join(t.TempDir(), "env.json")
					writePodEnv(t, tools, filepath.Dir(filepath.Dir(k8s)), app, badEnv)
					out, err := clusterTests(dir, badEnv, []string{"TestRoundRobin"})
					if err == nil {
						t.Fatalf("the cluster test passed with %s:\n%s", bad.name, lastBytes(out, 3000))
					}
					if !strings.Contains(out, bad.want) {
						t.Fatalf("the cluster test failed, but not with %q:\n%s", bad.want, lastBytes(out, 30000))
					}
				})
			}
		})
	}
}

// writeSecrets writes the files with random content scaffold new makes
// with the project (the dev overlay's secrets.env among them) into dir.
func writeSecrets(t *testing.T, dir string) {
	t.Helper()
	secrets, err := generator.Secrets(answersOf(t, dir), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, dir, secrets)
}

func answersOf(t *testing.T, dir string) generator.Answers {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, generator.AnswersFileName))
	if err != nil {
		t.Fatal(err)
	}
	fa, err := generator.ParseFile(generator.AnswersFileName, data)
	if err != nil {
		t.Fatal(err)
	}
	return fa.Answers
}

// appEnvFile is what clustertest/appenv_test.go reads.
type appEnvFile struct {
	Services  []string      `json:"services"`
	Instances []appInstance `json:"instances"`
}

type appInstance struct {
	Name string            `json:"name"`
	Env  map[string]string `json:"env"`
}

// writePodEnv renders the dev overlay under dir (a project, or a copy of
// its deploy/k8s) with kustomize, writes the environment of each of the
// spec.replicas pods of the Deployment app to path, and returns the pods'
// names.
func writePodEnv(t *testing.T, tools Tools, dir, app, path string) []string {
	t.Helper()
	objs := parseObjects(t, kustomize(t, tools, filepath.Join(dir, "deploy", "k8s", "overlays", "dev")))
	f, err := podEnvFile(objs, app)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var pods []string
	for _, in := range f.Instances {
		pods = append(pods, in.Name)
	}
	return pods
}

// podEnvFile is the file for the Deployment named app in objs (kustomize's
// output): its spec.replicas pods, each named as the Deployment controller
// names them, and every Service's name.
func podEnvFile(objs []object, app string) (appEnvFile, error) {
	var f appEnvFile
	var deploy object
	for _, o := range objs {
		switch kind, name := str(o, "kind"), str(o, "metadata", "name"); {
		case kind == "Service":
			f.Services = append(f.Services, name)
		case kind == "Deployment" && name == app:
			deploy = o
		}
	}
	if deploy == nil {
		return f, fmt.Errorf("no Deployment %s", app)
	}
	replicas := 1 // the API's default
	if r, ok := get(deploy, "spec", "replicas").(int); ok {
		replicas = r
	}
	for _, pod := range podNames(deploy, replicas) {
		env, err := podEnv(objs, deploy, pod)
		if err != nil {
			return f, fmt.Errorf("Deployment %s: %w", app, err)
		}
		f.Instances = append(f.Instances, appInstance{Name: pod, Env: env})
	}
	return f, nil
}

// podNames are names as the Deployment controller gives its pods:
// DEPLOYMENT-<hash of the pod template>-<5 random characters>, from the
// alphabet Kubernetes uses for them (no vowels, no 0, 1, 3). Made from a
// hash here, so a run's names are the same every time.
func podNames(deploy object, n int) []string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	encode := func(seed string, length int) string {
		h := fnv.New64a()
		h.Write([]byte(seed))
		v := h.Sum64()
		var b strings.Builder
		for range length {
			b.WriteByte(alphabet[v%uint64(len(alphabet))])
			v /= uint64(len(alphabet))
		}
		return b.String()
	}
	tmpl, _ := json.Marshal(get(deploy, "spec", "template"))
	hash := encode(string(tmpl), 10)
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("%s-%s-%s", str(deploy, "metadata", "name"), hash, encode(fmt.Sprint(hash, i), 5)))
	}
	return names
}

// podEnv is the environment Kubernetes gives the container of one pod of
// deploy, named pod: each envFrom source in order (a ConfigMap's data, a
// Secret's data base64-decoded), then env, a later value winning over an
// earlier one of the same name. What this does not model is an error, never
// skipped: a field it does not know would change the environment.
func podEnv(objs []object, deploy object, pod string) (map[string]string, error) {
	containers := asList(get(deploy, "spec", "template", "spec", "containers"))
	if len(containers) != 1 {
		return nil, fmt.Errorf("%d containers, want 1 (the app)", len(containers))
	}
	c := containers[0]
	data := func(kind, name string) (map[string]string, error) {
		for _, o := range objs {
			if str(o, "kind") != kind || str(o, "metadata", "name") != name {
				continue
			}
			out := map[string]string{}
			for k, v := range asMap(get(o, "data")) {
				s, _ := v.(string)
				if kind == "Secret" {
					b, err := base64.StdEncoding.DecodeString(s)
					if err != nil {
						return nil, fmt.Errorf("Secret %s: %s: %v", name, k, err)
					}
					s = string(b)
				}
				out[k] = s
			}
			// stringData is written over data when the Secret is stored.
			for k, v := range asMap(get(o, "stringData")) {
				out[k], _ = v.(string)
			}
			return out, nil
		}
		return nil, fmt.Errorf("%s %s is not in the manifests", kind, name)
	}
	env := map[string]string{}
	for _, from := range asList(get(c, "envFrom")) {
		var vars map[string]string
		var err error
		switch {
		case str(from, "configMapRef", "name") != "":
			vars, err = data("ConfigMap", str(from, "configMapRef", "name"))
		case str(from, "secretRef", "name") != "":
			vars, err = data("Secret", str(from, "secretRef", "name"))
		default:
			return nil, fmt.Errorf("envFrom %v: neither configMapRef nor secretRef", from)
		}
		if err != nil {
			return nil, err
		}
		for k, v := range vars {
			env[str(from, "prefix")+k] = v
		}
	}
	for _, e := range asList(get(c, "env")) {
		name, value := str(e, "name"), str(e, "value")
		from := asMap(get(e, "valueFrom"))
		switch {
		case from == nil:
			// Kubernetes expands $(VAR) in a value; not modelled here.
			if strings.Contains(value, "$(") {
				return nil, fmt.Errorf("env %s=%q: $(VAR) expansion is not modelled by this test", name, value)
			}
		case len(from) == 1 && from["fieldRef"] != nil:
			if p := str(from, "fieldRef", "fieldPath"); p != "metadata.name" {
				return nil, fmt.Errorf("env %s: fieldRef %s is not modelled by this test (only metadata.name)", name, p)
			}
			value = pod
		case len(from) == 1 && (from["configMapKeyRef"] != nil || from["secretKeyRef"] != nil):
			kind, ref := "ConfigMap", "configMapKeyRef"
			if from["secretKeyRef"] != nil {
				kind, ref = "Secret", "secretKeyRef"
			}
			vars, err := data(kind, str(from, ref, "name"))
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", name, err)
			}
			v, ok := vars[str(from, ref, "key")]
			if !ok {
				return nil, fmt.Errorf("env %s: %s %s has no key %s", name, kind, str(from, ref, "name"), str(from, ref, "key"))
			}
			value = v
		default:
			return nil, fmt.Errorf("env %s: valueFrom %v is not modelled by this test", name, from)
		}
		env[name] = value
	}
	return env, nil
}

func asMap(o any) map[string]any {
	m, _ := o.(map[string]any)
	return m
}

// clusterTests runs the named cluster tests of the project in dir with
// CLUSTERTEST_APP_ENV=envFile, one package at a time as make test does, and
// returns their -v output.
func clusterTests(dir, envFile string, tests []string) (string, error) {
	cmd := exec.Command("go", "test", "-count=1", "-p", "1", "-v", "-timeout", "15m",
		"-run", "^("+strings.Join(tests, "|")+")$", "./clustertest")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CLUSTERTEST_APP_ENV="+envFile)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// lastBytes is the end of s: what a failure shows of a long output.
func lastBytes(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// TestPodEnv checks podEnv on a small Deployment of its own: the order
// Kubernetes gives the sources, the Secret's base64, the pod name, and that
// what it does not model fails rather than being left out.
func TestPodEnv(t *testing.T) {
	objs := parseObjects(t, []byte(`
kind: ConfigMap
metadata: {name: cfg}
data: {A: from-configmap, B: from-configmap, C: from-configmap}
---
kind: Secret
metadata: {name: sec}
data: {B: ZnJvbS1zZWNyZXQ=, C: ZnJvbS1zZWNyZXQ=}
---
kind: Deployment
metadata: {name: shop}
spec:
  template:
    spec:
      containers:
        - name: app
          env:
            - {name: C, value: from-env}
            - name: INSTANCE_ID
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: D
              valueFrom: {secretKeyRef: {name: sec, key: B}}
          envFrom:
            - configMapRef: {name: cfg}
            - secretRef: {name: sec}
`))
	deploy := objs[2]
	env, err := podEnv(objs, deploy, "shop-abc-x")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "from-configmap", "B": "from-secret", "C": "from-env", "D": "from-secret", "INSTANCE_ID": "shop-abc-x"}
	if fmt.Sprint(env) != fmt.Sprint(want) {
		t.Errorf("env %v, want %v", env, want)
	}
	if names := podNames(deploy, 3); len(names) != 3 || names[0] == names[1] || !strings.HasPrefix(names[0], "shop-") {
		t.Errorf("pod names %v: want 3 different shop-HASH-XXXXX", names)
	}

	container := asList(get(deploy, "spec", "template", "spec", "containers"))[0].(map[string]any)
	for _, bad := range []any{
		map[string]any{"name": "X", "valueFrom": map[string]any{"resourceFieldRef": map[string]any{"resource": "limits.cpu"}}},
		map[string]any{"name": "X", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "status.podIP"}}},
		map[string]any{"name": "X", "value": "$(A)/x"},
		map[string]any{"name": "X", "valueFrom": map[string]any{"configMapKeyRef": map[string]any{"name": "cfg", "key": "missing"}}},
	} {
		container["env"] = []any{bad}
		if _, err := podEnv(objs, deploy, "p"); err == nil {
			t.Errorf("podEnv accepted env %v", bad)
		}
	}
}
