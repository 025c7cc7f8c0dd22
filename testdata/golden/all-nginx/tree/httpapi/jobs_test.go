package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"example.com/acme/shop/httpapi"
	"example.com/acme/shop/worker"
)

type fakeRuns struct {
	runs      []worker.Run
	err       error
	lastLimit int
}

func (f *fakeRuns) RecentRuns(_ context.Context, limit int) ([]worker.Run, error) {
	f.lastLimit = limit
	if len(f.runs) > limit {
		return f.runs[:limit], f.err
	}
	return f.runs, f.err
}

type fakeLeader bool

func (l fakeLeader) IsLeader() bool { return bool(l) }

func do(t *testing.T, h http.Handler, target string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s: not JSON: %q", target, rec.Body.String())
	}
	return rec.Code, body
}

func TestJobRuns(t *testing.T) {
	slot := time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)
	finished := slot.Add(2 * time.Second)
	runs := &fakeRuns{runs: []worker.Run{
		{Job: "purge-job-runs", Slot: slot, InstanceID: "b", StartedAt: slot.Add(time.Millisecond)},
		{Job: "purge-job-runs", Slot: slot.Add(-time.Minute), InstanceID: "a",
			StartedAt: slot.Add(-time.Minute), FinishedAt: &finished, Error: "timeout"},
	}}
	srv := httpapi.New(httpapi.Options{JobRuns: runs, Leader: fakeLeader(true)})

	code, body := do(t, srv, "/api/jobs/runs?limit=2")
	if code != http.StatusOK || runs.lastLimit != 2 {
		t.Fatalf("status %d, limit %d: %v", code, runs.lastLimit, body)
	}
	list := body["runs"].([]any)
	first, second := list[0].(map[string]any), list[1].(map[string]any)
	if first["job"] != "purge-job-runs" || first["slot"] != "2026-03-01T12:01:00Z" ||
		first["slot_unix_ms"] != float64(slot.UnixMilli()) || first["instance_id"] != "b" ||
		first["finished_at"] != nil || first["error"] != nil {
		t.Errorf("first run = %v", first)
	}
	if second["error"] != "timeout" || second["finished_at"] != "2026-03-01T12:01:02Z" {
		t.Errorf("second run = %v", second)
	}

	do(t, srv, "/api/jobs/runs")
	if runs.lastLimit != 50 {
		t.Errorf("default limit = %d, want 50", runs.lastLimit)
	}
	for _, bad := range []string{"0", "-1", "501", "x"} {
		if code, body := do(t, srv, "/api/jobs/runs?limit="+bad); code != http.StatusBadRequest {
			t.Errorf("limit=%s: status %d, want 400: %v", bad, code, body)
		}
	}

	runs.err = errors.New("db down")
	if code, body := do(t, srv, "/api/jobs/runs"); code != http.StatusInternalServerError ||
		body["error"].(map[string]any)["code"] != "internal" {
		t.Errorf("store error: status %d, %v", code, body)
	}
}

// TestJobRunsSubSecondSlots: with WORKER_INTERVAL under 1s, consecutive
// slots are distinct in both representations (slot_unix, whole seconds, made
// them equal).
func TestJobRunsSubSecondSlots(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var rs []worker.Run
	for i := range 10 { // ten 100ms slots within one second
		slot := base.Add(time.Duration(i) * 100 * time.Millisecond)
		rs = append(rs, worker.Run{Job: "j", Slot: slot, InstanceID: "a", StartedAt: slot, Term: 3})
	}
	srv := httpapi.New(httpapi.Options{JobRuns: &fakeRuns{runs: rs}, Leader: fakeLeader(true)})
	_, body := do(t, srv, "/api/jobs/runs")
	seenMs, seenSlot := map[float64]bool{}, map[string]bool{}
	for i, r := range body["runs"].([]any) {
		run := r.(map[string]any)
		ms, _ := run["slot_unix_ms"].(float64)
		if ms != float64(rs[i].Slot.UnixMilli()) || run["term"] != float64(3) {
			t.Errorf("run %d: slot_unix_ms %v term %v, want %d, 3", i, run["slot_unix_ms"], run["term"], rs[i].Slot.UnixMilli())
		}
		seenMs[ms], seenSlot[run["slot"].(string)] = true, true
	}
	if len(seenMs) != 10 || len(seenSlot) != 10 {
		t.Errorf("10 slots 100ms apart: %d distinct slot_unix_ms, %d distinct slot, want 10 each", len(seenMs), len(seenSlot))
	}
}

func TestJobRunsAbsentWithoutWorker(t *testing.T) {
	srv := httpapi.New(httpapi.Options{})
	if code, _ := do(t, srv, "/api/jobs/runs"); code != http.StatusNotFound {
		t.Errorf("status %d, want 404 without the worker", code)
	}
	if _, body := do(t, srv, "/api/instance"); body["leader"] != nil {
		t.Errorf("/api/instance = %v, want no leader field without the worker", body)
	}
}

func TestInstanceLeader(t *testing.T) {
	for _, leading := range []bool{true, false} {
		srv := httpapi.New(httpapi.Options{InstanceID: "i1", Leader: fakeLeader(leading)})
		if _, body := do(t, srv, "/api/instance"); body["leader"] != leading || body["instance_id"] != "i1" {
			t.Errorf("/api/instance = %v, want leader %v", body, leading)
		}
	}
}
