package clustertest

import (
	"fmt"
	"testing"
)

// Hazard: an in-memory cache diverges between instances. The cache has a
// shared Redis tier and a small local tier in each instance, which every
// instance drops when any instance writes. A note read through one instance
// is a hit on the others; after an update returned, no instance serves the
// old body; after a delete, none serves the note.
func TestSharedCache(t *testing.T) {
	c := startCluster(t, nil)

	created := c.must(t, 201, "POST", "/api/notes", []byte(`{"title":"cached","body":"version 0"}`), nil)
	var note struct {
		ID    int64  `json:"id"`
		Title string `json:"title"`
		Body  string `json:"body"`
	}
	created.decode(t, &note)
	path := fmt.Sprintf("/api/notes/%d", note.ID)

	// The first read loads the database; every other instance then finds
	// the note in the shared tier, and the first one in its local tier.
	first := c.must(t, 200, "GET", path, nil, nil)
	if got := first.header.Get("X-Cache"); got != "miss" {
		t.Errorf("first read of a new note on %s: X-Cache %q, want miss", first.instance, got)
	}
	var others []string
	for _, a := range c.apps {
		if a.name != first.instance {
			others = append(others, a.name)
		}
	}
	for name, r := range c.onInstances(t, others, "GET", path, nil) {
		if got := r.header.Get("X-Cache"); got != "redis" {
			t.Errorf("first read on %s after %s loaded the note: X-Cache %q, want redis (the shared tier)", name, first.instance, got)
		}
	}
	for name, r := range c.onEveryInstance(t, "GET", path, nil) {
		if got := r.header.Get("X-Cache"); got != "local" && got != "redis" {
			t.Errorf("read on %s of a cached note: X-Cache %q, want local or redis", name, got)
		}
	}

	// Updates: right after each PUT returned, every instance - whose local
	// tier held the old body a moment ago - must serve the new one.
	stale, reads := 0, 0
	for v := 1; v <= 5; v++ {
		body := fmt.Sprintf("version %d", v)
		c.must(t, 200, "PUT", path, fmt.Appendf(nil, `{"title":"cached","body":%q}`, body), nil)
		for round := 0; round < 2; round++ {
			for name, r := range c.onEveryInstance(t, "GET", path, nil) {
				reads++
				var got struct {
					Body string `json:"body"`
				}
				r.decode(t, &got)
				if got.Body != body {
					stale++
					t.Errorf("after the update to %q returned, %s served %q (X-Cache %s)", body, name, got.Body, r.header.Get("X-Cache"))
				}
			}
		}
	}
	record("cache: stale reads after an update", fmt.Sprintf("%d of %d", stale, reads))

	// Delete: no instance serves the note any more.
	c.must(t, 204, "DELETE", path, nil, nil)
	for name, r := range c.onEveryInstance(t, "GET", path, nil) {
		if r.status != 404 {
			t.Errorf("after the delete returned, %s answered %s", name, r)
		}
	}
}
