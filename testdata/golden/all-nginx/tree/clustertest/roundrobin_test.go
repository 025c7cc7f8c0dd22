package clustertest

import (
	"testing"
)

// Hazard: state kept in process memory. Every instance answers every
// request, so the load balancer may send any request anywhere: round robin
// must reach every instance, and about evenly.
func TestRoundRobin(t *testing.T) {
	c := startCluster(t, nil)

	const perInstance = 10
	n := perInstance * len(c.apps)
	served := map[string]int{}
	for i := 0; i < n; i++ {
		r := c.must(t, 200, "GET", "/api/instance", nil, nil)
		var body struct {
			InstanceID string `json:"instance_id"`
		}
		r.decode(t, &body)
		if body.InstanceID != r.instance {
			t.Fatalf("X-Instance-ID %q but body says %q", r.instance, body.InstanceID)
		}
		served[r.instance]++
	}
	t.Logf("%d requests through %s: %v", n, c.lbKind, served)
	for _, a := range c.apps {
		// Round robin gives each exactly perInstance; allow a little slack
		// for a health check or a retry moving the rotation.
		if got := served[a.name]; got < perInstance/2 {
			t.Errorf("%s served %d of %d requests, want about %d", a.name, got, n, perInstance)
		}
	}
	if len(served) != len(c.apps) {
		t.Errorf("requests reached %v, want exactly the %d app instances", served, len(c.apps))
	}
}
