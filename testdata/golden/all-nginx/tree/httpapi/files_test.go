package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/blob"
)

const (
	testMaxBody = 1 << 10 // MAX_BODY_BYTES: far below the file limit
	testMaxFile = 2 << 20 // MAX_FILE_BYTES
)

func newFilesServer(t *testing.T, store blob.Store) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Options{InstanceID: "test", MaxBodyBytes: testMaxBody, Files: store, MaxFileBytes: testMaxFile}))
	t.Cleanup(srv.Close)
	return srv
}

func newDirStore(t *testing.T) *blob.Dir {
	t.Helper()
	d, err := blob.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// fileRequest sends body (nil for none); size -1 sends it chunked.
func fileRequest(t *testing.T, method, url string, body io.Reader, size int64, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = size
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp, b
}

func wantFileError(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var e errorBody
	if resp.StatusCode != status || json.Unmarshal(body, &e) != nil || e.Error.Code != code || e.RequestID == "" {
		t.Errorf("%s: %d %s, want %d with code %q", what, resp.StatusCode, body, status, code)
	}
}

func randomData(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// chunked hides the length of a reader so the client sends it chunked.
type chunked struct{ io.Reader }

func TestFilesRoundTrip(t *testing.T) {
	srv := newFilesServer(t, newDirStore(t))
	url := srv.URL + "/api/files/docs/report%20v1.pdf"
	// Larger than MAX_BODY_BYTES: the file routes have their own limit.
	data := randomData(t, 1<<20+12345)

	resp, body := fileRequest(t, "PUT", url, bytes.NewReader(data), int64(len(data)), "Content-Type", "application/pdf")
	var info fileInfo
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &info) != nil ||
		info != (fileInfo{Key: "docs/report v1.pdf", Size: int64(len(data)), ContentType: "application/pdf"}) {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}

	resp, body = fileRequest(t, "GET", url, nil, 0)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d, %d bytes, want %d identical bytes", resp.StatusCode, len(body), len(data))
	}
	h := resp.Header
	if h.Get("Content-Type") != "application/pdf" || h.Get("Content-Length") != fmt.Sprint(len(data)) ||
		h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET headers: %v", h)
	}
	if lm, err := http.ParseTime(h.Get("Last-Modified")); err != nil || time.Since(lm) > time.Minute {
		t.Errorf("Last-Modified %q: %v", h.Get("Last-Modified"), err)
	}

	// Replaced by a chunked upload without a Content-Type.
	data2 := []byte("second version")
	resp, body = fileRequest(t, "PUT", url, chunked{bytes.NewReader(data2)}, -1)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &info) != nil ||
		info.Size != int64(len(data2)) || info.ContentType != blob.DefaultContentType {
		t.Fatalf("chunked PUT: %d %s", resp.StatusCode, body)
	}
	if resp, body = fileRequest(t, "GET", url, nil, 0); !bytes.Equal(body, data2) {
		t.Fatalf("GET after replace: %d %q", resp.StatusCode, body)
	}

	resp, _ = fileRequest(t, "DELETE", url, nil, 0)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	resp, body = fileRequest(t, "GET", url, nil, 0)
	wantFileError(t, "GET after DELETE", resp, body, http.StatusNotFound, "not_found")
	resp, body = fileRequest(t, "DELETE", url, nil, 0)
	wantFileError(t, "second DELETE", resp, body, http.StatusNotFound, "not_found")
}

func TestFilesTooLarge(t *testing.T) {
	store := newDirStore(t)
	srv := newFilesServer(t, store)
	url := srv.URL + "/api/files/big"
	over := randomData(t, testMaxFile+1)

	// A declared length over the limit is refused before the body is read.
	resp, body := fileRequest(t, "PUT", url, bytes.NewReader(over), int64(len(over)))
	wantFileError(t, "PUT with Content-Length over the limit", resp, body, http.StatusRequestEntityTooLarge, "too_large")
	// A chunked body is cut when it passes the limit.
	resp, body = fileRequest(t, "PUT", url, chunked{bytes.NewReader(over)}, -1)
	wantFileError(t, "chunked PUT over the limit", resp, body, http.StatusRequestEntityTooLarge, "too_large")
	if _, err := store.Get(context.Background(), "big"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("a refused upload was stored: %v", err)
	}

	// Exactly the limit is fine, both ways.
	at := over[:testMaxFile]
	if resp, body := fileRequest(t, "PUT", url, bytes.NewReader(at), int64(len(at))); resp.StatusCode != http.StatusCreated {
		t.Errorf("PUT of exactly the limit: %d %s", resp.StatusCode, body)
	}
	if resp, body := fileRequest(t, "PUT", url, chunked{bytes.NewReader(at)}, -1); resp.StatusCode != http.StatusCreated {
		t.Errorf("chunked PUT of exactly the limit: %d %s", resp.StatusCode, body)
	}
}

