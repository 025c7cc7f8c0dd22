package generator

import (
	"maps"
	"slices"
	"strings"
)

// The manifest is the one place that says which files a generated project
// has. Every file in the template tree belongs to exactly one entry (a test
// checks that), and a feature exists for the generator only when it has an
// entry here: until then `scaffold new` does not offer it.
//
// To add a feature: add its entry to Features (in canonical order), put its
// templates under templates/, list its Go modules in Requires, then run
// `make deps golden reference`.

// Feature is one entry of the manifest.
type Feature struct {
	// Name is what users type in --features and what templates see as a
	// boolean (.DB, .Cache, ...).
	Name string
	// Description is one line for `scaffold features` and the prompt.
	Description string
	// Needs lists features that must be on when this one is; choosing this
	// feature adds them (with a message).
	Needs []string
	// Files are the output paths this entry owns: an exact path
	// ("go.mod"), a directory ending in "/" ("internal/postgres/") or a
	// path.Match pattern ("migrations/*.sql"). Paths are those of the
	// generated project, so a template templates/go.mod.tmpl is owned by
	// "go.mod". A template fragment is owned the same way
	// ("README.md.d/db.md"): it is parsed with its file only when its
	// entry is on (see FragmentOf).
	Files []string
	// With holds files of the feature that exist only when something else
	// is on too: another feature ("cache": the cluster test of the cache
	// needs compose and cache), one of several ("db|blob"), or an answer
	// ("lb=nginx": the nginx config).
	With map[string][]string
	// Requires are the Go modules the feature's code imports directly, as
	// "module@version". `make deps` resolves them into the go.mod/go.sum
	// of every combination (see generator/deps).
	Requires []string
	// RequiresWith are Go modules imported only by files of With: by
	// condition, as in With (feature names; "a|b" is either).
	RequiresWith map[string][]string
	// Secrets, if set, makes files with random content (like a .env) when
	// the project is written. They are not part of the deterministic
	// output: golden trees and reference-app do not hold them.
	Secrets SecretsFunc
}

// Base is the part of every generated project.
var Base = Feature{
	Name:        "",
	Description: "the web service: HTTP server, health checks, settings from the environment, JSON logs, clean shutdown",
	Files: []string{
		".dockerignore",
		".gitignore",
		"Dockerfile",
		"Makefile",
		"README.md",
		"go.mod",
		"cmd/server/main.go",
		"cmd/server/main_test.go",
		"config/config.go",
		"config/config_test.go",
		"httpapi/json.go",
		"httpapi/middleware.go",
		"httpapi/ready.go",
		"httpapi/ready_test.go",
		"httpapi/middleware_test.go",
		"httpapi/server.go",
	},
	With: map[string][]string{
		// Only a project whose tests start servers needs the code that
		// starts them and the script that installs them.
		"db|blob|compose": {
			"scripts/install-servers.sh",
			"testsupport/main.go",
			"testsupport/process.go",
			"testsupport/faultproxy.go",
			"testsupport/faultproxy_test.go",
			"testsupport/sysproc_*.go",
			"testsupport/testsupport_test.go",
			"README.md.d/servers.md",
		},
	},
}

