// Package testsupport starts real servers as child processes for
// integration tests: local binaries, free loopback ports, temporary
// directories, readiness checks instead of sleeps. The servers of this
// project: PostgreSQL Redis MinIO nginx HAProxy.
//
// Use it from TestMain so that shared servers are stopped at the end:
//
//	func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }
//
// A missing binary skips the test with a message naming what to install,
// except when the CI environment variable is set: then the test fails, so
// that a skipped integration test never passes silently in CI.
//
// Environment variables:
//
//	CI                  non-empty: a missing binary fails the test instead of skipping it
//	TEST_DATABASE_URL   admin URL of a running PostgreSQL; Postgres creates its databases there
//	PG_BIN              directory with initdb, postgres, pg_isready and psql
//	                    (default: the highest /usr/lib/postgresql/*/bin)
//	TEST_REDIS_URL      URL of a running Redis, returned by Redis instead of a new server
//	TEST_S3_ENDPOINT    host:port (or http(s) URL) of a running S3 server, with
//	TEST_S3_ACCESS_KEY  its credentials; returned by MinIO instead of a new server
//	TEST_S3_SECRET_KEY
//	MINIO_BIN           the minio binary (default: minio in PATH, then the one
//	                    scripts/install-servers.sh builds into the user cache directory)
//
// The package uses only the standard library because it is copied verbatim
// into generated projects.
package testsupport

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Main runs the tests, then stops the servers shared by the test binary
// (PostgreSQL) and removes their directories. Use it in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }
//
// If a test panics, the process dies without running this cleanup; the
// servers still die with it (Pdeathsig on Linux, SIGKILL), and the next Main
// removes directories left behind by test binaries that no longer run.
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	sweepStaleDirs()
	defer stopShared()
	return m.Run()
}

// shared holds what must be undone when the test binary ends.
var shared struct {
	mu    sync.Mutex
	main  bool     // Main is in use; shared servers need it to be stopped
	stops []func() // run in reverse order by stopShared
}

func onExit(f func()) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.stops = append(shared.stops, f)
}

func stopShared() {
	shared.mu.Lock()
	stops := shared.stops
	shared.stops = nil
	shared.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

// requireMain fails a test that wants a shared server without Main: nothing
// would stop that server, and it would outlive the test binary's cleanup.
func requireMain(t testing.TB, what string) {
	t.Helper()
	shared.mu.Lock()
	ok := shared.main
	shared.mu.Unlock()
	if !ok {
		t.Fatalf("testsupport.%s needs a TestMain that calls testsupport.Main (it stops the shared server): "+
			"func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }", what)
	}
}

const sharedDirPrefix = "testsupport-shared-"

// sharedDir creates a directory for a shared server, with a file naming the
// owning process so a later run can tell that it was left behind.
func sharedDir(parent, kind string) (string, error) {
	dir, err := os.MkdirTemp(parent, sharedDirPrefix+kind+"-")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	onExit(func() { os.RemoveAll(dir) })
	return dir, nil
}

// sweepStaleDirs removes shared directories whose owning process is gone
// (it panicked or was killed). Directories of live test binaries - other
// packages testing in parallel - are left alone.
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), sharedDirPrefix+"*"))
	if os.TempDir() != "/tmp" { // where short socket directories go
		more, _ := filepath.Glob(filepath.Join("/tmp", sharedDirPrefix+"*"))
		dirs = append(dirs, more...)
	}
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue // being created right now, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.RemoveAll(dir)
	}
}
