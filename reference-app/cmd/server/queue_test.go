package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// SIGTERM while a webhook job runs: the queue waits SHUTDOWN_TIMEOUT for it,
// then cancels it and River hands it back (available, no attempt counted);
// another instance then delivers it, once, with the job's id.
func TestQueueSIGTERMHandsJobBack(t *testing.T) {
	url := testsupport.Postgres(t)
	running, release := make(chan struct{}, 1), make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running <- struct{}{}
		select {
		case <-r.Context().Done(): // the job is cancelled
		case <-release: // the test ends
		}
	}))
	defer hanging.Close()
	defer close(release)
	var delivered atomic.Int64
	var deliveredID atomic.Value
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deliveredID.Store(r.Header.Get("Webhook-Id"))
		delivered.Add(1)
	}))
	defer good.Close()
	env := func(id, hook string) map[string]string {
		return map[string]string{"INSTANCE_ID": id, "DATABASE_URL": url, "MIGRATE_ON_START": "true",
			"SHUTDOWN_DRAIN_DELAY": "0s", "SHUTDOWN_TIMEOUT": "1s", "NOTES_WEBHOOK_URL": hook}
	}

	a := start(t, env("a", hanging.URL))
	resp, err := http.Post(a.URL+"/api/notes", "application/json", strings.NewReader(`{"title":"t","body":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %s", resp.Status)
	}
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook job did not start")
	}
	stopped := time.Now()
	a.cancel() // SIGTERM
	select {
	case err := <-a.done:
		a.done <- err // for start's cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("the instance did not stop within 15s of SIGTERM")
	}
	if got := testsupport.PSQL(t, url, `SELECT id || ' ' || state || ' ' || attempt FROM river_job`); !strings.HasSuffix(got, " available 0") {
		t.Fatalf("after SIGTERM (stopped in %v): job %q, want available with no attempt counted", time.Since(stopped).Round(time.Millisecond), got)
	}

	start(t, env("b", good.URL))
	deadline := time.Now().Add(10 * time.Second)
	for testsupport.PSQL(t, url, `SELECT state FROM river_job`) != "completed" {
		if time.Now().After(deadline) {
			t.Fatalf("job not completed by the second instance: %s", testsupport.PSQL(t, url, `SELECT state FROM river_job`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id := testsupport.PSQL(t, url, `SELECT id FROM river_job`); delivered.Load() != 1 || deliveredID.Load() != id {
		t.Fatalf("delivered %d times with Webhook-Id %v, want once with %s", delivered.Load(), deliveredID.Load(), id)
	}
}
