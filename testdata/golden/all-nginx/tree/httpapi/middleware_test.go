package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
)

// A request id a client sends is kept only when it is 1 to 128 characters
// of the safe set (the one the nginx config keeps too); anything else is
// replaced, so it can be written into logs, headers and JSON bodies as it is.
func TestRequestIDSafeSet(t *testing.T) {
	s := New(Options{})
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"abc-123", true},
		{"trace.id_1:2/3+4=5@6~7", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{`id"with"quotes`, false},
		{"<script>", false},
		{"a b", false},
		{"tab\there", false},
		{"caf\u00e9", false},
		{"semi;colon", false},
	} {
		req := httptest.NewRequest("GET", "/healthz", nil)
		req.Header.Set("X-Request-ID", tc.sent)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-ID")
		if tc.kept && got != tc.sent {
			t.Errorf("X-Request-ID %q came back as %q, want it kept", tc.sent, got)
		}
		if !tc.kept && (got == tc.sent || len(got) != 24) {
			t.Errorf("X-Request-ID %q came back as %q, want a new id of 24 hex digits", tc.sent, got)
		}
	}
}

// While the instance drains, every answer closes its connection - also the
// answer to a request that came in before the drain began - and an idle
// connection is not closed by the drain itself: a load balancer that keeps
// connections open must never have one closed under its feet while it may
// be writing a request on it.
func TestDrainClosesConnectionsAfterAnswers(t *testing.T) {
	s := New(Options{})
	inHandler, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inHandler)
			<-release
		}
		s.ServeHTTP(w, r)
	})
	ts := httptest.NewServer(slow)
	defer ts.Close()
	// get reports whether the request went on a connection used before.
	get := func(c *http.Client, path string) (resp *http.Response, reused bool) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", ts.URL+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, reused
	}
	idle := ts.Client() // keeps one connection open and idle
	if resp, _ := get(idle, "/healthz"); resp.Close {
		t.Fatalf("before the drain: Connection: close; want the connection kept")
	}

	// A request that began before the drain and answers after it began.
	answered := make(chan *http.Response)
	go func() {
		c := &http.Client{Transport: &http.Transport{}}
		resp, err := c.Get(ts.URL + "/slow")
		if err != nil {
			t.Error(err)
			answered <- nil
			return
		}
		resp.Body.Close()
		answered <- resp
	}()
	<-inHandler
	s.Drain()
	close(release)
	if resp := <-answered; resp != nil && !resp.Close {
		t.Errorf("an answer written during the drain kept its connection open; want Connection: close")
	}
	// The idle connection is still open: the next request on it is
	// answered on it, with Connection: close.
	resp, reused := get(idle, "/healthz")
	if !reused {
		t.Errorf("the drain closed an idle connection; want it open until the listener closes")
	}
	if !resp.Close {
		t.Errorf("during the drain: no Connection: close; want every answer to close its connection")
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("during the drain, on the connection opened before it: %d, want 200", resp.StatusCode)
	}
}
