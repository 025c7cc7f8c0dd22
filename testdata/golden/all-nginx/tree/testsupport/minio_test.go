package testsupport_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

func TestMinIO(t *testing.T) {
	began := time.Now()
	m := testsupport.MinIO(t)
	t.Logf("MinIO started in %v", time.Since(began).Round(time.Millisecond))
	if m.Endpoint != m.Addr || m.URL != "http://"+m.Endpoint || m.AccessKey == "" || len(m.SecretKey) < 8 {
		t.Fatalf("bad server description: %+v", m)
	}
	minioReady(t, m.URL)

	m.Stop(t)
	mustRefuse(t, m.Endpoint)
	began = time.Now()
	m.Start(t)
	t.Logf("MinIO restarted in %v", time.Since(began).Round(time.Millisecond))
	minioReady(t, m.URL)
}

func TestExternalMinIO(t *testing.T) {
	t.Setenv("TEST_S3_ENDPOINT", "127.0.0.1:1")
	t.Setenv("TEST_S3_ACCESS_KEY", "")
	t.Setenv("TEST_S3_SECRET_KEY", "")
	rec := callWith(t, func(tb testing.TB) { testsupport.MinIO(tb) })
	if !strings.Contains(rec.failed, "TEST_S3_ACCESS_KEY") {
		t.Fatalf("external MinIO without keys: failed %q, want a failure naming the missing variable", rec.failed)
	}
	t.Setenv("TEST_S3_ACCESS_KEY", "ak")
	t.Setenv("TEST_S3_SECRET_KEY", "sk")
	m := testsupport.MinIO(t)
	if m.Endpoint != "127.0.0.1:1" || m.URL != "http://127.0.0.1:1" || m.AccessKey != "ak" || m.SecretKey != "sk" {
		t.Fatalf("external MinIO = %+v", m)
	}
}

// The install script must install the MinIO version the package looks for.
func TestInstallScriptPinsMinIOVersion(t *testing.T) {
	script := filepath.Join(moduleRoot(t), "scripts", "install-servers.sh")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "MINIO_VERSION="+testsupport.MinIOVersion+"\n") {
		t.Fatalf("%s does not set MINIO_VERSION=%s", script, testsupport.MinIOVersion)
	}
}

func minioReady(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/minio/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health/ready: %s", resp.Status)
	}
}
