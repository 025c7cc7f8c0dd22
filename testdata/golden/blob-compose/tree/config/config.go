// Package config reads the service's settings from environment variables and
// checks them before anything starts, so a bad value stops the process with a
// message that names the variable instead of failing later at random.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config holds every setting of the service.
type Config struct {
	Port       int        // PORT: HTTP port to listen on
	InstanceID string     // INSTANCE_ID: names this instance in headers and logs
	Cluster    bool       // CLUSTER_MODE: refuse single-node defaults
	LogLevel   slog.Level // LOG_LEVEL: debug, info, warn, error

	// MaxBodyBytes caps request bodies (MAX_BODY_BYTES); the load balancer
	// is configured with the same limit.
	MaxBodyBytes int64
	// DrainDelay is how long readiness reports 503 before the listener closes
	// (SHUTDOWN_DRAIN_DELAY), so load balancers stop sending new requests first.
	DrainDelay time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after the listener closed (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration

	// blob
	// BlobDir is the local directory for files when no S3 server is set
	// (BLOB_DIR); single-node only.
	BlobDir string
	// S3Endpoint is host:port of the S3 server (S3_ENDPOINT); when set,
	// files go to its bucket S3Bucket, shared by every instance.
	S3Endpoint  string
	S3AccessKey string // S3_ACCESS_KEY
	S3SecretKey string // S3_SECRET_KEY
	S3Bucket    string // S3_BUCKET
	S3UseSSL    bool   // S3_USE_SSL: https to the S3 server
	// MaxFileBytes caps an uploaded file (MAX_FILE_BYTES); it replaces
	// MaxBodyBytes on the file routes.
	MaxFileBytes int64
}

// Load reads the configuration through getenv and reports every invalid
// variable at once.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		Port:            r.int("PORT", 9090, 0, 65535),
		InstanceID:      r.str("INSTANCE_ID", defaultInstanceID()),
		Cluster:         r.bool("CLUSTER_MODE", false),
		LogLevel:        r.level("LOG_LEVEL", slog.LevelInfo),
		MaxBodyBytes:    int64(r.int("MAX_BODY_BYTES", 1<<20, 1, 1<<40)),
		DrainDelay:      r.duration("SHUTDOWN_DRAIN_DELAY", 3*time.Second),
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
	}
	// blob
	c.BlobDir = r.str("BLOB_DIR", "./data/blobs")
	c.S3Endpoint = r.str("S3_ENDPOINT", "")
	c.S3Bucket = r.str("S3_BUCKET", "files")
	c.S3UseSSL = r.bool("S3_USE_SSL", false)
	c.MaxFileBytes = int64(r.int("MAX_FILE_BYTES", 32<<20, 1, 1<<40))
	switch {
	case strings.Contains(c.S3Endpoint, "/"):
		r.fail("S3_ENDPOINT", c.S3Endpoint, "want host:port without scheme or path (S3_USE_SSL=true for https)")
	case c.S3Endpoint != "":
		c.S3AccessKey = r.required("S3_ACCESS_KEY", "S3_ENDPOINT is set")
		c.S3SecretKey = r.required("S3_SECRET_KEY", "S3_ENDPOINT is set")
	case c.Cluster:
		r.clusterNeeds("S3_ENDPOINT", "files in a local directory are not shared between instances")
	}

	return c, r.err()
}

// defaultInstanceID is the host name (a container's id under Docker) plus
// the process id, which tells apart instances that share one host.
func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "instance"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// reader collects one error per invalid variable.
type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) err() error { return errors.Join(r.errs...) }

func (r *reader) fail(name, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s=%q: %s", name, value, want))
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

// required is for settings without a default; why says what needs it.
func (r *reader) required(name, why string) string {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		r.errs = append(r.errs, fmt.Errorf("config: %s is required: %s", name, why))
	}
	return v
}

// clusterNeeds reports a single-node default that cluster mode refuses.
func (r *reader) clusterNeeds(name, why string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s is required when CLUSTER_MODE=true: %s", name, why))
}

func (r *reader) int(name string, def, min, max int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.fail(name, v, fmt.Sprintf("want a whole number from %d to %d", min, max))
		return def
	}
	return n
}

func (r *reader) bool(name string, def bool) bool {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, v, "want true or false")
		return def
	}
	return b
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.fail(name, v, "want a duration such as 500ms or 5s")
		return def
	}
	return d
}

func (r *reader) level(name string, def slog.Level) slog.Level {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.fail(name, v, "want debug, info, warn or error")
		return def
	}
	return l
}
