package clustertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// maxLeaderless is the longest the cluster may run without a leader: the
// takeover bound of TestOneLeader.
const maxLeaderless = 5 * time.Second

// The nemeses of the worker: the leader killed, frozen (longer than the
// takeover bound: a frozen leader must not keep the others from leading),
// and cut off from PostgreSQL. Besides the history, each checks that no
// (job, slot) ran twice and how long no instance led.
func TestRobustWorker(t *testing.T) {
	leaderFault := func(name string, f func(t *testing.T, r *robustRun, leader *instance) func()) nemesis {
		w := &leaderWatch{}
		return nemesis{
			name: name,
			env:  map[string]string{"WORKER_INTERVAL": "1s"},
			inject: func(t *testing.T, r *robustRun) func() {
				leader := w.current(r)
				if leader == nil {
					t.Fatal("no leader before the fault")
				}
				t.Logf("fault on the leader %s", leader.name)
				return f(t, r, leader)
			},
			observe: w.observe,
			check:   w.check,
		}
	}
	runNemeses(t, []nemesis{
		leaderFault("leader-sigkill", func(t *testing.T, r *robustRun, a *instance) func() {
			a.kill()
			return func() { r.restartInstance(t, a) }
		}),
		leaderFault("leader-sigstop", func(t *testing.T, r *robustRun, a *instance) func() {
			a.send(t, syscall.SIGSTOP)
			time.Sleep(maxLeaderless + 2*time.Second)
			return func() { a.send(t, syscall.SIGCONT) }
		}),
		leaderFault("leader-pg-blackhole", func(t *testing.T, r *robustRun, a *instance) func() {
			a.dbProxy.Set(testsupport.Blackhole)
			time.Sleep(maxLeaderless + 2*time.Second)
			return a.dbProxy.Heal
		}),
	})
}

// leaderWatch asks every instance directly, every 100ms, whether it leads.
type leaderWatch struct {
	mu     sync.Mutex
	rounds []leaderRound
}

type leaderRound struct {
	at      time.Time
	leaders []string // the instances that answered leader=true
}

func (w *leaderWatch) observe(t *testing.T, r *robustRun, stop <-chan struct{}) {
	client := &http.Client{Timeout: 300 * time.Millisecond}
	defer client.CloseIdleConnections()
	for i := 0; i < 100000; i++ {
		round := leaderRound{at: time.Now()}
		for _, a := range r.c.apps {
			if leads(client, a) {
				round.leaders = append(round.leaders, a.name)
			}
		}
		w.mu.Lock()
		w.rounds = append(w.rounds, round)
		w.mu.Unlock()
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// current waits up to 10s for a single leader and returns it.
func (w *leaderWatch) current(r *robustRun) *instance {
	var leader *instance
	eventually(10*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		if n := len(w.rounds); n > 0 && len(w.rounds[n-1].leaders) == 1 {
			leader = r.c.byName(w.rounds[n-1].leaders[0])
			return true
		}
		return false
	})
	return leader
}

func (w *leaderWatch) check(t *testing.T, r *robustRun) {
	t.Helper()
	// Executions, not claims: job_runs cannot hold two rows of a slot (its
	// primary key), but a job that ran without winning its claim, or after
	// its term ended, would show as a second "job: run ..." line for the
	// slot in some instance's log.
	ran := map[string][]string{} // job and slot -> instances that ran it
	for _, a := range r.c.apps {
		for _, l := range a.logLines() {
			var e struct{ Msg, Job, Slot string }
			if json.Unmarshal([]byte(l.text), &e) != nil || (e.Msg != "job: run done" && e.Msg != "job: run failed") {
				continue
			}
			ran[e.Job+" "+e.Slot] = append(ran[e.Job+" "+e.Slot], a.name)
		}
	}
	if len(ran) == 0 {
		t.Errorf("no job run in any instance's log: the duplicate check saw nothing")
	}
	for slot, by := range ran {
		if len(by) > 1 {
			t.Errorf("duplicate slot: %s ran %d times, on %v", slot, len(by), by)
		}
	}
	// How long the cluster may be without a leader: the takeover bound;
	// with one instance there is no other to take over, so the fault's
	// length plus the bound, for the instance to lead again once healed.
	limit := maxLeaderless
	if len(r.c.apps) == 1 {
		limit += r.healed.Sub(r.faulted)
	}
	// The runs say it too: the longest gap between slots that ran, from
	// before the fault to the end.
	gapSQL := fmt.Sprintf(`SELECT coalesce(round(extract(epoch FROM greatest(max(d), now() - max(s)))::numeric, 3), 0) FROM (
		SELECT slot s, slot - lag(slot) OVER (PARTITION BY job ORDER BY slot) d FROM job_runs WHERE slot >= to_timestamp(%d) - interval '2 seconds') x`,
		r.faulted.Unix())
	if v, err := strconv.ParseFloat(testsupport.PSQL(t, r.c.dbURL, gapSQL), 64); err == nil {
		slotGap := time.Duration(v * float64(time.Second))
		record("robust "+t.Name()+": longest gap between job runs", slotGap.Round(time.Millisecond))
		if slotGap > limit+time.Second {
			t.Errorf("slow takeover: no job ran for %v (want a run at least every %v)", slotGap.Round(time.Millisecond), limit+time.Second)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest, gap time.Duration
	var since time.Time
	twice := 0
	for i, round := range w.rounds {
		if round.at.Before(r.faulted) {
			continue
		}
		switch {
		case len(round.leaders) == 0 && since.IsZero():
			since = round.at
		case len(round.leaders) > 0 && !since.IsZero():
			gap, since = round.at.Sub(since), time.Time{}
			longest = max(longest, gap)
		}
		// Two leaders in two rounds in a row: not a hand-over seen mid-round.
		if i > 0 && len(round.leaders) > 1 && len(w.rounds[i-1].leaders) > 1 {
			twice++
		}
	}
	if !since.IsZero() {
		longest = max(longest, time.Since(since))
		t.Errorf("slow takeover: no leader at the end of the run, for %v", time.Since(since).Round(time.Millisecond))
	}
	record("robust "+t.Name()+": longest time without a leader", longest.Round(time.Millisecond))
	if longest > limit {
		t.Errorf("slow takeover: %v without a leader (want at most %v)", longest.Round(time.Millisecond), limit.Round(time.Millisecond))
	}
	if twice > 0 {
		t.Errorf("two leaders at once in %d consecutive polling rounds", twice)
	}
}
