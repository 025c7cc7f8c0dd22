package clustertest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// Hazard: a gray failure of the leader. A paused leader (SIGSTOP, a GC
// stall, a frozen VM) keeps its TCP sessions, because its kernel still
// answers, but does nothing. Another instance must lead within 3 x
// LEADER_POLL_INTERVAL of the pause (the lease is 2 polls), no slot may run
// twice, and when the old leader resumes it must step down without claiming
// or running anything under its old term. With one instance nothing runs
// while it is paused (--replicas 2 or more avoids that); what still holds
// is the step-down and the fence, and that it leads again under a new term.
func TestLeaderPaused(t *testing.T) {
	const interval = 250 * time.Millisecond
	c := startCluster(t, map[string]string{"WORKER_INTERVAL": interval.String()})
	poll := composeDuration(t, "LEADER_POLL_INTERVAL")

	var all []string
	for _, a := range c.apps {
		all = append(all, a.name)
	}
	leader := c.waitTheLeader(t, all)
	waitRuns(t, c, leader, 2)
	old := c.byName(leader)
	oldTerm := testsupport.PSQL(t, c.dbURL, "SELECT term FROM leader_lease")

	paused := time.Now()
	if err := old.sendSignal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer old.sendSignal(syscall.SIGCONT)
	var rest []string
	for _, n := range all {
		if n != leader {
			rest = append(rest, n)
		}
	}
	if len(rest) == 0 {
		pausedOnly(t, c, old, oldTerm, paused)
		return
	}
	// Ask the others directly, not through the load balancer: it may
	// still route to the paused instance.
	var next string
	if !eventually(10*time.Second, func() bool {
		next = leaderDirect(c, rest)
		return next != ""
	}) {
		t.Fatalf("no new leader among %v within 10s of pausing %s", rest, leader)
	}
	takeover := time.Since(paused)
	record(fmt.Sprintf("leader takeover after SIGSTOP (%s)", c.lbKind), takeover.Round(time.Millisecond))
	t.Logf("leader %s paused (term %s); %s leads after %v", leader, oldTerm, next, takeover)
	// 3 polls is the design bound; 300ms for scheduling and the polling of
	// /api/instance through the load balancer.
	if limit := 3*poll + 300*time.Millisecond; takeover > limit {
		t.Errorf("takeover took %v, want at most 3 x LEADER_POLL_INTERVAL (+300ms) = %v", takeover, limit)
	}
	ledDB := testsupport.PSQL(t, c.dbURL, "SELECT now()")

	// Keep the old leader stopped for 12s in all, as in the issue.
	time.Sleep(time.Until(paused.Add(12 * time.Second)))
	resumedDB := testsupport.PSQL(t, c.dbURL, "SELECT now()")
	if err := old.sendSignal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stepsDown(t, c, old)
	time.Sleep(3 * poll) // time for a stale claim or a renew, if it made any
	if now := leaderDirect(c, all); now != next {
		t.Errorf("leader %q after %s resumed, want still %s", now, leader, next)
	}

	// The fence: never two runs of one slot; nothing run under the old
	// term, nor by the old leader, once the new term exists (ledDB). Not
	// "after the pause": a claim the leader sent just before SIGSTOP is
	// legitimate, and PostgreSQL may start its transaction (started_at)
	// a little after the signal; that is what the lease allows.
	noSlotTwice(t, c)
	if stale := testsupport.PSQL(t, c.dbURL, fmt.Sprintf(`SELECT count(*) FROM job_runs
		WHERE started_at > '%s' AND (term = %s OR instance_id = '%s')`, ledDB, oldTerm, leader)); stale != "0" {
		t.Errorf("%s runs claimed by the paused leader or under its term %s after %s led", stale, oldTerm, next)
	}
	// Slots with no run while a live leader existed: from the first full
	// slot after the takeover to the resume.
	missing := testsupport.PSQL(t, c.dbURL, fmt.Sprintf(`
		SELECT count(*) FROM generate_series(
			to_timestamp(ceil(extract(epoch FROM timestamptz '%[1]s') / %[3]f) * %[3]f),
			timestamptz '%[2]s' - interval '%[3]f seconds', interval '%[3]f seconds') s
		WHERE NOT EXISTS (SELECT FROM job_runs r WHERE r.slot = s)`, ledDB, resumedDB, interval.Seconds()))
	total := int(12*time.Second/interval) - 1
	t.Logf("runs by instance: %s; %s slots missing out of about %d slots led after the takeover; stale claims refused in %s's log: %d",
		testsupport.PSQL(t, c.dbURL, "SELECT string_agg(instance_id || '=' || n, ', ') FROM (SELECT instance_id, count(*) n FROM job_runs GROUP BY 1 ORDER BY 1) r"),
		missing, total, leader, strings.Count(logText(old), "term is no longer live"))
	if n, _ := strconv.Atoi(missing); n > 1 {
		t.Errorf("%d slots had no run while %s led", n, next)
	}
}

