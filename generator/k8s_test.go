package generator

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The Kubernetes ConfigMap and Secret give the app the same settings as
// docker-compose.yml: both are rendered from AppSettings, and this checks the
// rendered files, so that a template writing a value of its own is caught.
// A compose value that interpolates .env (${...}) is a secret: on Kubernetes
// it is a key of the dev overlay's Secret and not in the ConfigMap; every
// other compose value is in the ConfigMap, the same; and the ConfigMap has
// nothing compose lacks.
func TestK8sSettingsMatchCompose(t *testing.T) {
	checked := 0
	for _, combo := range Combinations() {
		if !slices.Contains(combo, "compose") || !slices.Contains(combo, "k8s") {
			continue
		}
		for _, replicas := range []int{1, 3, MaxReplicas} {
			a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: "haproxy", Replicas: replicas, Port: 9090}
			t.Run(fmt.Sprintf("%s/replicas=%d", strings.Join(combo, "+"), replicas), func(t *testing.T) {
				files, err := Generate(a)
				if err != nil {
					t.Fatal(err)
				}
				composeEnv := composeAppEnv(t, files["docker-compose.yml"])
				configMap := k8sConfigMap(t, files["deploy/k8s/base/kustomization.yaml"])
				secretKeys := envFileKeys(files["deploy/k8s/overlays/dev/secrets.env.example"])
				if len(composeEnv) == 0 || len(configMap) == 0 {
					t.Fatalf("no settings found: compose %d, ConfigMap %d", len(composeEnv), len(configMap))
				}
				for name, value := range composeEnv {
					got, inConfigMap := configMap[name]
					switch {
					case strings.Contains(value, "${"):
						if inConfigMap {
							t.Errorf("%s is a secret in docker-compose.yml but in the ConfigMap as %q", name, got)
						}
						if !secretKeys[name] {
							t.Errorf("%s is a secret in docker-compose.yml but not a key of the dev overlay's secrets.env.example", name)
						}
					case !inConfigMap:
						t.Errorf("%s=%q is in docker-compose.yml but not in the ConfigMap", name, value)
					case got != value:
						t.Errorf("%s is %q in docker-compose.yml but %q in the ConfigMap", name, value, got)
					}
				}
				for name := range configMap {
					if _, ok := composeEnv[name]; !ok {
						t.Errorf("the ConfigMap has %s, which docker-compose.yml's x-app-env lacks", name)
					}
				}
				if configMap["CLUSTER_MODE"] != "true" {
					t.Errorf("CLUSTER_MODE is %q in the ConfigMap, want true", configMap["CLUSTER_MODE"])
				}
				checkK8sBudget(t, a, files, configMap)
				checked++
			})
		}
	}
	if checked == 0 {
		t.Fatal("no combination has both compose and k8s")
	}
}

