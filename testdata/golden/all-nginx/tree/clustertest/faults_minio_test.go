package clustertest

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// Hazard row "files written to the local disk", under a fault: MinIO stops.
// The file routes answer 503 on every instance while everything else keeps
// working (the blob check is not critical, so no instance leaves the
// rotation); when MinIO is back, files work again by themselves, and every
// file acknowledged before the outage is still there, byte for byte.
func TestFaultMinIO(t *testing.T) {
	c := startCluster(t, nil)

	before := []byte("acknowledged before the outage")
	c.must(t, 201, "PUT", "/api/files/faults/before.txt", before, nil)

	c.minio.Stop(t)
	for name, r := range c.onEveryInstance(t, "GET", "/api/files/faults/before.txt", nil) {
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("GET a file through %s while MinIO is down: %s, want 503", name, r)
		}
	}
	for name, r := range c.onEveryInstance(t, "PUT", "/api/files/faults/during.txt", []byte("refused")) {
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("PUT a file through %s while MinIO is down: %s, want 503", name, r)
		}
	}
	// The other routes, on every instance.
	c.onEveryInstance(t, "GET", "/api/instance", nil)
	note := c.createNote(t, "faults", "written while MinIO was down")
	c.wantBody(t, note, "written while MinIO was down")

	c.minio.Start(t)
	restarted := time.Now()
	// Every instance, asked directly: each finds MinIO again on its own
	// (its client reconnects), not necessarily at the same moment.
	if !eventually(30*time.Second, func() bool {
		for _, a := range c.apps {
			r, err := c.doAt(instanceURL(a), "GET", "/api/files/faults/before.txt", nil, nil)
			if err != nil || r.status != 200 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("files still unavailable on some instance 30s after MinIO came back")
	}
	record("files work again after MinIO restarted in", time.Since(restarted).Round(time.Millisecond))
	for name, r := range c.onEveryInstance(t, "GET", "/api/files/faults/before.txt", nil) {
		if r.status != 200 || !bytes.Equal(r.body, before) {
			t.Errorf("file acknowledged before the outage, through %s: %s", name, r)
		}
	}
	after := []byte("written after the outage")
	c.must(t, 201, "PUT", "/api/files/faults/after.txt", after, nil)
	for name, r := range c.onEveryInstance(t, "GET", "/api/files/faults/after.txt", nil) {
		if r.status != 200 || !bytes.Equal(r.body, after) {
			t.Errorf("file written after the outage, through %s: %s", name, r)
		}
	}
}
