package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"example.com/acme/shop/worker"
)

// Leader tells whether this instance is the worker's leader.
type Leader interface {
	IsLeader() bool
}

// JobRuns lists the worker's recorded runs, the latest slot first.
type JobRuns interface {
	RecentRuns(ctx context.Context, limit int) ([]worker.Run, error)
}

const (
	defaultRunsLimit = 50
	maxRunsLimit     = 500
)

func (s *Server) jobsRoutes() {
	if s.opts.JobRuns == nil {
		return
	}
	s.mux.HandleFunc("GET /api/jobs/runs", s.listJobRuns)
}

// jobRun is the JSON shape of one run. The slot is given both as RFC 3339
// with its fraction and as unix milliseconds: WORKER_INTERVAL is a whole
// number of milliseconds, at least 100ms, so every slot is a distinct, exact
// integer (and below 2^53, exact in JavaScript too). Whole seconds would
// merge the slots of an interval under 1s. term is the leader term the run
// was claimed under (0 for runs recorded before terms were).
type jobRun struct {
	Job        string     `json:"job"`
	Slot       time.Time  `json:"slot"`
	SlotUnixMs int64      `json:"slot_unix_ms"`
	Term       int64      `json:"term"`
	InstanceID string     `json:"instance_id"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"` // null while running or if the runner died
	Error      *string    `json:"error"`       // null when the run succeeded
}

func (s *Server) listJobRuns(w http.ResponseWriter, r *http.Request) {
	limit := defaultRunsLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRunsLimit {
			writeError(w, r, http.StatusBadRequest, "bad_request",
				"limit must be a whole number from 1 to "+strconv.Itoa(maxRunsLimit))
			return
		}
		limit = n
	}
	runs, err := s.opts.JobRuns.RecentRuns(r.Context(), limit)
	if err != nil {
		logger(r.Context()).Error("list job runs", "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "cannot list job runs")
		return
	}
	out := make([]jobRun, len(runs))
	for i, run := range runs {
		out[i] = jobRun{
			Job:        run.Job,
			Slot:       run.Slot.UTC(),
			SlotUnixMs: run.Slot.UnixMilli(),
			Term:       run.Term,
			InstanceID: run.InstanceID,
			StartedAt:  run.StartedAt.UTC(),
			FinishedAt: run.FinishedAt,
		}
		if run.Error != "" {
			out[i].Error = &run.Error
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": out})
}
