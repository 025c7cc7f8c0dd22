package config

import (
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	// db: DATABASE_URL is required; tests that need it unset pass "".
	m["DATABASE_URL"] = "postgres://app:secret@localhost:5432/app?sslmode=disable"
	// cache: cluster mode needs REDIS_URL; tests of the in-memory default pass "".
	m["REDIS_URL"] = "redis://localhost:6379/0"
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8080 || c.Cluster || c.InstanceID == "" || c.MaxBodyBytes != 1<<20 || c.LogFormat != "json" {
		t.Errorf("defaults = %+v", c)
	}
}

// Outside cluster mode no load balancer waits for /readyz to fail: Ctrl-C
// stops at once. In cluster mode the drain has a default.
func TestDrainDelayDefault(t *testing.T) {
	c, err := Load(env())
	if err != nil || c.DrainDelay != 0 {
		t.Errorf("SHUTDOWN_DRAIN_DELAY default outside cluster mode = %v (%v), want 0", c.DrainDelay, err)
	}
	c, err = Load(env("CLUSTER_MODE", "true", "S3_ENDPOINT", "minio:9000", "S3_ACCESS_KEY", "a", "S3_SECRET_KEY", "s"))
	if err != nil || c.DrainDelay != 3*time.Second {
		t.Errorf("SHUTDOWN_DRAIN_DELAY default in cluster mode = %v (%v), want 3s", c.DrainDelay, err)
	}
}

func TestLogFormat(t *testing.T) {
	c, err := Load(env("LOG_FORMAT", "text"))
	if err != nil || c.LogFormat != "text" {
		t.Errorf("LOG_FORMAT=text: %q (%v)", c.LogFormat, err)
	}
	_, err = Load(env("LOG_FORMAT", "xml"))
	if err == nil || !strings.Contains(err.Error(), `LOG_FORMAT="xml": want json`) || !strings.Contains(err.Error(), "text") {
		t.Errorf("LOG_FORMAT=xml: %v, want an error naming the value and both formats", err)
	}
}

// Vars is what `server --help` prints: every variable Load reads, with its
// default as Load applies it.
func TestVars(t *testing.T) {
	want := map[string]Var{
		"PORT":                 {Name: "PORT", Default: "8080"},
		"LOG_FORMAT":           {Name: "LOG_FORMAT", Default: "json"},
		"LOG_LEVEL":            {Name: "LOG_LEVEL", Default: "info"},
		"SHUTDOWN_DRAIN_DELAY": {Name: "SHUTDOWN_DRAIN_DELAY", Default: "0s", ClusterDefault: "3s"},
		"SHUTDOWN_TIMEOUT":     {Name: "SHUTDOWN_TIMEOUT", Default: "20s"},
		"DATABASE_URL":         {Name: "DATABASE_URL", Required: true},
		"S3_ACCESS_KEY":        {Name: "S3_ACCESS_KEY"},
	}
	seen := map[string]bool{}
	for _, v := range Vars() {
		if seen[v.Name] {
			t.Errorf("%s listed twice", v.Name)
		}
		seen[v.Name] = true
		if w, ok := want[v.Name]; ok && v != w {
			t.Errorf("Vars: %+v, want %+v", v, w)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("Vars does not list %s", name)
		}
	}
}

func TestValues(t *testing.T) {
	c, err := Load(env("PORT", "9000", "INSTANCE_ID", "app-2", "CLUSTER_MODE", "true", "SHUTDOWN_TIMEOUT", "5s",
		"S3_ENDPOINT", "minio:9000", "S3_ACCESS_KEY", "a", "S3_SECRET_KEY", "s", // blob
	))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9000 || c.InstanceID != "app-2" || !c.Cluster || c.ShutdownTimeout != 5*time.Second {
		t.Errorf("got %+v", c)
	}
}

// Every invalid variable is named, all at once.
func TestInvalidValuesAreNamed(t *testing.T) {
	_, err := Load(env("PORT", "70000", "CLUSTER_MODE", "maybe", "SHUTDOWN_DRAIN_DELAY", "soon", "LOG_LEVEL", "loud"))
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{`PORT="70000"`, `CLUSTER_MODE="maybe"`, `SHUTDOWN_DRAIN_DELAY="soon"`, `LOG_LEVEL="loud"`} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}