func TestFilesBadRequests(t *testing.T) {
	store := newDirStore(t)
	srv := newFilesServer(t, store)
	for _, path := range []string{
		"/api/files/",                            // empty key
		"/api/files/..%2Fx",                      // .. escaped so the mux does not clean it
		"/api/files/%2E%2E/x",                    //
		"/api/files/a/%2E%2E/%2E%2E/x",           //
		"/api/files/%2Fetc%2Fpasswd",             // absolute
		"/api/files/a%5Cb",                       // backslash
		"/api/files/a%00b",                       // NUL
		"/api/files/a%0Ab",                       // newline
		"/api/files/" + strings.Repeat("k", 513), // too long
		"/api/files/dir/",                        // trailing slash
	} {
		for _, method := range []string{"PUT", "GET", "DELETE"} {
			resp, body := fileRequest(t, method, srv.URL+path, strings.NewReader("x"), 1)
			wantFileError(t, method+" "+path, resp, body, http.StatusBadRequest, "invalid_key")
		}
	}
	// A literal ".." is cleaned by the router, which redirects away from
	// /api/files: it never reaches a file handler nor the store.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("PUT", srv.URL+"/api/files/a/../../x", strings.NewReader("x"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 300 || resp.StatusCode >= 400 || strings.HasPrefix(resp.Header.Get("Location"), "/api/files/") {
		t.Errorf("PUT /api/files/a/../../x: %d Location %q, want a redirect out of /api/files", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp, body := fileRequest(t, "PUT", srv.URL+"/api/files/ok", strings.NewReader("x"), 1, "Content-Type", "not a type")
	wantFileError(t, "bad Content-Type", resp, body, http.StatusBadRequest, "invalid_content_type")

	// A file and a folder of the same name (local directory only).
	fileRequest(t, "PUT", srv.URL+"/api/files/a/b", strings.NewReader("x"), 1)
	resp, body = fileRequest(t, "PUT", srv.URL+"/api/files/a", strings.NewReader("x"), 1)
	wantFileError(t, "PUT a when a/b exists", resp, body, http.StatusConflict, "conflict")
}

// downStore is a store whose backend cannot be reached.
type downStore struct{}

func (downStore) Put(context.Context, string, io.Reader, int64, string) error {
	return fmt.Errorf("%w: dial tcp 10.0.0.9:9000: connection refused", blob.ErrUnavailable)
}
func (downStore) Get(context.Context, string) (blob.Object, error) {
	return blob.Object{}, fmt.Errorf("%w: dial tcp 10.0.0.9:9000: connection refused", blob.ErrUnavailable)
}
func (downStore) Delete(context.Context, string) error {
	return fmt.Errorf("%w: dial tcp 10.0.0.9:9000: connection refused", blob.ErrUnavailable)
}
func (downStore) Check(context.Context) error { return blob.ErrUnavailable }

func TestFilesUnavailable(t *testing.T) {
	srv := newFilesServer(t, downStore{})
	for _, method := range []string{"PUT", "GET", "DELETE"} {
		resp, body := fileRequest(t, method, srv.URL+"/api/files/k", strings.NewReader("x"), 1)
		wantFileError(t, method, resp, body, http.StatusServiceUnavailable, "unavailable")
		if resp.Header.Get("Retry-After") == "" || strings.Contains(string(body), "10.0.0.9") {
			t.Errorf("%s: Retry-After %q, body %s (must not show the store's address)", method, resp.Header.Get("Retry-After"), body)
		}
	}
}

func TestFilesRoutesNeedAStore(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	resp, body := fileRequest(t, "GET", srv.URL+"/api/files/k", nil, 0)
	wantFileError(t, "GET without a store", resp, body, http.StatusNotFound, "not_found")
}

// A file transfer slower than the server's whole-request timeouts goes on
// while bytes move, and one that stalls is cut: here the server's
// ReadTimeout and WriteTimeout are 300ms, the idle timeout 300ms, and each
// transfer takes well over a second. (Before, both slow transfers were cut
// by the server's timeouts, as a 100 MiB file slower than 1.75 MB/s was by
// the 60s ones.)
func TestFilesSlowButMoving(t *testing.T) {
	store := newDirStore(t)
	ts := httptest.NewUnstartedServer(New(Options{InstanceID: "test", MaxBodyBytes: testMaxBody,
		Files: store, MaxFileBytes: testMaxFile, FileIdleTimeout: 300 * time.Millisecond}))
	ts.Config.ReadTimeout, ts.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	ts.Start()
	t.Cleanup(ts.Close)

	// send writes n chunks of 16 KiB, pause between each, then stops (or
	// stalls for stall before stopping).
	send := func(n int, pause, stall time.Duration) (*http.Response, error) {
		pr, pw := io.Pipe()
		go func() {
			for range n {
				if _, err := pw.Write(bytes.Repeat([]byte("x"), 16<<10)); err != nil {
					return
				}
				time.Sleep(pause)
			}
			time.Sleep(stall)
			pw.Close()
		}()
		req, _ := http.NewRequest("PUT", ts.URL+"/api/files/slow.bin", pr)
		return http.DefaultClient.Do(req)
	}
	start := time.Now()
	resp, err := send(15, 100*time.Millisecond, 0)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("slow upload (15 chunks, 100ms apart): %v %v", resp, err)
	}
	resp.Body.Close()
	t.Logf("slow upload took %v", time.Since(start).Round(time.Millisecond))

	if resp, err := send(1, 0, time.Second); err == nil && resp.StatusCode < 400 {
		t.Errorf("an upload that stalled for 1s (idle timeout 300ms) got %d", resp.StatusCode)
	}

	// A slow download: 2 MiB read 64 KiB every 40ms (well over a second).
	data := bytes.Repeat([]byte("0123456789abcdef"), 128<<10)
	if err := store.Put(context.Background(), "big.bin", bytes.NewReader(data), int64(len(data)), ""); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(ts.URL + "/api/files/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []byte
	buf := make([]byte, 64<<10)
	start = time.Now()
	for {
		n, err := io.ReadFull(resp.Body, buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
		time.Sleep(40 * time.Millisecond)
	}
	t.Logf("slow download of %d bytes took %v", len(got), time.Since(start).Round(time.Millisecond))
	if !bytes.Equal(got, data) {
		t.Errorf("slow download: got %d bytes, want %d", len(got), len(data))
	}
}
