package httpapi

import (
	"net/http/httptest"
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
