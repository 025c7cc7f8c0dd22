package testsupport_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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

// The install script says what it installs through sudo, and how to use
// servers already running instead, before sudo runs. Stubs stand in for sudo
// and apt-get (sudo keeps what the script had printed when it was first
// called), and for id (the non-root path); the script's PATH holds them and
// the tools it uses, not psql, so that with TEST_DATABASE_URL set it wants
// postgresql-client. Nothing is installed.
func TestInstallScriptAnnouncesSudo(t *testing.T) {
	dir := t.TempDir()
	stubs, outFile, before := filepath.Join(dir, "bin"), filepath.Join(dir, "out"), filepath.Join(dir, "before-sudo")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"id":      "echo 1000",
		"sudo":    `[ -e "$STUB_BEFORE" ] || cat "$STUB_OUT" >"$STUB_BEFORE"`,
		"apt-get": "exit 0",
	} {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range []string{"sh", "mktemp", "rm", "cat", "ls", "sort", "chmod"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s to run the script with", tool)
		}
		if err := os.Symlink(p, filepath.Join(stubs, tool)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.Create(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(filepath.Join(stubs, "sh"), filepath.Join(moduleRoot(t), "scripts", "install-servers.sh"))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = []string{"PATH=" + stubs, "HOME=" + dir, "STUB_OUT=" + outFile, "STUB_BEFORE=" + before,
		"TEST_DATABASE_URL=postgres://unused@127.0.0.1:1/postgres", "TEST_REDIS_URL=redis://127.0.0.1:1", "TEST_S3_ENDPOINT=127.0.0.1:1"}
	err = cmd.Run()
	all, _ := os.ReadFile(outFile)
	if err != nil {
		t.Fatalf("install-servers.sh with stubs: %v\n%s", err, all)
	}
	said, err := os.ReadFile(before)
	if err != nil {
		t.Fatalf("the script did not run sudo (%v); it printed:\n%s", err, all)
	}
	for _, want := range []string{
		"installing with sudo apt-get install postgresql-client",
		"to use servers you already run instead, stop now and set TEST_DATABASE_URL",
	} {
		if !strings.Contains(string(said), want) {
			t.Errorf("before it ran sudo the script printed:\n%s\nwant it to say %q", said, want)
		}
	}
}
