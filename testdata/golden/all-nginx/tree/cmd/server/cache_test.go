package main

import (
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// Two instances over one database and one Redis: a note written through one
// is served fresh by the other, and Redis going away costs no request.
func TestCacheAcrossInstances(t *testing.T) {
	rs := testsupport.Redis(t)
	env := map[string]string{"DATABASE_URL": testsupport.Postgres(t), "REDIS_URL": rs.URL, "SHUTDOWN_DRAIN_DELAY": "0s"}
	a, b := start(t, env), start(t, env)

	waitReady := func(in *instance) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, body := get(t, in.URL+"/readyz")
			if resp.StatusCode == 200 && strings.Contains(body, `"name":"redis","ok":true,"critical":false`) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz = %d %s, want a passing non-critical redis check", resp.StatusCode, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitReady(a)
	waitReady(b)

	resp, body := call(t, "POST", a.URL+"/api/notes", `{"title":"first"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	wantGet := func(in *instance, xcache, title string) {
		t.Helper()
		resp, body := get(t, in.URL+loc)
		if resp.StatusCode != 200 || xcache != "" && resp.Header.Get("X-Cache") != xcache || !strings.Contains(body, `"title":"`+title+`"`) {
			t.Fatalf("GET %s = %d X-Cache %q %s, want 200 %q title %q", loc, resp.StatusCode, resp.Header.Get("X-Cache"), body, xcache, title)
		}
	}
	wantGet(a, "miss", "first")
	wantGet(b, "redis", "first")
	wantGet(b, "local", "first")
	if resp, body := call(t, "PUT", a.URL+loc, `{"title":"second"}`); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	wantGet(b, "miss", "second")

	rs.Stop(t)
	t0 := time.Now()
	// Any source, but the fresh note: b may still serve its local copy for
	// the rest of its lease (up to a second, see redis/redis.go).
	wantGet(b, "", "second")
	t.Logf("GET with Redis down: %v", time.Since(t0))
	resp, body = get(t, b.URL+"/readyz")
	if resp.StatusCode != 200 || !strings.Contains(body, `"failing":["redis"]`) {
		t.Fatalf("/readyz with Redis down = %d %s, want 200 (degraded) naming redis", resp.StatusCode, body)
	}
	if resp, body := call(t, "PUT", a.URL+loc, `{"title":"third"}`); resp.StatusCode != 503 {
		t.Fatalf("PUT with Redis down: %d %s, want 503 (refused before it commits)", resp.StatusCode, body)
	}
	wantGet(b, "", "second")
	rs.Start(t)
	waitReady(a)
	waitReady(b)
	// Redis came back empty; the first write tells it that no write is
	// under way, and the note is cached at once again.
	if resp, body := call(t, "PUT", a.URL+loc, `{"title":"third"}`); resp.StatusCode != 200 {
		t.Fatalf("PUT after Redis came back: %d %s", resp.StatusCode, body)
	}
	wantGet(b, "miss", "third")
	wantGet(b, "local", "third")
}
