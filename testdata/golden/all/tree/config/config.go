// Package config reads the service's settings from environment variables and
// checks them before anything starts, so a bad value stops the process with a
// message that names the variable instead of failing later at random.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
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
	LogFormat  string     // LOG_FORMAT: json (for log collectors) or text (for a terminal)

	// MaxBodyBytes caps request bodies (MAX_BODY_BYTES); the load balancer
	// is configured with the same limit.
	MaxBodyBytes int64
	// DrainDelay is how long readiness reports 503 before the listener closes
	// (SHUTDOWN_DRAIN_DELAY), so load balancers stop sending new requests first.
	// Its default is 0 outside cluster mode: no load balancer to wait for, and
	// Ctrl-C on a development instance stops it at once.
	DrainDelay time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after the listener closed (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration

	// A feature's settings are a struct in config/<feature>.go, embedded
	// here so that its fields read as the Config's own (cfg.DatabaseURL).
	DB
	Cache
	Blob
	Worker
	Queue
	Realtime
}

// Var is an environment variable that Load reads.
type Var struct {
	Name string
	// Default is the value used when the variable is empty, as it would be
	// written in the variable ("" for none, <...> for a value computed at
	// start); ClusterDefault is set when CLUSTER_MODE=true changes it.
	Default, ClusterDefault string
	Required                bool // no default: Load fails without it
}

// Vars lists the variables Load reads, in the order it reads them, with their
// defaults. It runs Load itself on an empty environment (and again in
// cluster mode) and records what Load asks for, so that `server --help`,
// which prints this list, cannot drift from what Load does.
func Vars() []Var {
	var vars []Var
	for _, cluster := range []string{"", "true"} {
		r := reader{getenv: func(name string) string {
			if name == "CLUSTER_MODE" {
				return cluster
			}
			return ""
		}}
		load(&r)
		for _, v := range r.vars {
			i := slices.IndexFunc(vars, func(o Var) bool { return o.Name == v.Name })
			switch {
			case i < 0:
				vars = append(vars, v)
			case vars[i].Default != v.Default:
				vars[i].ClusterDefault = v.Default
			}
		}
	}
	return vars
}

// Load reads the configuration through getenv and reports every invalid
// variable at once.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := load(&r)
	return c, r.err()
}

func load(r *reader) Config {
	c := Config{
		Port:       r.int("PORT", 8080, 0, 65535),
		InstanceID: r.get("INSTANCE_ID", "<host name>-<process id>"),
		Cluster:    r.bool("CLUSTER_MODE", false),
		LogLevel:   r.level("LOG_LEVEL", slog.LevelInfo),
		LogFormat: r.oneOf("LOG_FORMAT", "json", "text",
			"want json (the default: one object per line, for log collectors) or text (for a terminal)"),
		MaxBodyBytes:    int64(r.int("MAX_BODY_BYTES", 1<<20, 1, 1<<40)),
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
	}
	// Computed here rather than passed as the default: Vars would show the
	// id of the process that prints `server --help`.
	if c.InstanceID == "" {
		c.InstanceID = defaultInstanceID()
	}
	// In a cluster the load balancer must see /readyz fail before the
	// listener closes; alone, there is no one to wait for.
	drain := time.Duration(0)
	if c.Cluster {
		drain = 3 * time.Second
	}
	c.DrainDelay = r.duration("SHUTDOWN_DRAIN_DELAY", drain)
	// A feature reads its own variables, in config/<feature>.go.
	loadDB(r, &c)
	loadCache(r, &c)
	loadBlob(r, &c)
	loadWorker(r, &c)
	loadQueue(r, &c)
	loadRealtime(r, &c)

	return c
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

// reader collects one error per invalid variable, and every variable read
// (for Vars).
type reader struct {
	getenv func(string) string
	errs   []error
	vars   []Var
}

// get records the variable and its default, and returns its value.
func (r *reader) get(name, def string) string {
	r.vars = append(r.vars, Var{Name: name, Default: def})
	return strings.TrimSpace(r.getenv(name))
}

func (r *reader) err() error { return errors.Join(r.errs...) }

func (r *reader) fail(name, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s=%q: %s", name, value, want))
}

func (r *reader) str(name, def string) string {
	if v := r.get(name, def); v != "" {
		return v
	}
	return def
}

// oneOf is str limited to def and one other value.
func (r *reader) oneOf(name, def, other, want string) string {
	v := r.str(name, def)
	if v != def && v != other {
		r.fail(name, v, want)
		return def
	}
	return v
}

// The checks below are for the features' settings (config/<feature>.go).

// required is for settings without a default; why says what needs it.
func (r *reader) required(name, why string) string {
	v := r.get(name, "")
	r.vars[len(r.vars)-1].Required = true
	if v == "" {
		r.missing(name, why)
	}
	return v
}

func (r *reader) missing(name, why string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s is required: %s", name, why))
}

// clusterNeeds reports a single-node default that cluster mode refuses.
func (r *reader) clusterNeeds(name, why string) {
	r.errs = append(r.errs, fmt.Errorf("config: %s is required when CLUSTER_MODE=true: %s", name, why))
}

func (r *reader) int(name string, def, min, max int) int {
	v := r.get(name, strconv.Itoa(def))
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
	v := r.get(name, strconv.FormatBool(def))
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
	v := r.get(name, def.String())
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
	v := r.get(name, strings.ToLower(def.String()))
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
