package clustertest

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"example.com/acme/shop/testsupport"
)

// Hazard: migrations race when instances start together. startCluster starts
// every instance at the same moment on an empty database; all must become
// ready, and each migration must have been applied exactly once - by one
// instance, the others waiting on the migration lock.
func TestMigrationsOnce(t *testing.T) {
	c := startCluster(t, nil)
	record("instances started together, all ready in", c.appsReady.Round(1e6))

	files, err := filepath.Glob(filepath.Join(projectDir, "postgres", "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no migration files in postgres/migrations (%v)", err)
	}
	want := map[int64]bool{}
	for _, f := range files {
		v, err := strconv.ParseInt(regexp.MustCompile(`^\d+`).FindString(filepath.Base(f)), 10, 64)
		if err != nil {
			t.Fatalf("%s: no version number: %v", f, err)
		}
		want[v] = true
	}

	// goose's table: one applied row per version, no more.
	rows := testsupport.PSQL(t, c.dbURL,
		"SELECT version_id, count(*) FROM goose_db_version WHERE version_id > 0 AND is_applied GROUP BY version_id ORDER BY version_id")
	got := map[int64]int{}
	for _, line := range strings.Split(rows, "\n") {
		v, n, _ := strings.Cut(line, "|")
		version, _ := strconv.ParseInt(v, 10, 64)
		count, _ := strconv.Atoi(n)
		got[version] = count
	}
	for v := range want {
		if got[v] != 1 {
			t.Errorf("migration %d: %d rows in goose_db_version, want 1", v, got[v])
		}
	}
	if len(got) != len(want) {
		t.Errorf("goose_db_version holds versions %v, want the %d files %v", got, len(want), want)
	}

	// The instances' logs: each version reported applied by exactly one.
	appliedBy := map[int64][]string{}
	for _, a := range c.apps {
		for _, l := range a.logLines() {
			var e struct {
				Msg     string `json:"msg"`
				Version int64  `json:"version"`
			}
			if json.Unmarshal([]byte(l.text), &e) == nil && e.Msg == "migration applied" {
				appliedBy[e.Version] = append(appliedBy[e.Version], a.name)
			}
		}
	}
	for v := range want {
		if len(appliedBy[v]) != 1 {
			t.Errorf("migration %d was applied by %v, want exactly one instance", v, appliedBy[v])
		}
	}
	t.Logf("migrations applied by: %v; %s ready %v after starting together", appliedBy, instances(len(c.apps)), c.appsReady)
}
