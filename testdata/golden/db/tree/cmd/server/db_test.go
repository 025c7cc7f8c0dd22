package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"example.com/acme/notes/testsupport"
)

// call sends a request with an optional JSON body and returns the status
// and the body.
func call(t *testing.T, method, url, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// logged reports whether a JSON log line has msg and every key=value given.
func logged(lines []string, msg string, kv ...any) bool {
	for _, line := range lines {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil || l["msg"] != msg {
			continue
		}
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(l[kv[i].(string)]) != fmt.Sprint(kv[i+1]) {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestNotesRoundTrip(t *testing.T) {
	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s", "DB_POOL_SIZE": "7"})
	if !logged(in.logs(), "database pool", "pool_size", 7) {
		t.Errorf("no start-up log line with the pool size in %q", in.logs())
	}
	if !logged(in.logs(), "migration applied", "version", 1, "file", "00001_notes.sql") {
		t.Errorf("no log line for the migration applied at start in %q", in.logs())
	}
	resp, body := call(t, "GET", in.URL+"/readyz", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"name":"postgres","ok":true,"critical":true`) {
		t.Fatalf("/readyz = %d %s, want 200 with a critical postgres check", resp.StatusCode, body)
	}

	resp, body = call(t, "POST", in.URL+"/api/notes", `{"title":"round trip","body":"héllo"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	var note struct {
		ID    int64  `json:"id"`
		Title string `json:"title"`
		Body  string `json:"body"`
	}
	if err := json.Unmarshal([]byte(body), &note); err != nil || note.ID <= 0 {
		t.Fatalf("POST body %s (%v)", body, err)
	}
	loc := resp.Header.Get("Location")
	if loc != fmt.Sprintf("/api/notes/%d", note.ID) {
		t.Fatalf("Location = %q", loc)
	}

	if resp, body = call(t, "GET", in.URL+loc, ""); resp.StatusCode != 200 || !strings.Contains(body, `"body":"héllo"`) {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	if resp, body = call(t, "PUT", in.URL+loc, `{"title":"changed","body":""}`); resp.StatusCode != 200 || !strings.Contains(body, `"title":"changed"`) {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	if resp, body = call(t, "GET", in.URL+"/api/notes?limit=1", ""); resp.StatusCode != 200 ||
		!strings.Contains(body, `"title":"changed"`) || strings.Contains(body, "next_after") {
		t.Fatalf("GET list: %d %s", resp.StatusCode, body)
	}
	if resp, body = call(t, "DELETE", in.URL+loc, ""); resp.StatusCode != 204 {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	if resp, body = call(t, "GET", in.URL+loc, ""); resp.StatusCode != 404 || !strings.Contains(body, `"not_found"`) {
		t.Fatalf("GET after DELETE: %d %s", resp.StatusCode, body)
	}
	if resp, body = call(t, "POST", in.URL+"/api/notes", `{"title":`); resp.StatusCode != 400 {
		t.Fatalf("POST malformed: %d %s", resp.StatusCode, body)
	}
}

// POST /api/notes with an Idempotency-Key, sent 20 times at once to two
// instances on one database (a client retrying, the load balancer resending
// after a broken connection): one note exists, and all 20 answers are 201
// with its id and Location, 19 of them marked Idempotent-Replayed.
func TestNotesIdempotencyKeyConcurrent(t *testing.T) {
	url := testsupport.Postgres(t)
	env := map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s", "DATABASE_URL": url}
	instances := []*instance{start(t, env), start(t, env)}

	const n = 20
	type answer struct {
		status   int
		id       int64
		location string
		replayed bool
		err      error
	}
	answers := make([]answer, n)
	ready := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := &answers[i]
			req, err := http.NewRequest("POST", instances[i%2].URL+"/api/notes",
				strings.NewReader(`{"title":"once","body":"however often it is sent"}`))
			if err != nil {
				a.err = err
				return
			}
			req.Header.Set("Idempotency-Key", "0b9a6f3e-5d1c-4e8a-9f2b-concurrent")
			<-ready
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				a.err = err
				return
			}
			defer resp.Body.Close()
			var note struct {
				ID int64 `json:"id"`
			}
			a.err = json.NewDecoder(resp.Body).Decode(&note)
			a.status, a.id, a.location = resp.StatusCode, note.ID, resp.Header.Get("Location")
			a.replayed = resp.Header.Get("Idempotent-Replayed") == "true"
		})
	}
	close(ready)
	wg.Wait()
	replayed := 0
	for i, a := range answers {
		if a.err != nil || a.status != 201 || a.id != answers[0].id || a.location != fmt.Sprintf("/api/notes/%d", answers[0].id) {
			t.Errorf("answer %d: %d, note %d, Location %q (%v); want 201 with note %d, as answer 0",
				i, a.status, a.id, a.location, a.err, answers[0].id)
		}
		if a.replayed {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Errorf("%d answers marked Idempotent-Replayed, want %d", replayed, n-1)
	}

	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var notes int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM notes").Scan(&notes); err != nil {
		t.Fatal(err)
	}
	if notes != 1 {
		t.Fatalf("%d notes after %d concurrent POSTs with one Idempotency-Key, want 1", notes, n)
	}
}

// The postgres check is critical: when the database refuses connections the
// instance reports unready (the load balancer stops sending it requests),
// and it recovers by itself when the database is back.
func TestReadinessFollowsPostgres(t *testing.T) {
	url := testsupport.Postgres(t)
	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s", "DATABASE_URL": url})

	// A database cannot shut itself out, so the switch is thrown from the
	// server's maintenance database.
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	allow := func(b bool) {
		testsupport.PSQL(t, u.String(), fmt.Sprintf(`ALTER DATABASE "%s" ALLOW_CONNECTIONS %v`, name, b))
	}
	allow(false)
	t.Cleanup(func() { allow(true) })
	testsupport.PSQL(t, u.String(), fmt.Sprintf(`SELECT count(pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = '%s'`, name))
	resp, body := call(t, "GET", in.URL+"/readyz", "")
	if resp.StatusCode != 503 || !strings.Contains(body, `"failing":["postgres"]`) {
		t.Fatalf("/readyz with the database down = %d %s, want 503 naming postgres", resp.StatusCode, body)
	}
	if resp, body = call(t, "GET", in.URL+"/api/notes/1", ""); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || strings.Contains(body, "SQLSTATE") {
		t.Fatalf("GET note with the database down = %d %s, want a 503 with Retry-After that hides the cause", resp.StatusCode, body)
	}

	allow(true)
	if resp, body = call(t, "GET", in.URL+"/readyz", ""); resp.StatusCode != 200 {
		t.Fatalf("/readyz after the database came back = %d %s", resp.StatusCode, body)
	}
}

func TestMigrateCommand(t *testing.T) {
	url := testsupport.Postgres(t)
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}
	migrateOnce := func() []string {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), []string{"server", "migrate"}, getenv, &out, io.Discard); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		return strings.Split(strings.TrimSpace(out.String()), "\n")
	}

	first := migrateOnce()
	if !logged(first, "migration applied", "version", 1, "file", "00001_notes.sql") {
		t.Fatalf("first migrate logged %q, want 00001_notes.sql applied", first)
	}
	if got := testsupport.PSQL(t, url, `SELECT to_regclass('public.notes') IS NOT NULL`); got != "t" {
		t.Fatal("no notes table after migrate")
	}
	second := migrateOnce()
	if logged(second, "migration applied") || !logged(second, "migrations done", "applied", 0) {
		t.Fatalf("second migrate logged %q, want nothing applied", second)
	}

	// With MIGRATE_ON_START=false, serve applies nothing itself.
	in := start(t, map[string]string{"SHUTDOWN_DRAIN_DELAY": "0s", "DATABASE_URL": url, "MIGRATE_ON_START": "false"})
	if logged(in.logs(), "migrations done") {
		t.Errorf("serve migrated with MIGRATE_ON_START=false: %q", in.logs())
	}
	if resp, body := call(t, "POST", in.URL+"/api/notes", `{"title":"x"}`); resp.StatusCode != 201 {
		t.Fatalf("POST after migrate command: %d %s", resp.StatusCode, body)
	}
}

func TestStartFailsWithoutDatabase(t *testing.T) {
	env := map[string]string{"DATABASE_URL": unusedDatabaseURL, "PORT": "0"}
	t0 := time.Now()
	err := run(context.Background(), []string{"server"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Fatalf("run with no database: %v, want an error naming postgres", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("took %v to give up", d)
	}
}

// A request still running when SHUTDOWN_TIMEOUT ends (here: its UPDATE
// waits for a row lock another session holds) has its connection closed,
// which cancels its context and so its query, and the instance exits.
// Before, nothing cancelled it: run waited in the pool's Close for as long
// as the lock was held.
func TestShutdownTimeoutEndsStuckRequests(t *testing.T) {
	url := testsupport.Postgres(t)
	in := start(t, map[string]string{"DATABASE_URL": url, "SHUTDOWN_DRAIN_DELAY": "0s", "SHUTDOWN_TIMEOUT": "1s"})
	if resp, body := call(t, "POST", in.URL+"/api/notes", `{"title":"a"}`); resp.StatusCode != 201 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	ctx := context.Background()
	locker, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1 FROM notes WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	go func() {
		defer close(stuck)
		req, _ := http.NewRequest("PUT", in.URL+"/api/notes/1", strings.NewReader(`{"title":"b"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond) // the PUT waits for the lock
	stopped := time.Now()
	in.cancel()
	select {
	case err := <-in.done:
		t.Logf("run returned %v after %v", err, time.Since(stopped).Round(time.Millisecond))
		if err == nil {
			t.Error("run returned nil, want the shutdown timeout as its error")
		}
		in.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of SIGTERM with SHUTDOWN_TIMEOUT 1s: it waits for a stuck request")
	}
	select {
	case <-stuck:
	case <-time.After(5 * time.Second):
		t.Error("the stuck request was not ended")
	}
}