// checkK8sBudget checks the numbers the manifests must agree on: the grace
// period covers the preStop sleep and the app's drain, and the dev overlay's
// PostgreSQL has connections for every pod the HPA and a rolling update can
// run at once.
func checkK8sBudget(t *testing.T, a Answers, files map[string][]byte, configMap map[string]string) {
	t.Helper()
	var deploy struct {
		Spec struct {
			Replicas int `yaml:"replicas"`
			Strategy struct {
				RollingUpdate struct {
					MaxSurge       int `yaml:"maxSurge"`
					MaxUnavailable int `yaml:"maxUnavailable"`
				} `yaml:"rollingUpdate"`
			} `yaml:"strategy"`
			Template struct {
				Spec struct {
					Grace      int `yaml:"terminationGracePeriodSeconds"`
					Containers []struct {
						Lifecycle struct {
							PreStop struct {
								Sleep struct {
									Seconds int `yaml:"seconds"`
								} `yaml:"sleep"`
							} `yaml:"preStop"`
						} `yaml:"lifecycle"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(files["deploy/k8s/base/deployment.yaml"], &deploy); err != nil {
		t.Fatalf("deployment.yaml: %v", err)
	}
	var hpa struct {
		Spec struct {
			Min int `yaml:"minReplicas"`
			Max int `yaml:"maxReplicas"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(files["deploy/k8s/base/hpa.yaml"], &hpa); err != nil {
		t.Fatalf("hpa.yaml: %v", err)
	}
	spec := deploy.Spec
	if spec.Replicas != a.Replicas || hpa.Spec.Min != a.Replicas || hpa.Spec.Max < a.Replicas {
		t.Errorf("replicas %d, HPA %d..%d: want the answer %d as both minimums", spec.Replicas, hpa.Spec.Min, hpa.Spec.Max, a.Replicas)
	}
	if ru := spec.Strategy.RollingUpdate; ru.MaxUnavailable != 0 || ru.MaxSurge < 1 {
		t.Errorf("rollingUpdate %+v: want maxUnavailable 0 and a surge", ru)
	}
	if len(spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want the app alone", len(spec.Template.Spec.Containers))
	}
	drain := mustDuration(t, configMap["SHUTDOWN_DRAIN_DELAY"]) + mustDuration(t, configMap["SHUTDOWN_TIMEOUT"])
	if a.Has("worker") {
		drain += mustDuration(t, configMap["SHUTDOWN_TIMEOUT"]) // the worker's jobs stop after the HTTP drain
	}
	preStop := time.Duration(spec.Template.Spec.Containers[0].Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if grace := time.Duration(spec.Template.Spec.Grace) * time.Second; preStop == 0 || grace <= preStop+drain {
		t.Errorf("terminationGracePeriodSeconds %v, preStop sleep %v: want a sleep, and a grace period over it plus the drain (%v)", grace, preStop, drain)
	}

	if !a.Has("db") {
		return
	}
	m := regexp.MustCompile(`max_connections=(\d+)`).FindSubmatch(files["deploy/k8s/overlays/dev/postgres.yaml"])
	if m == nil {
		t.Fatal("the dev overlay's postgres.yaml sets no max_connections")
	}
	maxConns, _ := strconv.Atoi(string(m[1]))
	pool, err := strconv.Atoi(configMap["DB_POOL_SIZE"])
	if err != nil {
		t.Fatalf("DB_POOL_SIZE: %v", err)
	}
	// The surge, and one pod stopping: minReadySeconds over the grace
	// period keeps it to one (internal/k8scheck's TestServerRollout).
	pods := hpa.Spec.Max + spec.Strategy.RollingUpdate.MaxSurge + 1
	// Each pod: its pool, the leader connection, 2 while migrating; then
	// the reserve of superuser slots (3) and people and tools.
	if need := pods*(pool+1+2) + 3; maxConns < need {
		t.Errorf("dev PostgreSQL max_connections=%d, but %d pods (HPA max %d + surge + 1 stopping) x (%d + 1 + 2) need %d", maxConns, pods, hpa.Spec.Max, pool, need)
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

// composeAppEnv is x-app-env of docker-compose.yml.
func composeAppEnv(t *testing.T, compose []byte) map[string]string {
	t.Helper()
	var doc struct {
		Env map[string]string `yaml:"x-app-env"`
	}
	if err := yaml.Unmarshal(compose, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return doc.Env
}

// k8sConfigMap is the literals of the base's configMapGenerator.
func k8sConfigMap(t *testing.T, kustomization []byte) map[string]string {
	t.Helper()
	var doc struct {
		Generators []struct {
			Name     string   `yaml:"name"`
			Literals []string `yaml:"literals"`
		} `yaml:"configMapGenerator"`
	}
	if err := yaml.Unmarshal(kustomization, &doc); err != nil {
		t.Fatalf("deploy/k8s/base/kustomization.yaml: %v", err)
	}
	if len(doc.Generators) != 1 {
		t.Fatalf("deploy/k8s/base/kustomization.yaml: %d ConfigMap generators, want 1", len(doc.Generators))
	}
	out := map[string]string{}
	for _, lit := range doc.Generators[0].Literals {
		name, value, ok := strings.Cut(lit, "=")
		if !ok {
			t.Errorf("ConfigMap literal %q has no =", lit)
		}
		if _, dup := out[name]; dup {
			t.Errorf("ConfigMap literal %s twice", name)
		}
		out[name] = value
	}
	return out
}

// envFileKeys are the names an env file (KEY=VALUE lines) sets.
func envFileKeys(b []byte) map[string]bool {
	keys := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[name] = true
		}
	}
	return keys
}

// The dev overlay's secrets.env has every key of its example, no placeholder
// left, and one value per placeholder: the password in DATABASE_URL is
// POSTGRES_PASSWORD, the one PostgreSQL is started with.
func TestK8sSecrets(t *testing.T) {
	a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: FeatureNames(), LB: "haproxy", Replicas: 3, Port: 8080}
	files, err := Secrets(a, bytes.NewReader(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 100)))
	if err != nil {
		t.Fatal(err)
	}
	env := string(files["deploy/k8s/overlays/dev/secrets.env"])
	if env == "" {
		t.Fatal("no deploy/k8s/overlays/dev/secrets.env")
	}
	values := map[string]string{}
	for _, line := range strings.Split(env, "\n") {
		if name, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			values[name] = value
			if strings.Contains(value, "change-me") {
				t.Errorf("secrets.env keeps a placeholder: %s", line)
			}
		}
	}
	generated, _ := Generate(a)
	for name := range envFileKeys(generated["deploy/k8s/overlays/dev/secrets.env.example"]) {
		if values[name] == "" {
			t.Errorf("secrets.env has no value for %s", name)
		}
	}
	if pw := values["POSTGRES_PASSWORD"]; !strings.Contains(values["DATABASE_URL"], ":"+pw+"@") {
		t.Errorf("DATABASE_URL %q does not hold POSTGRES_PASSWORD %q", values["DATABASE_URL"], pw)
	}
	if pw := values["REDIS_PASSWORD"]; !strings.Contains(values["REDIS_URL"], ":"+pw+"@") {
		t.Errorf("REDIS_URL %q does not hold REDIS_PASSWORD %q", values["REDIS_URL"], pw)
	}
	if values["S3_ACCESS_KEY"] == values["S3_SECRET_KEY"] {
		t.Error("S3_ACCESS_KEY and S3_SECRET_KEY are the same")
	}
}

// k8s adds its own files and changes only README.md, .gitignore and
// .scaffold.yaml of the rest: no Go code, no go.mod, no compose file. The
// matrix (internal/matrix) builds each combination once, with k8s, and the
// compose checks (internal/deploycheck) run once, without it, on the
// strength of this.
func TestK8sChangesOnlyItsFiles(t *testing.T) {
	if GoFeatures()["k8s"] {
		t.Error("k8s counts as a Go feature: it must not change go.mod or go.sum")
	}
	for _, combo := range Combinations() {
		if slices.Contains(combo, "k8s") {
			continue
		}
		a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: "nginx", Replicas: 2, Port: 8080}
		without, err := Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		a.Features, _ = Resolve(append(slices.Clone(combo), "k8s"))
		with, err := Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		for p, b := range with {
			if strings.HasPrefix(p, "deploy/k8s/") || p == "README.md" || p == ".gitignore" || p == AnswersFileName {
				continue
			}
			if !bytes.Equal(b, without[p]) {
				t.Errorf("%v: k8s changes %s", combo, p)
			}
		}
		for p := range without {
			if _, ok := with[p]; !ok {
				t.Errorf("%v: k8s removes %s", combo, p)
			}
		}
	}
}

// The README of every project with k8s has the commands that deploy it: the
// image for a local cluster and the apply of each overlay.
func TestK8sReadmeCommands(t *testing.T) {
	for _, combo := range Combinations() {
		if !slices.Contains(combo, "k8s") {
			continue
		}
		a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: combo, LB: "haproxy", Replicas: 2, Port: 8080}
		files, err := Generate(a)
		if err != nil {
			t.Fatal(err)
		}
		readme := string(files["README.md"])
		for _, want := range []string{
			"\n    docker build -t shop:dev . && kind load docker-image shop:dev\n    kubectl apply -k deploy/k8s/overlays/dev\n",
			"\n    kubectl apply -k deploy/k8s/overlays/prod\n",
		} {
			if !strings.Contains(readme, want) {
				t.Errorf("%v: README.md lacks %q", combo, want)
			}
		}
		for _, overlay := range []string{"dev", "prod"} {
			if files["deploy/k8s/overlays/"+overlay+"/kustomization.yaml"] == nil {
				t.Errorf("%v: no %s overlay", combo, overlay)
			}
		}
	}
}
