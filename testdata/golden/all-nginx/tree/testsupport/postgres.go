package testsupport

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const pgHint = "install it with `apt-get install postgresql` or `sh scripts/install-servers.sh`, " +
	"set PG_BIN to a directory holding initdb, postgres, pg_isready and psql, " +
	"or set TEST_DATABASE_URL to an admin URL of a running server"

// Postgres returns the URL of a fresh, empty database created for this test
// and dropped (WITH (FORCE)) when it ends. All tests of the binary share one
// PostgreSQL server, started on first use in a temporary directory on a free
// loopback port and stopped by Main. When TEST_DATABASE_URL is set (a URL
// of a role allowed to create databases), databases are created there.
//
// The server is tuned for tests, not durability: fsync, full_page_writes and
// synchronous_commit are off, max_connections is 300.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := pgAdmin(t)
	name := pgDatabaseName(t.Name())
	PSQL(t, admin, "CREATE DATABASE "+quoteIdent(name))
	t.Cleanup(func() {
		if _, err := psql(admin, "DROP DATABASE IF EXISTS "+quoteIdent(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
		if t.Failed() && pg.srv != nil {
			t.Logf("%s", pg.srv.tail(8<<10))
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse admin database URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// PSQL runs sql with psql against url and returns its unaligned, tuples-only
// output (-At) without the final newline: "select count(*) from t" gives
// "3". It fails the test when psql fails. Use it for simple assertions and
// setup, not as a database driver.
func PSQL(t testing.TB, url, sql string) string {
	t.Helper()
	out, err := psql(url, sql)
	if err != nil {
		t.Fatalf("psql %q: %v", sql, err)
	}
	return out
}

func psql(url, sql string) (string, error) {
	bin, err := psqlBinary()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql)
	// Do not hang on a server that does not answer; do not read a password
	// from the terminal.
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

// psqlBinary prefers the psql next to the server binaries; with an external
// server (TEST_DATABASE_URL) any psql in PATH will do.
func psqlBinary() (string, error) {
	if dir, err := pgBinDir(); err == nil {
		return filepath.Join(dir, "psql"), nil
	}
	if p, err := exec.LookPath("psql"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("psql not found; %s", pgHint)
}

// pg is the server shared by the test binary, started at most once: a
// failed start is remembered so later tests fail fast instead of each
// waiting for the same timeout.
var pg struct {
	mu    sync.Mutex
	done  bool
	admin string // admin URL
	err   error
	skip  string  // why tests must skip (binaries missing)
	srv   *Server // nil with TEST_DATABASE_URL
	bin   string  // the server binaries
	data  string  // the data directory
}

func pgAdmin(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		if _, err := psqlBinary(); err != nil {
			missing(t, "psql", "install the PostgreSQL client (apt-get install postgresql-client)")
		}
		return u
	}
	requireMain(t, "Postgres")
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if !pg.done {
		pg.done = true
		began := time.Now()
		pg.admin, pg.skip, pg.err = startPostgres()
		if pg.err == nil && pg.skip == "" {
			t.Logf("testsupport: PostgreSQL started in %v", time.Since(began).Round(time.Millisecond))
		}
	}
	switch {
	case pg.skip != "":
		missing(t, pg.skip, pgHint)
	case pg.err != nil:
		t.Fatalf("shared PostgreSQL server: %v", pg.err)
	}
	return pg.admin
}

// startPostgres runs initdb and postgres in a new directory and returns the
// admin URL, or what is missing, or an error.
func startPostgres() (admin, skip string, err error) {
	bin, err := pgBinDir()
	if err != nil {
		return "", "PostgreSQL server binaries (initdb, postgres, psql)", nil
	}
	var runAs *ids
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		runAs, err = postgresUser()
		if err != nil {
			return "", "", err
		}
	}
	parent := "" // os.TempDir()
	if runAs != nil {
		// The postgres user must be able to reach the directory; root's
		// TMPDIR may be private (under /root, or a 0700 test directory).
		parent = "/tmp"
	}
	dir, err := sharedDir(parent, "pg")
	if err != nil {
		return "", "", fmt.Errorf("create directory: %w", err)
	}
	data := filepath.Join(dir, "data")
	if runAs != nil {
		if err := os.Chown(dir, int(runAs.uid), int(runAs.gid)); err != nil {
			return "", "", fmt.Errorf("give %s to the postgres user: %w", dir, err)
		}
	}
	sock, err := pgSocketDir(dir, runAs)
	if err != nil {
		return "", "", err
	}
	out := newRingBuffer(64 << 10)

	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--no-locale", "-N")
	initdb.Dir = dir // a cwd the postgres user can enter
	initdb.Stdout, initdb.Stderr = out, out
	initdb.SysProcAttr = sysProcAttr(runAs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := runCtx(ctx, initdb); err != nil {
		return "", "", fmt.Errorf("initdb: %w\n%s", err, out.tail(8<<10))
	}

	var srv *Server
	for attempt := 0; attempt < 3; attempt++ { // a new port if another process took ours
		port, perr := freePort()
		if perr != nil {
			return "", "", fmt.Errorf("find a free port: %w", perr)
		}
		srv = &Server{
			Addr: loopback(port),
			URL:  fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", loopback(port)),
		}
		srv.control = &control{
			name:    "postgres",
			stopSig: syscall.SIGINT, // fast shutdown: does not wait for clients to disconnect
			timeout: 60 * time.Second,
			runAs:   runAs,
			out:     out,
		}
		srv.command = func() *exec.Cmd {
			cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
				"-p", strconv.Itoa(port), "-k", sock,
				"-c", "listen_addresses=127.0.0.1",
				"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
				"-c", "max_connections=300",
				// Parallel queries need dynamic shared memory; in /dev/shm
				// (the default) it fails in containers with Docker's 64 MB.
				"-c", "dynamic_shared_memory_type=mmap")
			cmd.Dir = dir
			return cmd
		}
		srv.ready = func(ctx context.Context) error {
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_isready"), "-q",
				"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres")
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("pg_isready: %w", err)
			}
			return nil
		}
		if err = srv.start(srv.Addr); !portLost(err) {
			break
		}
	}
	if err != nil {
		return "", "", fmt.Errorf("%w\n%s", err, out.tail(8<<10))
	}
	pg.srv, pg.bin, pg.data = srv, bin, data
	// Registered after sharedDir's removal, so it runs before it.
	onExit(func() {
		if err := srv.stop(20 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "testsupport: stop shared PostgreSQL: %v\n", err)
		}
	})
	return srv.URL, "", nil
}

// PostgresRestart stops the shared server with `pg_ctl stop -m mode`
// ("fast": roll back and disconnect every session; "immediate": exit
// without a shutdown checkpoint, as on a crash, so the start runs crash
// recovery), waits down seconds, and starts it again on the same port and
// data. Every other test of the binary shares the server: call it only from
// tests that do not run in parallel. It skips the test with
// TEST_DATABASE_URL.
func PostgresRestart(t testing.TB, mode string, down time.Duration) {
	t.Helper()
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("cannot restart PostgreSQL: it is an external server (TEST_DATABASE_URL is set)")
	}
	pgAdmin(t)
	s := pg.srv
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		t.Fatalf("restart PostgreSQL: it is not running")
	}
	stop := exec.Command(filepath.Join(pg.bin, "pg_ctl"), "stop", "-D", pg.data, "-m", mode, "-w", "-t", "30")
	stop.Dir = filepath.Dir(pg.data)
	stop.SysProcAttr = sysProcAttr(s.runAs)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out := newRingBuffer(8 << 10)
	stop.Stdout, stop.Stderr = out, out
	if err := runCtx(ctx, stop); err != nil {
		t.Fatalf("pg_ctl stop -m %s: %v\n%s", mode, err, out.tail(8<<10))
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("postgres did not exit within 30s of pg_ctl stop -m %s", mode)
	}
	s.mu.Lock()
	s.proc = nil
	s.mu.Unlock()
	time.Sleep(down)
	if err := s.start(s.Addr); err != nil {
		t.Fatalf("start PostgreSQL again: %v\n%s", err, s.tail(8<<10))
	}
}