// Features are the features the generator offers, in canonical order (the
// order of --features in .scaffold.yaml and in `scaffold features`).
var Features = []Feature{
	{
		Name:        "db",
		Description: "PostgreSQL, with a sample notes API at /api/notes; instances starting together update the schema once",
		Files: []string{
			"notes/",
			"README.md.d/db.md",
			"postgres/migrate.go",
			"postgres/migrate_test.go",
			"postgres/main_test.go",
			"postgres/notes.go",
			"postgres/notes_test.go",
			"postgres/postgres.go",
			"postgres/migrations/00001_notes.sql",
			"postgres/migrations/00005_notes_idempotency_key.sql",
			"httpapi/notes.go",
			"httpapi/notes_test.go",
			"config/db.go",
			"config/db_test.go",
			"cmd/server/db.go",
			"cmd/server/migrate.go",
			"cmd/server/db_test.go",
			"testsupport/postgres.go",
			"testsupport/postgres_test.go",
		},
		Requires: []string{
			"github.com/jackc/pgx/v5@v5.12.0",
			"github.com/pressly/goose/v3@v3.29.0",
		},
	},
	{
		Name:        "cache",
		Description: "faster reads of notes through Redis; every instance sees a change as soon as it is written",
		Needs:       []string{"db"},
		Files: []string{
			"cache/",
			"README.md.d/cache.md",
			"redis/redis.go",
			"redis/redis_test.go",
			"httpapi/notes_cache.go",
			"httpapi/notes_cache_test.go",
			"config/cache.go",
			"config/cache_test.go",
			"cmd/server/cache.go",
			"cmd/server/cache_test.go",
			"testsupport/redis.go",
			"testsupport/redis_test.go",
		},
		Requires: []string{
			"github.com/go-redis/cache/v9@v9.0.0",
			"github.com/redis/go-redis/v9@v9.23.0",
			"golang.org/x/sync@v0.24.0",
		},
	},
	{
		Name:        "blob",
		Description: "file uploads at /api/files, kept in S3-compatible storage (MinIO), or a local directory on one machine",
		Files: []string{
			"blob/",
			"README.md.d/blob.md",
			"minio/",
			"httpapi/files.go",
			"httpapi/files_test.go",
			"config/blob.go",
			"config/blob_test.go",
			"cmd/server/blob.go",
			"cmd/server/blob_test.go",
			"testsupport/minio.go",
			"testsupport/minio_test.go",
		},
		Requires: []string{
			"github.com/minio/minio-go/v7@v7.4.1",
		},
	},
	{
		Name:        "worker",
		Description: "scheduled jobs that run once per schedule however many instances run; another takes over if one stops",
		Needs:       []string{"db"},
		Files: []string{
			"worker/",
			"README.md.d/worker.md",
			"postgres/elector.go",
			"postgres/elector_test.go",
			"postgres/runs.go",
			"postgres/migrations/00002_job_runs.sql",
			"postgres/migrations/00003_leader.sql",
			"postgres/migrations/00004_leader_pid.sql",
			"httpapi/jobs.go",
			"httpapi/jobs_test.go",
			"config/worker.go",
			"config/worker_test.go",
			"cmd/server/worker.go",
			"cmd/server/worker_test.go",
		},
	},
	{
		// lock has no single-node stand-in: it needs PostgreSQL anyway, and
		// the PostgreSQL lock is as correct on one instance as on many.
		Name:        "lock",
		Description: "a lock that holds across instances, for code that must not run twice at once (PostgreSQL, with fencing tokens)",
		Needs:       []string{"db"},
		Files: []string{
			"lock/",
			"README.md.d/lock.md",
			"postgres/lock.go",
			"postgres/lock_test.go",
			"postgres/migrations/00006_locks.sql",
			"httpapi/notes_append.go",
			"httpapi/notes_append_test.go",
			"cmd/server/lock.go",
		},
	},
	{
		// queue runs River (github.com/riverqueue/river) on the PostgreSQL
		// the service has: jobs are rows, inserted in the transaction of the
		// write that makes them.
		Name:        "queue",
		Description: "background jobs kept in PostgreSQL, run once across instances and retried until they succeed; note changes sent to a webhook",
		Needs:       []string{"db"},
		Files: []string{
			"queue/",
			"README.md.d/queue.md",
			"postgres/queue.go",
			"postgres/queue_test.go",
			"config/queue.go",
			"config/queue_test.go",
			"cmd/server/queue.go",
			"cmd/server/queue_test.go",
		},
		Requires: []string{
			"github.com/riverqueue/river@v0.51.2",
			"github.com/riverqueue/river/riverdriver/riverpgxv5@v0.51.2",
			"github.com/riverqueue/river/rivertype@v0.51.2", // the retry policy's argument, in the tests
		},
	},
	{
		// realtime has no stand-in without Redis: events pushed to the
		// clients of one instance only are what the feature exists to avoid.
		Name:        "realtime",
		Description: "changes of notes pushed to clients (Server-Sent Events at /api/events) on every instance through Redis; a client that reconnects gets what it missed",
		Needs:       []string{"cache"},
		Files: []string{
			"realtime/",
			"README.md.d/realtime.md",
			"redis/events.go",
			"redis/events_test.go",
			"postgres/events.go",
			"postgres/events_test.go",
			"postgres/migrations/00008_note_versions.sql",
			"httpapi/events.go",
			"httpapi/events_test.go",
			"config/realtime.go",
			"config/realtime_test.go",
			"cmd/server/realtime.go",
		},
	},
	{
		Name:        "compose",
		Description: "run several instances behind a load balancer with docker compose, and a test of the whole cluster",
		Files: []string{
			"docker-compose.yml",
			"README.md.d/compose.md",
			"Makefile.d/compose.mk",
			".env.example",
			"clustertest/bench_test.go",
			"clustertest/cluster_test.go",
			"clustertest/render_test.go",
			"clustertest/roundrobin_test.go",
			"clustertest/lberrors_test.go",
			"clustertest/restart_test.go",
			"clustertest/lbfaults_test.go",
			"clustertest/clustermode_test.go",
			"clustertest/logs_test.go",
			"clustertest/appenv_test.go",
			"testsupport/proxy.go",
			"testsupport/proxy_test.go",
		},
		With: map[string][]string{
			"db":         {"clustertest/migrate_test.go", "clustertest/bodylimit_test.go", "clustertest/robust_test.go", "clustertest/idempotency_test.go", "README.md.d/robust.md"},
			"cache":      {"clustertest/cache_test.go", "clustertest/faults_redis_test.go", "clustertest/robust_cache_test.go"},
			"blob":       {"clustertest/blob_test.go", "clustertest/faults_minio_test.go"},
			"worker":     {"clustertest/leader_test.go", "clustertest/leader_pause_test.go", "clustertest/robust_worker_test.go"},
			"lock":       {"clustertest/lock_test.go"},
			"queue":      {"clustertest/queue_test.go"},
			"realtime":   {"clustertest/events_test.go"},
			"lb=nginx":   {"deploy/nginx.conf"},
			"lb=haproxy": {"deploy/haproxy.cfg"},
		},
		Requires: []string{
			"go.yaml.in/yaml/v3@v3.0.5",
		},
		RequiresWith: map[string][]string{
			"db": {"github.com/anishathalye/porcupine@v1.3.1"}, // the robustness suite's checker
		},
		Secrets: composeSecrets,
	},
	{
		// k8s stands alone: it needs no compose, but its ConfigMap and
		// Secret hold the same settings as docker-compose.yml, from the one
		// list in settings.go. It adds no Go code, so no combination's Go
		// dependencies change with it.
		Name:        "k8s",
		Description: "Kubernetes manifests (kustomize) for more machines than one: autoscaled, drained, with dev and prod overlays",
		Files: []string{
			"deploy/k8s/base/",
			"deploy/k8s/overlays/dev/kustomization.yaml",
			"deploy/k8s/overlays/prod/",
			"README.md.d/k8s.md",
		},
		With: map[string][]string{
			"db|cache|blob": {"deploy/k8s/overlays/dev/secrets.env.example"},
			"db":            {"deploy/k8s/overlays/dev/postgres.yaml"},
			"cache":         {"deploy/k8s/overlays/dev/redis.yaml"},
			"blob":          {"deploy/k8s/overlays/dev/minio.yaml"},
		},
		Secrets: k8sSecrets,
	},
}

// RequiresFor is the entry's Requires and those of its RequiresWith whose
// condition holds for the feature list.
func (f Feature) RequiresFor(features []string) []string {
	out := slices.Clone(f.Requires)
	for _, cond := range slices.Sorted(maps.Keys(f.RequiresWith)) {
		if slices.ContainsFunc(strings.Split(cond, "|"), func(name string) bool { return slices.Contains(features, name) }) {
			out = append(out, f.RequiresWith[cond]...)
		}
	}
	return out
}

// Combinations are all valid feature sets (each with what it needs), in a
// stable order, the empty set first. The matrix test builds each one and
// `make deps` locks the Go dependencies of each.
func Combinations() [][]string {
	seen := map[string]bool{}
	var out [][]string
	for mask := 0; mask < 1<<len(Features); mask++ {
		var picked []string
		for i, f := range Features {
			if mask&(1<<i) != 0 {
				picked = append(picked, f.Name)
			}
		}
		resolved, added := Resolve(picked)
		key := strings.Join(resolved, ",")
		if len(added) > 0 || seen[key] {
			continue // the same set arrives without additions too
		}
		seen[key] = true
		out = append(out, resolved)
	}
	return out
}
