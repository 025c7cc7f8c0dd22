package testsupport_test

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"example.com/acme/shop/testsupport"
)

func TestPostgres(t *testing.T) {
	a := testsupport.Postgres(t)
	if got := testsupport.PSQL(t, a, "select 1"); got != "1" {
		t.Fatalf("select 1 = %q", got)
	}
	b := testsupport.Postgres(t)
	dbA := testsupport.PSQL(t, a, "select current_database()")
	dbB := testsupport.PSQL(t, b, "select current_database()")
	if dbA == dbB {
		t.Fatalf("two Postgres calls gave the same database %q", dbA)
	}
	// Fresh and separate: a table made in one is not in the other.
	testsupport.PSQL(t, a, "create table t (id int); insert into t values (1), (2)")
	if got := testsupport.PSQL(t, a, "select count(*) from t"); got != "2" {
		t.Fatalf("count = %q", got)
	}
	if got := testsupport.PSQL(t, b, "select count(*) from pg_tables where schemaname = 'public'"); got != "0" {
		t.Fatalf("second database has %s tables, want 0", got)
	}
	// The server is tuned for tests.
	if got := testsupport.PSQL(t, a, "show max_connections"); os.Getenv("TEST_DATABASE_URL") == "" && got != "300" {
		t.Fatalf("max_connections = %s", got)
	}
}

func TestPostgresDropsDatabase(t *testing.T) {
	var u string
	t.Run("uses", func(t *testing.T) { u = testsupport.Postgres(t) })
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(pu.Path, "/")
	pu.Path = "/postgres"
	got := testsupport.PSQL(t, pu.String(), fmt.Sprintf("select count(*) from pg_database where datname = '%s'", name))
	if got != "0" {
		t.Fatalf("database %s still exists after its test", name)
	}
}