// pgSocketDir returns dir, or a short directory in /tmp when the socket path
// in dir would be longer than the 107 bytes a Unix socket path may have
// (a long TMPDIR): postgres does not start without its socket.
func pgSocketDir(dir string, runAs *ids) (string, error) {
	if len(filepath.Join(dir, ".s.PGSQL.65535")) <= 107 {
		return dir, nil
	}
	sock, err := sharedDir("/tmp", "pgsock")
	if err != nil {
		return "", fmt.Errorf("create socket directory: %w", err)
	}
	if runAs != nil {
		if err := os.Chown(sock, int(runAs.uid), int(runAs.gid)); err != nil {
			return "", fmt.Errorf("give %s to the postgres user: %w", sock, err)
		}
	}
	return sock, nil
}

// pgBinDir is $PG_BIN or the bin directory of the highest PostgreSQL version
// under /usr/lib/postgresql (the Debian layout).
func pgBinDir() (string, error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
			return "", fmt.Errorf("PG_BIN: %w", err)
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("no /usr/lib/postgresql/*/bin/postgres")
	}
	version := func(d string) float64 { // "15", "9.6"
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	return found[0], nil
}

func postgresUser() (*ids, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, so PostgreSQL must run as the postgres user "+
			"(created by the postgresql package), but: %w; or set TEST_DATABASE_URL", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has non-numeric uid/gid %q/%q", u.Uid, u.Gid)
	}
	return &ids{uid: uint32(uid), gid: uint32(gid)}, nil
}

// runCtx runs cmd from the spawner thread (see spawn) and kills it when ctx ends.
func runCtx(ctx context.Context, cmd *exec.Cmd) error {
	if err := spawn(cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = signalGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return ctx.Err()
	}
}

var dbSeq atomic.Int64

// pgDatabaseName makes a valid, unique database name that still says which
// test it belongs to. The process id keeps names apart when several test
// binaries share one server through TEST_DATABASE_URL.
func pgDatabaseName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := fmt.Sprintf("t%d_%d_%s", os.Getpid(), dbSeq.Add(1), b.String())
	if len(name) > 63 { // PostgreSQL's identifier limit
		name = name[:63]
	}
	return name
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
