package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// Hazard: background work runs on every instance. Exactly one instance
// leads and runs the scheduled jobs; when it dies (SIGKILL: no clean
// hand-over) another leads within a bounded time, and job_runs never holds
// two runs of one slot. With one instance there is no other to take over:
// the test restarts it and it must lead again within the same bound, and
// the jobs stop for as long as it is down (--replicas 2 or more avoids it).
func TestOneLeader(t *testing.T) {
	// WORKER_INTERVAL=1s instead of the compose file's 1m: a slot per second
	// makes runs before and after the takeover observable in seconds.
	c := startCluster(t, map[string]string{"WORKER_INTERVAL": "1s"})

	var all []string
	for _, a := range c.apps {
		all = append(all, a.name)
	}
	leader := c.waitTheLeader(t, all)
	waitRuns(t, c, leader, 2)

	// Kill the leader; the next one must be elected while the others keep
	// serving through the load balancer.
	killed := time.Now()
	c.byName(leader).kill()
	var rest []string
	for _, n := range all {
		if n != leader {
			rest = append(rest, n)
		}
	}
	if len(rest) == 0 {
		a := c.byName(leader)
		if err := a.start(); err != nil {
			t.Fatal(err)
		}
		if err := a.waitReady(30 * time.Second); err != nil {
			t.Fatalf("%v\n%s", err, a.tail(40))
		}
		c.waitInRotation(t, a, 30*time.Second)
		rest = all
		// One instance: what is measured below is its election after it
		// is back, not its restart (a cold start on a loaded machine
		// alone can take seconds).
		t.Logf("%s restarted and in rotation %v after the kill", leader, time.Since(killed).Round(time.Millisecond))
		killed = time.Now()
	}
	var next string
	if !eventually(10*time.Second, func() bool {
		next = c.theLeader(t, rest)
		return next != ""
	}) {
		t.Fatalf("no new leader among %v within 10s of killing %s", rest, leader)
	}
	takeover := time.Since(killed)
	record(fmt.Sprintf("leader takeover after SIGKILL (%s)", c.lbKind), takeover.Round(time.Millisecond))
	t.Logf("leader %s killed; %s leads after %v", leader, next, takeover)
	if takeover > 5*time.Second {
		t.Errorf("takeover took %v, want under 5s", takeover)
	}
	waitRuns(t, c, next, 2)

	// The fence: never two runs of one (job, slot), whoever believed it led.
	if dup := testsupport.PSQL(t, c.dbURL,
		"SELECT job || ' ' || slot FROM job_runs GROUP BY job, slot HAVING count(*) > 1"); dup != "" {
		t.Errorf("slots run twice:\n%s", dup)
	}
	t.Logf("runs by instance: %s", testsupport.PSQL(t, c.dbURL,
		"SELECT string_agg(instance_id || '=' || n, ', ') FROM (SELECT instance_id, count(*) n FROM job_runs GROUP BY 1 ORDER BY 1) r"))
}

// theLeader asks every instance in names through the load balancer and
// returns the one leader, or "" when none or more than one reports leading.
func (c *cluster) theLeader(t testing.TB, names []string) string {
	t.Helper()
	var leaders []string
	for name, r := range c.onInstances(t, names, "GET", "/api/instance", nil) {
		var body struct {
			Leader bool `json:"leader"`
		}
		r.decode(t, &body)
		if body.Leader {
			leaders = append(leaders, name)
		}
	}
	sort.Strings(leaders)
	if len(leaders) > 1 {
		t.Fatalf("%d instances report leading at once: %v", len(leaders), leaders)
	}
	if len(leaders) == 1 {
		return leaders[0]
	}
	return ""
}

// waitTheLeader waits up to 10s for exactly one of names to report leading.
func (c *cluster) waitTheLeader(t testing.TB, names []string) string {
	t.Helper()
	var leader string
	if !eventually(10*time.Second, func() bool {
		leader = c.theLeader(t, names)
		return leader != ""
	}) {
		t.Fatalf("no single leader among %v after 10s", names)
	}
	return leader
}

// leads asks one instance directly whether it reports leading; false when
// it does not answer (paused, stopped) within the client's timeout.
func leads(client *http.Client, a *instance) bool {
	resp, err := client.Get(instanceURL(a) + "/api/instance")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct {
		Leader bool `json:"leader"`
	}
	return json.NewDecoder(resp.Body).Decode(&body) == nil && body.Leader
}

// waitRuns waits until GET /api/jobs/runs lists n runs by instance.
func waitRuns(t testing.TB, c *cluster, instance string, n int) {
	t.Helper()
	ok := eventually(15*time.Second, func() bool {
		r, err := c.do("GET", "/api/jobs/runs?limit=500", nil, nil)
		if err != nil || r.status != 200 {
			return false
		}
		var body struct {
			Runs []struct {
				Job        string `json:"job"`
				SlotUnixMs int64  `json:"slot_unix_ms"`
				InstanceID string `json:"instance_id"`
			} `json:"runs"`
		}
		r.decode(t, &body)
		got := 0
		for _, run := range body.Runs {
			if run.InstanceID == instance {
				got++
			}
		}
		return got >= n
	})
	if !ok {
		t.Fatalf("%s did not record %d runs within 15s", instance, n)
	}
}
