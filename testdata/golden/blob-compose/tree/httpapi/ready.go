package httpapi

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// A Check tells whether a dependency answers. A failing critical check makes
// the instance unready (the load balancer sends it nothing); a failing
// non-critical one is reported but the instance keeps serving, because the
// routes that do not need that dependency still work.
type Check struct {
	Name     string
	Critical bool
	Check    func(ctx context.Context) error
}

type checkResult struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Critical bool   `json:"critical"`
	Error    string `json:"error,omitempty"`
}

type readiness struct {
	Status  string        `json:"status"` // ok, degraded, unavailable or draining
	Checks  []checkResult `json:"checks"`
	Failing []string      `json:"failing"`
}

// checkTimeout bounds every check so a hung dependency cannot hang /readyz.
const checkTimeout = 2 * time.Second

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	res := readiness{Status: "ok", Checks: make([]checkResult, len(s.opts.Checks)), Failing: []string{}}
	ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range s.opts.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Checks[i] = checkResult{Name: c.Name, OK: true, Critical: c.Critical}
			if err := c.Check(ctx); err != nil {
				res.Checks[i].OK = false
				res.Checks[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()

	status := http.StatusOK
	for _, c := range res.Checks {
		if c.OK {
			continue
		}
		res.Failing = append(res.Failing, c.Name)
		if c.Critical {
			res.Status, status = "unavailable", http.StatusServiceUnavailable
		} else if res.Status == "ok" {
			res.Status = "degraded"
		}
	}
	if s.draining.Load() {
		res.Status, status = "draining", http.StatusServiceUnavailable
	}
	writeJSON(w, status, res)
}
