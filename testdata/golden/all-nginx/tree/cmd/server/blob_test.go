package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

func fileCall(t *testing.T, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type readyBody struct {
	Status  string   `json:"status"`
	Failing []string `json:"failing"`
}

func readyz(t *testing.T, in *instance) (int, readyBody) {
	t.Helper()
	resp, body := get(t, in.URL+"/readyz")
	var rb readyBody
	if err := json.Unmarshal([]byte(body), &rb); err != nil {
		t.Fatalf("/readyz: %v: %s", err, body)
	}
	return resp.StatusCode, rb
}

func TestFilesInLocalDir(t *testing.T) {
	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s", "MAX_FILE_BYTES": "100"})
	if resp, body := fileCall(t, "PUT", in.URL+"/api/files/a/b.txt", []byte("hello")); resp.StatusCode != 201 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	if resp, body := fileCall(t, "GET", in.URL+"/api/files/a/b.txt", nil); resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	if resp, _ := fileCall(t, "PUT", in.URL+"/api/files/big", make([]byte, 101)); resp.StatusCode != 413 {
		t.Fatalf("PUT over MAX_FILE_BYTES: %d", resp.StatusCode)
	}
	if status, rb := readyz(t, in); status != 200 || rb.Status != "ok" {
		t.Fatalf("/readyz: %d %+v", status, rb)
	}
}

func s3Env(srv *testsupport.MinIOServer) map[string]string {
	return map[string]string{
		"SHUTDOWN_DRAIN_DELAY": "0s",
		"S3_ENDPOINT":          srv.Endpoint,
		"S3_ACCESS_KEY":        srv.AccessKey,
		"S3_SECRET_KEY":        srv.SecretKey,
	}
}

// TestFilesWhenMinIOIsDown: with MinIO stopped the file routes answer 503
// promptly, readiness reports "blob" but stays 200, the other routes keep
// working, and all is back when MinIO is.
func TestFilesWhenMinIOIsDown(t *testing.T) {
	srv := testsupport.MinIO(t)
	in := start(t, s3Env(srv))
	data := make([]byte, 3<<20)
	rand.Read(data)
	if resp, body := fileCall(t, "PUT", in.URL+"/api/files/kept.bin", data); resp.StatusCode != 201 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}

	srv.Stop(t)
	for _, method := range []string{"GET", "PUT", "DELETE"} {
		start := time.Now()
		resp, body := fileCall(t, method, in.URL+"/api/files/kept.bin", data)
		took := time.Since(start)
		t.Logf("MinIO down: %s -> %d after %v", method, resp.StatusCode, took.Round(time.Millisecond))
		if resp.StatusCode != 503 || !strings.Contains(string(body), `"unavailable"`) {
			t.Errorf("%s with MinIO down: %d %s, want 503", method, resp.StatusCode, body)
		}
		if took > 3*time.Second {
			t.Errorf("%s with MinIO down took %v, want under 3s", method, took)
		}
	}
	status, rb := readyz(t, in)
	if status != 200 || rb.Status != "degraded" || strings.Join(rb.Failing, ",") != "blob" {
		t.Errorf("/readyz with MinIO down: %d %+v, want 200 degraded failing blob", status, rb)
	}
	if resp, body := get(t, in.URL+"/api/instance"); resp.StatusCode != 200 {
		t.Errorf("/api/instance with MinIO down: %d %s", resp.StatusCode, body)
	}

	srv.Start(t)
	resp, body := fileCall(t, "GET", in.URL+"/api/files/kept.bin", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET after MinIO is back: %d, %d bytes", resp.StatusCode, len(body))
	}
	if status, rb := readyz(t, in); status != 200 || rb.Status != "ok" {
		t.Errorf("/readyz after MinIO is back: %d %+v", status, rb)
	}
}

// TestStartWhileMinIOIsDown: an instance starts without MinIO (serving
// 503 on files) and creates the bucket once MinIO is there.
func TestStartWhileMinIOIsDown(t *testing.T) {
	defer func(d time.Duration) { bucketWait = d }(bucketWait)
	bucketWait = 500 * time.Millisecond
	srv := testsupport.MinIO(t)
	srv.Stop(t)
	in := start(t, s3Env(srv))
	if resp, _ := fileCall(t, "PUT", in.URL+"/api/files/k", []byte("x")); resp.StatusCode != 503 {
		t.Fatalf("PUT with MinIO down: %d, want 503", resp.StatusCode)
	}
	srv.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := fileCall(t, "PUT", in.URL+"/api/files/k", []byte("x"))
		if resp.StatusCode == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT 10s after MinIO started: %d %s", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The README's file example works as written, line by line in one
// directory, against a running instance: it creates the file it uploads,
// downloads it back, and once the file is deleted the download fails (curl
// --fail) instead of writing the JSON error into the file.
func TestReadmeFileExample(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var example []string
	for _, block := range strings.Split(string(readme), "\n\n") {
		if strings.HasPrefix(block, "    ") && strings.Contains(block, "/api/files/") {
			for _, line := range strings.Split(block, "\n") {
				example = append(example, strings.TrimPrefix(line, "    "))
			}
			break
		}
	}
	if len(example) == 0 {
		t.Fatal("README.md has no example of /api/files/")
	}

	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s"})
	dir := t.TempDir()
	sh := func(line string) (string, error) {
		cmd := exec.Command("sh", "-c", strings.ReplaceAll(line, "localhost:8080", strings.TrimPrefix(in.URL, "http://")))
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	upload, download := regexp.MustCompile(`--data-binary @(\S+)`), regexp.MustCompile(` -o (\S+)`)
	var uploaded, downloadLine, downloaded string
	for _, line := range example {
		if m := upload.FindStringSubmatch(line); m != nil {
			uploaded = m[1]
			if fi, err := os.Stat(filepath.Join(dir, uploaded)); err != nil || fi.Size() == 0 {
				t.Errorf("%q uploads %s, which the example has not written", line, uploaded)
			}
		}
		if m := download.FindStringSubmatch(line); m != nil {
			downloadLine, downloaded = line, m[1]
		}
		if out, err := sh(line); err != nil {
			t.Errorf("%q: %v\n%s", line, err, out)
		}
	}
	if uploaded == "" || downloaded == "" {
		t.Fatalf("the example does not upload a file and download it with -o:\n%s", strings.Join(example, "\n"))
	}
	sent, _ := os.ReadFile(filepath.Join(dir, uploaded))
	got, _ := os.ReadFile(filepath.Join(dir, downloaded))
	if !bytes.Equal(got, sent) {
		t.Errorf("downloaded %s = %q, want %q as uploaded", downloaded, got, sent)
	}

	// The file is deleted now: the download must fail, and not put the
	// error in place of the file.
	os.Remove(filepath.Join(dir, downloaded))
	if out, err := sh(downloadLine); err == nil {
		t.Errorf("%q of a deleted file succeeded:\n%s", downloadLine, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, downloaded)); err == nil && len(b) > 0 {
		t.Errorf("%q of a deleted file wrote %q into %s", downloadLine, b, downloaded)
	}
}
