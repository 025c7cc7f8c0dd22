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
}

// Load reads the configuration through getenv and reports every invalid
// variable at once.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		Port:            r.int("PORT", 9000, 0, 65535),
		InstanceID:      r.str("INSTANCE_ID", defaultInstanceID()),
		Cluster:         r.bool("CLUSTER_MODE", false),
		LogLevel:        r.level("LOG_LEVEL", slog.LevelInfo),
		MaxBodyBytes:    int64(r.int("MAX_BODY_BYTES", 1<<20, 1, 1<<40)),
		DrainDelay:      r.duration("SHUTDOWN_DRAIN_DELAY", 3*time.Second),
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
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
