package testsupport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MinIOVersion is the MinIO module version that scripts/install-servers.sh
// installs with `go install github.com/minio/minio@MinIOVersion`, into
// <user cache dir>/scaffold/minio/<MinIOVersion>/minio where MinIO looks for it.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIOServer is a MinIO server with the credentials of its root user.
type MinIOServer struct {
	Server
	AccessKey string
	SecretKey string
	Endpoint  string // host:port, without scheme (URL has it)
}

// MinIO starts a MinIO server for this test only (one drive in a temporary
// directory, random root credentials) and kills it when the test ends.
// Stop and Start keep the data, so writes acknowledged before a Stop must
// still be there after Start.
//
// The binary is $MINIO_BIN, else minio in PATH, else the one installed by
// scripts/install-servers.sh. When TEST_S3_ENDPOINT (host:port or an
// http(s) URL), TEST_S3_ACCESS_KEY and TEST_S3_SECRET_KEY are set, that
// server is returned instead, and Stop, Kill and Start skip the test.
func MinIO(t testing.TB) *MinIOServer {
	t.Helper()
	if ep := os.Getenv("TEST_S3_ENDPOINT"); ep != "" {
		u := ep
		if !strings.Contains(ep, "://") {
			u = "http://" + ep
		}
		access, secret := os.Getenv("TEST_S3_ACCESS_KEY"), os.Getenv("TEST_S3_SECRET_KEY")
		if access == "" || secret == "" {
			t.Fatalf("TEST_S3_ENDPOINT is set but TEST_S3_ACCESS_KEY or TEST_S3_SECRET_KEY is not")
		}
		s := externalServer(t, "minio", "TEST_S3_ENDPOINT", u)
		return &MinIOServer{Server: *s, Endpoint: s.Addr, AccessKey: access, SecretKey: secret}
	}
	bin := minioBinary()
	if bin == "" {
		missing(t, "minio", "install it with `sh scripts/install-servers.sh` (MinIO "+MinIOVersion+
			" into "+minioCachePath()+"), set MINIO_BIN, or set TEST_S3_ENDPOINT, TEST_S3_ACCESS_KEY and TEST_S3_SECRET_KEY")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	access, secret := "test"+randomHex(t, 6), randomHex(t, 20)
	out := newRingBuffer(64 << 10)
	srv := startPerTest(t, func(port int) *Server {
		addr := loopback(port)
		consoleAddr := loopback(FreePort(t)) // the console is off, but MinIO still binds it
		return &Server{Addr: addr, URL: "http://" + addr, control: &control{
			name:    "minio",
			stopSig: syscall.SIGTERM,
			timeout: 60 * time.Second,
			out:     out,
			command: func() *exec.Cmd {
				cmd := exec.Command(bin, "server", data, "--quiet",
					"--address", addr, "--console-address", consoleAddr,
					"--certs-dir", filepath.Join(dir, "certs")) // not ~/.minio/certs
				cmd.Dir = dir
				cmd.Env = append(os.Environ(),
					"MINIO_ROOT_USER="+access,
					"MINIO_ROOT_PASSWORD="+secret,
					"MINIO_BROWSER=off",
					"MINIO_UPDATE=off",
					// CI/CD mode: accept a drive on the root disk (the temp
					// dir usually is) and size memory for a small machine.
					"MINIO_CI_CD=1",
					// MinIO creates ~/.minio whatever --certs-dir says.
					"HOME="+dir,
				)
				return cmd
			},
			ready: func(ctx context.Context) error { return minioReady(ctx, addr) },
		}}
	})
	return &MinIOServer{Server: *srv, AccessKey: access, SecretKey: secret, Endpoint: srv.Addr}
}

func minioReady(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/minio/health/ready", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/minio/health/ready: %s", resp.Status)
	}
	return nil
}

func minioBinary() string {
	if p := os.Getenv("MINIO_BIN"); p != "" {
		return p
	}
	if p, ok := lookBinary("minio"); ok {
		return p
	}
	if p := minioCachePath(); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// minioCachePath is where scripts/install-servers.sh puts the pinned MinIO:
// ${XDG_CACHE_HOME:-$HOME/.cache}/scaffold/minio/<version>/minio on Linux.
func minioCachePath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "scaffold", "minio", MinIOVersion, "minio")
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random credentials: %v", err)
	}
	return hex.EncodeToString(b)
}
