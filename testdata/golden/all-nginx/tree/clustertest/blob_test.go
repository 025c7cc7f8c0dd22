package clustertest

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"testing"
)

// Hazard: files written to the local disk. Files live in S3-compatible
// storage (MinIO here): a file put through one instance is read back,
// byte for byte and with its content type, through every other instance.
func TestSharedBlobs(t *testing.T) {
	c := startCluster(t, nil)

	data := make([]byte, 256<<10)
	_, _ = rand.Read(data)
	const path, contentType = "/api/files/clustertest/shared.bin", "application/x-clustertest"
	put := c.must(t, 201, "PUT", path, data, map[string]string{"Content-Type": contentType})
	for name, r := range c.onEveryInstance(t, "GET", path, nil) {
		if r.status != http.StatusOK || !bytes.Equal(r.body, data) {
			t.Errorf("file put through %s, read through %s: %d, %d bytes, equal %v", put.instance, name, r.status, len(r.body), bytes.Equal(r.body, data))
		}
		if got := r.header.Get("Content-Type"); got != contentType {
			t.Errorf("read through %s: Content-Type %q, want %q", name, got, contentType)
		}
	}

	// Deleted through one instance: gone on all.
	c.must(t, 204, "DELETE", path, nil, nil)
	for name, r := range c.onEveryInstance(t, "GET", path, nil) {
		if r.status != http.StatusNotFound {
			t.Errorf("after the delete, %s answered %s", name, r)
		}
	}

	// The load balancer's limit for /api/files/ is MAX_FILE_BYTES: one byte
	// over is refused before it is sent; at the limit it reaches the app.
	limit := c.envInt(t, "MAX_FILE_BYTES")
	if r := c.sendBody(t, "PUT", "/api/files/clustertest/too-large.bin", limit+1); r.status != http.StatusRequestEntityTooLarge || r.instance != "" {
		t.Errorf("a file of MAX_FILE_BYTES+1: got %s, want 413 from the load balancer", r)
	}
	if r := c.sendBody(t, "PUT", "/api/files/clustertest/at-limit.bin", limit); r.status != http.StatusCreated {
		t.Errorf("a file of MAX_FILE_BYTES=%d: got %s, want 201", limit, r)
	}
}
