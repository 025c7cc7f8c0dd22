package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// TestWorkerLeaderAndRuns starts two instances on one database: exactly one
// reports leader, its scheduled runs are listed by either instance, and
// when the leader shuts down the other one takes over at once. The poll is
// 500ms, not faster: each election attempt has one poll to connect and
// answer, and at 100ms a loaded CI machine elected no one in 5s.
func TestWorkerLeaderAndRuns(t *testing.T) {
	url := testsupport.Postgres(t)
	env := func(id string) map[string]string {
		return map[string]string{"INSTANCE_ID": id, "DATABASE_URL": url, "MIGRATE_ON_START": "true",
			"SHUTDOWN_DRAIN_DELAY": "0s", "WORKER_INTERVAL": "500ms", "LEADER_POLL_INTERVAL": "500ms"}
	}
	a, b := start(t, env("a")), start(t, env("b"))

	leader := func(in *instance) bool {
		resp, body := get(t, in.URL+"/api/instance")
		var v struct{ Leader *bool }
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil || v.Leader == nil {
			t.Fatalf("/api/instance: %d %s, want a leader field", resp.StatusCode, body)
		}
		return *v.Leader
	}
	var lead, follow *instance
	var leadID string
	deadline := time.Now().Add(15 * time.Second)
	both := 0
	for lead == nil && time.Now().Before(deadline) {
		// The two questions are not asked at one instant: a handover
		// between them looks like two leaders once, never twice in a row.
		switch la, lb := leader(a), leader(b); {
		case la && lb:
			if both++; both > 1 {
				t.Fatal("both instances report leader, twice in a row")
			}
			continue
		case la:
			lead, follow, leadID = a, b, "a"
		case lb:
			lead, follow, leadID = b, a, "b"
		}
		both = 0
		time.Sleep(10 * time.Millisecond)
	}
	if lead == nil {
		t.Fatal("no leader after 15s")
	}

	// The follower lists the leader's runs: they are in the database.
	var runs struct {
		Runs []struct {
			Job        string
			Slot       string
			InstanceID string `json:"instance_id"`
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(runs.Runs) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		resp, body := get(t, follow.URL+"/api/jobs/runs?limit=10")
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &runs) != nil {
			t.Fatalf("/api/jobs/runs: %d %s", resp.StatusCode, body)
		}
	}
	if len(runs.Runs) < 2 {
		t.Fatalf("runs = %+v, want the purge job to have run in several slots", runs.Runs)
	}
	for _, r := range runs.Runs {
		if r.InstanceID != leadID {
			t.Errorf("run %+v by a non-leader (leader is %s)", r, leadID)
		}
	}

	// Graceful stop of the leader: its lock is released on shutdown.
	stopped := time.Now()
	lead.cancel()
	err := <-lead.done
	lead.done <- err // for the cleanup, which waits on it too
	if err != nil {
		t.Fatalf("leader's run: %v", err)
	}
	for !leader(follow) {
		if time.Since(stopped) > 5*time.Second {
			t.Fatal("the follower did not take over within 5s of the leader's shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("takeover %s after the leader's shutdown began (500ms poll)", time.Since(stopped))
}
