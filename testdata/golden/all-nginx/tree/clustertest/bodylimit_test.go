package clustertest

import (
	"bytes"
	"net/http"
	"testing"
)

// The load balancer refuses a body over the app's limit itself (413, before
// any byte reaches an instance) and lets one at the limit through: its
// limits are the MAX_BODY_BYTES (and, in blob_test.go, MAX_FILE_BYTES) that
// docker-compose.yml gives the app. (db: it posts notes.)
func TestBodyLimit(t *testing.T) {
	c := startCluster(t, nil)
	limit := c.envInt(t, "MAX_BODY_BYTES")

	// At the limit: the app reads it all and answers 400 (the note's body
	// is longer than a note may be), not the load balancer. The body must be
	// one the app reads to the end: an app that answers without reading a
	// large body closes the connection under the load balancer's feet.
	note := []byte(`{"title":"too long","body":"`)
	note = append(note, bytes.Repeat([]byte("x"), int(limit)-len(note)-2)...)
	note = append(note, `"}`...)
	r, err := c.do("POST", "/api/notes", note, map[string]string{"Content-Type": "application/json"})
	if err != nil {
		t.Fatal(err)
	}
	if r.instance == "" || r.status != http.StatusBadRequest {
		t.Errorf("a note of MAX_BODY_BYTES=%d bytes: got %s, want 400 from an instance", limit, r)
	}
	// One byte over: the load balancer answers 413, no instance sees it.
	r = c.sendBody(t, "POST", "/api/notes", limit+1)
	if r.status != http.StatusRequestEntityTooLarge || r.instance != "" {
		t.Errorf("a body of MAX_BODY_BYTES+1: got %s, want 413 from the load balancer", r)
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	r.decode(t, &e)
	if e.Error.Code != "too_large" {
		t.Errorf("the load balancer's 413 is not the app's JSON error shape: %s", r.body)
	}
}