// stepsDown checks an old leader that has just resumed: it must not lead
// (IsLeader is false the moment its deadline passed) and must log its
// step-down.
func stepsDown(t *testing.T, c *cluster, old *instance) {
	t.Helper()
	if leaderDirect(c, []string{old.name}) != "" {
		t.Errorf("%s reports leading right after it resumed", old.name)
	}
	if !eventually(5*time.Second, func() bool {
		return strings.Contains(logText(old), "leader: stepped down")
	}) {
		t.Errorf("%s did not log its step-down after it resumed:\n%s", old.name, old.tail(20))
	}
}

func noSlotTwice(t *testing.T, c *cluster) {
	t.Helper()
	if dup := testsupport.PSQL(t, c.dbURL,
		"SELECT job || ' ' || slot FROM job_runs GROUP BY job, slot HAVING count(*) > 1"); dup != "" {
		t.Errorf("slots run twice:\n%s", dup)
	}
}

// pausedOnly is TestLeaderPaused for a cluster of one: nobody can lead
// while the only instance is paused; when it resumes it steps down, then
// leads again under a new term, and nothing runs under the old term once
// the new one exists.
func pausedOnly(t *testing.T, c *cluster, old *instance, oldTerm string, paused time.Time) {
	time.Sleep(time.Until(paused.Add(12 * time.Second)))
	if err := old.sendSignal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stepsDown(t, c, old)
	var term string
	if !eventually(10*time.Second, func() bool {
		term = testsupport.PSQL(t, c.dbURL, "SELECT term FROM leader_lease")
		return term != oldTerm && leaderDirect(c, []string{old.name}) != ""
	}) {
		t.Fatalf("%s does not lead again under a new term within 10s of resuming (term %s)", old.name, term)
	}
	ledDB := testsupport.PSQL(t, c.dbURL, "SELECT now()")
	waitRuns(t, c, old.name, 2)
	noSlotTwice(t, c)
	if stale := testsupport.PSQL(t, c.dbURL, fmt.Sprintf(`SELECT count(*) FROM job_runs
		WHERE started_at > '%s' AND term = %s`, ledDB, oldTerm)); stale != "0" {
		t.Errorf("%s runs claimed under the old term %s after term %s began", stale, oldTerm, term)
	}
	t.Logf("the only instance %s paused for 12s under term %s; it stepped down and leads under term %s", old.name, oldTerm, term)
}

// leaderDirect asks each instance of names directly and returns the first
// that reports leading, "" if none does.
func leaderDirect(c *cluster, names []string) string {
	client := &http.Client{Timeout: 300 * time.Millisecond}
	for _, n := range names {
		if leads(client, c.byName(n)) {
			return n
		}
	}
	return ""
}

func logText(a *instance) string {
	var b strings.Builder
	for _, l := range a.logLines() {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.String()
}
