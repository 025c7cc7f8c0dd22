package clustertest

import (
	"testing"
)

// Hazard: a POST resent creates its note twice, or two POSTs become one.
// Through the load balancer a POST without an Idempotency-Key still gets a
// key of its own (nginx adds its id of the client request, the same on each
// of its resends): two POSTs that share an X-Request-ID - a trace id passed
// along - are two notes. A key the client chose creates one note however
// often it is sent.
func TestLBIdempotencyKey(t *testing.T) {
	c := startCluster(t, nil)
	body := []byte(`{"title":"twice","body":"sent twice"}`)

	trace := map[string]string{"X-Request-ID": "trace-passed-along"}
	a := c.must(t, 201, "POST", "/api/notes", body, trace)
	b := c.must(t, 201, "POST", "/api/notes", body, trace)
	if a.header.Get("Location") == b.header.Get("Location") {
		t.Errorf("two POSTs with one X-Request-ID and no Idempotency-Key created one note (%s)", a.header.Get("Location"))
	}

	key := map[string]string{"Idempotency-Key": "chosen-by-the-client"}
	first := c.must(t, 201, "POST", "/api/notes", body, key)
	again := c.must(t, 201, "POST", "/api/notes", body, key)
	if first.header.Get("Location") != again.header.Get("Location") || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a POST sent twice with one Idempotency-Key: %s then %s (Idempotent-Replayed %q), want one note",
			first.header.Get("Location"), again.header.Get("Location"), again.header.Get("Idempotent-Replayed"))
	}
}
