package clustertest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Hazard: logs scattered over instances. Every line an instance writes is a
// JSON object with its instance id, so the lines of all instances can be
// merged and searched; the request id the client sent (or the load balancer
// made) reaches the instance that served the request and is in its log line.
func TestLogs(t *testing.T) {
	c := startCluster(t, nil)

	var b [6]byte
	_, _ = rand.Read(b[:])
	run := hex.EncodeToString(b[:])
	servedBy := map[string]string{} // request id -> instance
	for i := 0; i < 3*len(c.apps); i++ {
		id := fmt.Sprintf("clustertest-%s-%d", run, i)
		r := c.must(t, 200, "GET", "/api/instance", nil, map[string]string{"X-Request-ID": id})
		if got := r.header.Get("X-Request-ID"); got != id {
			t.Errorf("sent X-Request-ID %q, the response has %q", id, got)
		}
		servedBy[id] = r.instance
	}
	// Without an id: the load balancer makes one, the app uses and echoes it.
	r := c.must(t, 200, "GET", "/api/instance", nil, nil)
	lbID := r.header.Get("X-Request-ID")
	if lbID == "" {
		t.Errorf("a request without X-Request-ID got no X-Request-ID back")
	} else {
		servedBy[lbID] = r.instance
	}

	// An id outside the safe set (quotes, angle brackets) is replaced on
	// the way, by the load balancer or the app, never echoed as it is.
	for _, bad := range []string{`x"<script>"`, "a b", "semi;colon"} {
		r := c.must(t, 200, "GET", "/api/instance", nil, map[string]string{"X-Request-ID": bad})
		if got := r.header.Get("X-Request-ID"); got == bad || got == "" || strings.ContainsAny(got, "\"<> ;") {
			t.Errorf("sent X-Request-ID %q through the load balancer, the response has %q: want a new, safe id", bad, got)
		}
	}

	// Stop every instance the way docker compose stop does, so that the
	// drain and shutdown lines are checked too.
	var wg sync.WaitGroup
	for _, a := range c.apps {
		wg.Go(func() {
			if err := a.stop(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	found := map[string][]string{} // request id -> instances whose log has it
	for _, a := range c.apps {
		pool := false // db: the start-up line that states the pool size
		lines := a.logLines()
		if len(lines) == 0 {
			t.Errorf("%s wrote nothing to stdout", a.name)
		}
		for _, l := range lines {
			var e map[string]any
			if err := json.Unmarshal([]byte(l.text), &e); err != nil {
				t.Errorf("%s: stdout line is not JSON: %q", a.name, l.text)
				continue
			}
			for _, k := range []string{"time", "level", "msg"} {
				if _, ok := e[k]; !ok {
					t.Errorf("%s: log line without %q: %s", a.name, k, l.text)
				}
			}
			if e["msg"] == "database pool" && e["pool_size"] != nil {
				pool = true
			}
			if e["instance_id"] != a.name {
				t.Errorf("%s: log line with instance_id %v: %s", a.name, e["instance_id"], l.text)
			}
			if id, ok := e["request_id"].(string); ok {
				if _, sent := servedBy[id]; sent && !contains(found[id], a.name) {
					found[id] = append(found[id], a.name)
				}
			}
		}
		if !pool {
			t.Errorf("%s did not log its database pool size at start (msg \"database pool\", pool_size)", a.name)
		}
		a.mu.Lock()
		stderr := a.stderr.String()
		a.mu.Unlock()
		if stderr != "" {
			t.Errorf("%s wrote to stderr (logs belong on stdout, as JSON):\n%s", a.name, stderr)
		}
	}
	for id, instance := range servedBy {
		if len(found[id]) != 1 || found[id][0] != instance {
			t.Errorf("request %s was served by %s; its id is in the logs of %v", id, instance, found[id])
		}
	}
	t.Logf("%d request ids, each in the log of the instance that served it", len(servedBy))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
