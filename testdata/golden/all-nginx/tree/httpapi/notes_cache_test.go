package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"example.com/acme/shop/cache"
	"example.com/acme/shop/notes"
	"example.com/acme/shop/redis"
	"example.com/acme/shop/testsupport"
)

// call sends one request to srv and returns the status, X-Cache and body.
func call(t *testing.T, srv *Server, method, path, body string) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(method, path, rd))
	return rec.Code, rec.Header().Get("X-Cache"), rec.Body.String()
}

func wantNote(t *testing.T, srv *Server, path string, status int, xcache, title string) {
	t.Helper()
	code, xc, body := call(t, srv, "GET", path, "")
	if code != status || xc != xcache {
		t.Fatalf("GET %s = %d X-Cache %q, want %d %q; body %s", path, code, xc, status, xcache, body)
	}
	if title != "" {
		var n notes.Note
		if err := json.Unmarshal([]byte(body), &n); err != nil || n.Title != title {
			t.Fatalf("GET %s = %s, want title %q", path, body, title)
		}
	}
}

func TestNoteCacheMemory(t *testing.T) {
	store := newMemNotes()
	c := cache.NewMemory(100, time.Minute)
	store.beforeCommit = InvalidateNote(c)
	n, _ := store.Create(context.Background(), notes.Input{Title: "one"})
	srv := New(Options{Notes: store, Cache: c})
	path := "/api/notes/1"

	wantNote(t, srv, path, 200, "miss", "one")
	wantNote(t, srv, path, 200, "local", "one")
	// The cached note is byte for byte what the store gives.
	_, _, cached := call(t, srv, "GET", path, "")
	direct, _ := json.Marshal(n)
	if strings.TrimSpace(cached) != string(direct) {
		t.Fatalf("cached note %s, want %s", cached, direct)
	}
	if code, _, _ := call(t, srv, "PUT", path, `{"title":"two"}`); code != 200 {
		t.Fatalf("PUT = %d", code)
	}
	wantNote(t, srv, path, 200, "miss", "two")
	if code, _, _ := call(t, srv, "DELETE", path, ""); code != 204 {
		t.Fatalf("DELETE = %d", code)
	}
	wantNote(t, srv, path, 404, "miss", "")
	wantNote(t, srv, path, 404, "miss", "") // a missing note is not cached
}

func TestNoteCacheOff(t *testing.T) {
	store := newMemNotes()
	store.Create(context.Background(), notes.Input{Title: "one"})
	srv := New(Options{Notes: store})
	wantNote(t, srv, "/api/notes/1", 200, "", "one")
	wantNote(t, srv, "/api/notes/1", 200, "", "one")
}

// Two instances over one Redis and one database: what one writes, the other
// serves at once. While Redis is down, writes are refused before they
// commit (503, nothing written) and reads go to the database.
func TestNoteCacheTwoInstances(t *testing.T) {
	rs := testsupport.Redis(t)
	store := newMemNotes()
	instance := func() (*Server, *redis.Cache) {
		c, err := redis.New(redis.Options{URL: rs.URL, LocalSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return New(Options{Notes: store, Cache: c, Logger: slog.New(slog.DiscardHandler)}), c
	}
	a, ca := instance()
	b, cb := instance()
	store.beforeCommit = InvalidateNote(ca) // every write below goes through a
	for _, c := range []*redis.Cache{ca, cb} {
		deadline := time.Now().Add(10 * time.Second)
		for c.Check(context.Background()) != nil {
			if time.Now().After(deadline) {
				t.Fatal("cache not ready within 10s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Created through the cache's hook, as every note is: it is cached
	// from its first read.
	store.Create(context.Background(), notes.Input{Title: "v0"})
	path := "/api/notes/1"
	wantNote(t, b, path, 200, "miss", "v0")
	wantNote(t, a, path, 200, "redis", "v0")
	wantNote(t, b, path, 200, "local", "v0")
	wantNote(t, a, path, 200, "local", "v0")
	for i := 1; i <= 20; i++ {
		title := "v" + string(rune('a'+i))
		if code, _, _ := call(t, a, "PUT", path, `{"title":"`+title+`"}`); code != 200 {
			t.Fatalf("PUT = %d", code)
		}
		wantNote(t, b, path, 200, "miss", title)
		wantNote(t, b, path, 200, "local", title)
	}

	rs.Stop(t)
	time.Sleep(1500 * time.Millisecond) // past every lease
	start := time.Now()
	code, _, body := call(t, a, "PUT", path, `{"title":"down"}`)
	t.Logf("PUT with Redis down: %d in %v", code, time.Since(start))
	if code != 503 || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("PUT with Redis down = %d %s, want 503 unavailable", code, body)
	}
	start = time.Now()
	last := "v" + string(rune('a'+20))
	wantNote(t, b, path, 200, "miss", last) // the refused write left nothing
	t.Logf("GET with Redis down: %v", time.Since(start))

	rs.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for cb.Check(context.Background()) != nil || ca.Check(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("cache did not recover within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Redis came back empty: the first write tells it that no other write
	// is under way, and the note is cached at once again.
	if code, _, _ := call(t, a, "PUT", path, `{"title":"up"}`); code != 200 {
		t.Fatalf("PUT after Redis came back = %d", code)
	}
	wantNote(t, b, path, 200, "miss", "up")
	wantNote(t, a, path, 200, "redis", "up")
	wantNote(t, a, path, 200, "local", "up")
	if code, _, _ := call(t, b, "DELETE", path, ""); code != 204 {
		t.Fatalf("DELETE = %d", code)
	}
	wantNote(t, a, path, 404, "miss", "")
}
