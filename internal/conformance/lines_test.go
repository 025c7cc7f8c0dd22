package conformance

import (
	"strings"
	"testing"
)

// testLines keeps a failing test's whole message, its continuation lines
// included, and drops the servers' logs.
func TestTestLines(t *testing.T) {
	out := strings.Join([]string{
		"=== RUN   TestRunErrorsRecorded",
		"    worker_test.go:328: job_runs:",
		"        fails:a:true:disk full",
		"        works:a:false:-",
		"        want:",
		"        panics:a:true:job panicked: boom",
		"    postgres.go:43: --- postgres output (last 8192 bytes at most) ---",
		"        LOG:  checkpoint starting",
		"    worker_test.go:120: testsupport: PostgreSQL started in 1.4s",
		"        LOG:  not a continuation of a test message",
		"--- FAIL: TestRunErrorsRecorded (0.71s)",
		"FAIL",
	}, "\n")
	got := testLines(out)
	for _, want := range []string{"job_runs:", "fails:a:true:disk full", "works:a:false:-", "want:", "--- FAIL: TestRunErrorsRecorded"} {
		if !strings.Contains(got, want) {
			t.Errorf("testLines dropped %q:\n%s", want, got)
		}
	}
	for _, drop := range []string{"checkpoint starting", "not a continuation"} {
		if strings.Contains(got, drop) {
			t.Errorf("testLines kept %q:\n%s", drop, got)
		}
	}
}
