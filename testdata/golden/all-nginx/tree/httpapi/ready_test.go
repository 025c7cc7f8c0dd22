package httpapi

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// /readyz is on the public port: it names each check and its state, but
// never the error, which can name hosts and users. The error goes to the
// log once when the check starts failing, not on every probe.
func TestReadyzHidesErrors(t *testing.T) {
	const secret = `dial tcp db.internal:5432: password authentication failed for user "shop_admin"`
	var failing atomic.Bool
	var logs bytes.Buffer
	db := Check{Name: "database", Critical: true, Check: func(context.Context) error {
		if failing.Load() {
			return errors.New(secret)
		}
		return nil
	}}
	s := New(Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Checks: []Check{db}})
	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := probe(); code != http.StatusOK {
		t.Fatalf("/readyz with the check passing: %d %s", code, body)
	}
	failing.Store(true)
	for range 3 {
		code, body := probe()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"failing":["database"]`) {
			t.Fatalf("/readyz with the check failing: %d %s, want 503 naming the check", code, body)
		}
		for _, leak := range []string{"db.internal", "shop_admin", "password"} {
			if strings.Contains(body, leak) {
				t.Fatalf("/readyz body names %q: %s", leak, body)
			}
		}
	}
	if n := strings.Count(logs.String(), "readiness: check failing"); n != 1 {
		t.Errorf("the failure was logged %d times over 3 probes, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "shop_admin") {
		t.Errorf("the log does not keep the error:\n%s", logs.String())
	}
	failing.Store(false)
	if code, body := probe(); code != http.StatusOK {
		t.Fatalf("/readyz after the check passes again: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "readiness: check passes again") {
		t.Errorf("the recovery was not logged:\n%s", logs.String())
	}
}
