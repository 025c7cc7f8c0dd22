package clustertest

import (
	"testing"
	"time"
)

// Hazard row "in-memory cache diverges", under a fault: Redis stops. Notes
// are still served (from the database); writes of notes are refused before
// they commit (503: nothing written, so no instance can serve a body older
// than the last acknowledged write when Redis comes back); when Redis is
// back, the cache and the writes work again by themselves.
func TestFaultRedis(t *testing.T) {
	c := startCluster(t, nil)

	note := c.createNote(t, "faults", "before the outage")
	c.onEveryInstance(t, "GET", note, nil) // every local tier holds it now

	c.redis.Stop(t)
	stopped := time.Now()
	c.wantBody(t, note, "before the outage")
	c.must(t, 503, "PUT", note, []byte(`{"title":"faults","body":"while Redis was down"}`), nil)
	c.must(t, 503, "POST", "/api/notes", []byte(`{"title":"faults","body":"created while Redis was down"}`), nil)
	c.wantBody(t, note, "before the outage")
	t.Logf("Redis down for %v: notes served, writes refused fast through every instance", time.Since(stopped).Round(time.Millisecond))

	c.redis.Start(t)
	restarted := time.Now()
	if !eventually(20*time.Second, func() bool {
		r, err := c.do("GET", note, nil, nil)
		return err == nil && r.status == 200 && (r.header.Get("X-Cache") == "redis" || r.header.Get("X-Cache") == "local")
	}) {
		t.Fatalf("no cache hit within 20s of Redis coming back")
	}
	record("cache hits again after Redis restarted in", time.Since(restarted).Round(time.Millisecond))

	// The cache is correct again, not just answering: an update is seen
	// everywhere at once.
	c.must(t, 200, "PUT", note, []byte(`{"title":"faults","body":"after Redis came back"}`), nil)
	c.wantBody(t, note, "after Redis came back")
	after := c.createNote(t, "faults", "created after Redis came back")
	c.wantBody(t, after, "created after Redis came back")
}
