package generator

import "fmt"

// Setting is one environment variable that the deployment files give every
// app instance. docker-compose.yml (x-app-env) and the Kubernetes ConfigMap
// and Secret (deploy/k8s/) are both rendered from AppSettings, so the two
// ways of running the cluster cannot drift apart; TestK8sSettingsMatchCompose
// checks the rendered files.
type Setting struct {
	Name string
	// Value is the value as docker-compose.yml writes it; for a secret it is
	// the compose interpolation of the .env variable that holds it.
	Value string
	// Secret settings come from .env under compose and from the Secret
	// NAME-secrets on Kubernetes; the others are in the ConfigMap.
	Secret bool
	// Comment follows the value on its line in docker-compose.yml, and
	// Above are comment lines before it there.
	Comment string
	Above   []string
}

// DBPoolSize is DB_POOL_SIZE in every deployment file: the pool of one
// instance. The database's max_connections is sized from it (connectionBudget).
const DBPoolSize = 10

// connectionBudget is the max_connections a PostgreSQL server needs for
// instances app instances: each one's pool, its leader connection and the 2
// it uses while migrating, plus, with the queue, River's LISTEN connection
// (taken from the pool and then held apart from it, so the pool opens
// another), plus 10 for people and tools; at least PostgreSQL's default of
// 100. Compose sizes it for its replicas, Kubernetes for the most pods the
// HPA and a rolling update can run at once.
func connectionBudget(instances int, queue bool) int {
	each := DBPoolSize + 1 + 2
	if queue {
		each++
	}
	return max(100, instances*each+10)
}

// AppSettings are the app's environment in the deployment files, in the
// order docker-compose.yml lists them. INSTANCE_ID is not among them: each
// compose service and each pod sets its own.
func AppSettings(a Answers) []Setting {
	lbConfig := lbConfigPath(a.LB)
	instanceCount := map[bool]string{true: "1 instance", false: fmt.Sprintf("%d instances", a.Replicas)}[a.Replicas == 1]
	s := []Setting{
		{Name: "PORT", Value: fmt.Sprint(a.Port)},
		{Name: "CLUSTER_MODE", Value: "true", Comment: "refuse single-node defaults (in-memory cache, local blob dir)"},
		{Name: "LOG_LEVEL", Value: "info"},
		{Name: "MAX_BODY_BYTES", Value: "1048576", Comment: lbConfig + ": the same limit"},
		{Name: "SHUTDOWN_DRAIN_DELAY", Value: "5s", Above: []string{
			"While draining, readiness says 503 and every answer closes its connection,",
			"this long before idle connections and the listener close. It must be",
			"longer than the load balancer needs to stop using the instance: haproxy",
			"checks /readyz every 500ms and needs 2 failures (~1.5s); nginx drops its",
			"idle connections after 2s (keepalive_timeout).",
		}},
		{Name: "SHUTDOWN_TIMEOUT", Value: "20s", Comment: "in-flight requests may take this long to finish"},
	}
	if a.Has("db") {
		leader := ""
		if a.Has("worker") {
			leader = " + 1 leader connection"
		}
		if a.Has("queue") {
			leader += " + 1 queue listener"
		}
		s = append(s,
			Setting{Name: "DATABASE_URL", Secret: true,
				Value: fmt.Sprintf("postgres://%s:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}@postgres:5432/%s?sslmode=disable", a.Name, a.Name),
				Above: []string{
					fmt.Sprintf("db: %s x (%d pooled%s + 2 while migrating)", instanceCount, DBPoolSize, leader),
					fmt.Sprintf("must stay under max_connections=%d (the postgres service) minus its", connectionBudget(a.Replicas, a.Has("queue"))),
					"reserved superuser slots.",
				}},
			Setting{Name: "DB_POOL_SIZE", Value: fmt.Sprint(DBPoolSize)},
			Setting{Name: "MIGRATE_ON_START", Value: "true", Comment: "under a lock: one instance migrates, the others wait"},
		)
	}
	if a.Has("cache") {
		s = append(s,
			Setting{Name: "REDIS_URL", Secret: true, Value: "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/0", Above: []string{"cache"}},
			Setting{Name: "CACHE_LOCAL_SIZE", Value: "1000"},
			Setting{Name: "CACHE_TTL", Value: "10m"},
		)
	}
	if a.Has("blob") {
		s = append(s,
			Setting{Name: "S3_ENDPOINT", Value: "minio:9000", Above: []string{"blob"}},
			Setting{Name: "S3_ACCESS_KEY", Secret: true, Value: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER in .env}"},
			Setting{Name: "S3_SECRET_KEY", Secret: true, Value: "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD in .env}"},
			Setting{Name: "S3_BUCKET", Value: bucket(a.Name)},
			Setting{Name: "S3_USE_SSL", Value: "false"},
			Setting{Name: "MAX_FILE_BYTES", Value: "104857600", Comment: lbConfig + ": the same limit for /api/files/"},
		)
	}
	if a.Has("worker") {
		s = append(s,
			Setting{Name: "WORKER_INTERVAL", Value: "1m", Above: []string{"worker"}},
			Setting{Name: "LEADER_POLL_INTERVAL", Value: "500ms"},
		)
	}
	return s
}

func lbConfigPath(lb string) string {
	return map[string]string{"nginx": "deploy/nginx.conf", "haproxy": "deploy/haproxy.cfg"}[lb]
}

func secretNames(settings []Setting) []string {
	var names []string
	for _, s := range settings {
		if s.Secret {
			names = append(names, s.Name)
		}
	}
	return names
}
