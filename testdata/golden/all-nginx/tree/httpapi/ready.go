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

// checkResult is what /readyz says of a check: its name and state, never
// the error, which can name hosts and users and /readyz is on the public
// port. The error goes to the log when the check starts failing.
type checkResult struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Critical bool   `json:"critical"`
}

type readiness struct {
	Status  string        `json:"status"` // ok, degraded, unavailable or draining
	Checks  []checkResult `json:"checks"`
	Failing []string      `json:"failing"`
}

// checkTimeout bounds every check so a hung dependency cannot hang /readyz.
//
// A non-critical check gets much less time: its failure never makes the
// instance unready, and a slow one must not make /readyz itself slow, or a
// load balancer whose health check times out would take every instance out
// of rotation because, say, MinIO hangs.
const (
	checkTimeout       = 2 * time.Second
	noncriticalTimeout = 500 * time.Millisecond
)

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	res := readiness{Status: "ok", Checks: make([]checkResult, len(s.opts.Checks)), Failing: []string{}}
	var wg sync.WaitGroup
	for i, c := range s.opts.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := checkTimeout
			if !c.Critical {
				timeout = noncriticalTimeout
			}
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			err := c.Check(ctx)
			res.Checks[i] = checkResult{Name: c.Name, OK: err == nil, Critical: c.Critical}
			s.logCheck(c, err)
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

// logCheck logs a check when its state changes: the error once when it
// starts failing (not on every probe of the load balancer), and when it
// passes again.
func (s *Server) logCheck(c Check, err error) {
	failing := err != nil
	if was, _ := s.checkFailing.Swap(c.Name, failing); was == failing || (was == nil && !failing) {
		return
	}
	if failing {
		s.log.Warn("readiness: check failing", "check", c.Name, "critical", c.Critical, "error", err)
	} else {
		s.log.Info("readiness: check passes again", "check", c.Name)
	}
}
