package clustertest

// BenchmarkCluster measures what the cluster costs and how fast it heals, on
// the topology of the conformance test (startCluster: the app binary, the
// real load balancer and servers as local processes), and prints one table.
// Every row is measured in this run next to its reference, and given as a
// ratio where there is one: on a shared machine absolute numbers move
// between runs, ratios much less. It is a benchmark, not a test: it never
// fails on a number, only when the cluster does not work at all.
//
//	make bench
//	go test -run '^$' -bench '^BenchmarkCluster$' -benchtime 1x -timeout 15m ./clustertest/
//
// The measurements run once whatever b.N is. Loopback only; every loop is
// bounded in count and time.
//
// The load generator is a closed loop in this process: BENCH_CLIENTS
// clients (default 8), each sending its next request when the last one was
// answered, over one shared http.Transport with keep-alive. A series is
// BENCH_SECONDS (default 2) after a 300ms warm-up, repeated in 3 rounds that
// alternate with its reference (A B, B A, A B), and the rounds are summed.
// The reference of the cached read is a bare net/http handler in this
// process that answers the same bytes with the same headers: the limit of
// what the app could do on this machine, since it shares the CPUs with the
// load generator exactly as the app does.
//
// BENCH_ROWS=read,lb selects rows: read, lb, write, invalidation, takeover, lock, events, frozen, redisfrozen, storm, restart.
//
// The gray-failure rows (frozen: one instance paused; redisfrozen: Redis
// paused, then one instance cut from Redis one way, each way) are not
// rounds of closed loops: a few clients write for some seconds while a
// fault is injected and healed (faultStream), and every write is kept with
// when it was sent, so the table can say how the latency moved after the
// fault; their reference is the same stream with no fault, measured just
// before.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

func BenchmarkCluster(b *testing.B) {
	rows := benchRows()
	tab := &benchTable{}
	defer tab.print(b)
	c := startCluster(b, nil)
	for _, a := range c.apps {
		a.setQuiet()
	}
	app := c.apps[0]                           // the instance the single-instance rows measure
	all := append([]*instance(nil), c.apps...) // every instance of the app

	// The note every read row reads.
	created := c.must(b, 201, "POST", "/api/notes", []byte(`{"title":"bench","body":"the note every read row reads"}`), nil)
	var note struct {
		ID int64 `json:"id"`
	}
	created.decode(b, &note)
	readPath := fmt.Sprintf("/api/notes/%d", note.ID)

	// Two more instances on the same servers: one without its local tier
	// (every hit comes from Redis), one without any cache (CLUSTER_MODE is
	// off for it: cluster mode refuses to start without Redis).
	redisOnly := c.extraInstance(b, "bench-redis", map[string]string{"CACHE_LOCAL_SIZE": "0"})
	uncached := c.extraInstance(b, "bench-cold", map[string]string{"CACHE_LOCAL_SIZE": "0", "REDIS_URL": "", "CLUSTER_MODE": "false"})
	all = append(all, redisOnly, uncached)

	if rows["read"] {
		// The same bytes and headers as the app's answer, from a handler
		// that does nothing else.
		first := c.mustAt(b, app, 200, "GET", readPath)
		first = c.mustAt(b, app, 200, "GET", readPath)
		if got := first.header.Get("X-Cache"); got != "local" {
			b.Fatalf("second read of %s on %s: X-Cache %q, want local", readPath, app.name, got)
		}
		bare := bareServer(first)
		defer bare.Close()
		appS, bareS := compare(get(instanceURL(app)+readPath), get(bare.URL+readPath))
		tab.add("cached read", "GET "+readPath+" on one instance, local-tier hit", appS.String(), "bare net/http handler, same bytes: "+bareS.String(), appS.ratio(bareS))
		c.mustAt(b, redisOnly, 200, "GET", readPath)
		redisS, cachedS := compare(get(instanceURL(redisOnly)+readPath), get(instanceURL(app)+readPath))
		tab.add("redis read", "the same, local tier off (CACHE_LOCAL_SIZE=0): Redis hit", redisS.String(), "cached read: "+cachedS.String(), redisS.ratio(cachedS))
		coldS, cachedS2 := compare(get(instanceURL(uncached)+readPath), get(instanceURL(app)+readPath))
		tab.add("cold read", "the same, cache off (no Redis, CACHE_LOCAL_SIZE=0): database", coldS.String(), "cached read: "+cachedS2.String(), coldS.ratio(cachedS2))
	}

	if rows["lb"] {
		for _, a := range c.apps {
			c.mustAt(b, a, 200, "GET", readPath) // every instance holds the note
		}
		lbS, directS := compare(get(c.lb.URL+readPath), get(instanceURL(app)+readPath))
		tab.add("through the load balancer", fmt.Sprintf("the same read through %s to %s", c.lbKind, instances(len(c.apps))),
			lbS.String(), "direct to one instance: "+directS.String(), lbS.ratio(directS))
	}

	if rows["write"] {
		ids := c.benchNotes(b, benchClients())
		put := putNotes(app, ids)
		writeS, coldS := compare(put, get(instanceURL(uncached)+readPath))
		tab.add("write", "PUT /api/notes/{id} on one instance: database write + invalidation on every instance", writeS.String(), "cold read: "+coldS.String(), writeS.ratio(coldS))
		// Every client writes the same note: the writes take its row's
		// lock one at a time, for as long as the lock is held.
		hotS, spreadS := compare(putNotes(app, ids[:1]), put)
		tab.add("hot write", fmt.Sprintf("the same, all %d clients on one note", benchClients()), hotS.String(), "each client its own note: "+spreadS.String(), hotS.ratio(spreadS))
	}

	if rows["invalidation"] {
		w := c.benchInvalidation(b, app, all[1:], readPath, 200)
		tab.add("invalidation window", fmt.Sprintf("PUT answered on %s until none of the other %s serves the old body (%d writes; includes one GET round trip)", app.name, instances(len(all)-1), len(w.windows)),
			fmt.Sprintf("p50 %s, p99 %s, max %s; %d stale reads", ms(pct(w.windows, 0.50)), ms(pct(w.windows, 0.99)), ms(slices.Max(w.windows)), w.stale),
			fmt.Sprintf("PUT itself: p50 %s, p99 %s", ms(pct(w.puts, 0.50)), ms(pct(w.puts, 0.99))), "-")
	}

	if rows["takeover"] {
		poll := composeDuration(b, "LEADER_POLL_INTERVAL")
		d := benchTakeover(b, all, 10)
		tab.add("leader takeover", fmt.Sprintf("SIGKILL of the leader until another instance reports leader (%d kills, %d candidates)", len(d), len(all)),
			fmt.Sprintf("p50 %s, max %s", ms(pct(d, 0.50)), ms(slices.Max(d))),
			"election poll interval (LEADER_POLL_INTERVAL): "+poll.String(), fmt.Sprintf("%.2f", float64(pct(d, 0.50))/float64(poll)))
		ds := benchTakeoverPause(b, all, 5)
		tab.add("leader takeover after SIGSTOP", fmt.Sprintf("SIGSTOP of the leader (paused, its TCP sessions up) until another instance reports leader (%d pauses, %d candidates; design bound 3 x poll)", len(ds), len(all)),
			fmt.Sprintf("p50 %s, max %s", ms(pct(ds, 0.50)), ms(slices.Max(ds))),
			"election poll interval (LEADER_POLL_INTERVAL): "+poll.String(), fmt.Sprintf("%.2f", float64(pct(ds, 0.50))/float64(poll)))
	}

	if rows["lock"] {
		benchLock(b, c, tab) // clustertest/lock_test.go
	}

	if rows["queue"] {
		benchQueue(b, tab) // clustertest/queue_test.go
	}

	if rows["events"] {
		benchEvents(b, c, tab) // clustertest/events_test.go
	}

	if rows["frozen"] {
		// Issue target: write p99 on the others back under 50 ms within 3 s
		// of one instance freezing. A write waits for every live member's
		// ack, or until that member's lease (750 ms) runs out: the writes
		// under way at the pause should take about 0.8 s, the next ones
		// should not wait for the paused instance at all.
		frozen := all[1] // app-2 (bench-redis with one replica): a member, not the writer
		put := putNotes(app, c.benchNotes(b, grayClients))
		ref := faultStream(b, put, 6*time.Second, time.Second, nil, nil)
		paused := faultStream(b, put, 6*time.Second, time.Second,
			func() error { return frozen.sendSignal(syscall.SIGSTOP) },
			func() error { return frozen.sendSignal(syscall.SIGCONT) })
		// An instance that died under the fault is reported here, with its
		// output, not rows later.
		waitAllReady(b, all)
		tab.add("frozen instance", fmt.Sprintf("SIGSTOP of %s at 0 s, SIGCONT at 6 s, while %d clients PUT a note each on %s; target: write p99 back under 50 ms within 3 s of the pause (lease 750 ms)", frozen.name, grayClients, app.name),
			frozenSummary(paused, 6*time.Second), "no instance paused: "+frozenSummary(ref, 6*time.Second),
			p99Ratio(sentIn(paused, 3*time.Second, 6*time.Second), sentIn(ref, 3*time.Second, 6*time.Second)))
	}

	if rows["redisfrozen"] {
		// Issue target: while Redis is frozen, writes succeed fast or fail
		// fast (503, nothing committed): none waits more than 1 s. The
		// Redis client's timeouts are 300 ms; a write that cannot reach
		// every member must not commit.
		put := putNotes(app, c.benchNotes(b, grayClients))
		ref := sentIn(faultStream(b, put, 3*time.Second, 0, nil, nil), 0, 3*time.Second)
		refS := fmt.Sprintf("no fault, the same writes: p99 %s, max %s; %s", ms(pct(lats(ref), 0.99)), ms(slowest(ref).lat()), outcomes(ref))
		if os.Getenv("TEST_REDIS_URL") != "" {
			tab.add("redis frozen", "not measured: TEST_REDIS_URL is a Redis this test cannot pause", "-", refS, "-")
		} else {
			frozen := faultStream(b, put, 3*time.Second, 3*time.Second,
				func() error { c.redis.Signal(b, syscall.SIGSTOP); return nil },
				func() error { c.redis.Signal(b, syscall.SIGCONT); return nil })
			tab.add("redis frozen", fmt.Sprintf("SIGSTOP of Redis for 3 s while %d clients PUT a note each on %s (every write under way during the pause); target: no write waits more than 1 s", grayClients, app.name),
				gray(frozen, 3*time.Second), refS, "-")
			waitAllReady(b, all)
		}
		// A one-way cut of one instance (not the writer) from Redis, each
		// way, through its fault proxy: the other instances' writes wait
		// for its ack or its lease, as for a frozen instance.
		if len(c.apps) < 2 {
			tab.add("redis one-way cut", "not measured: one instance, and it is the writer", "-", "-", "-")
		} else {
			cut := c.apps[1]
			for _, f := range []struct {
				fault testsupport.Fault
				what  string
			}{
				{testsupport.DropToClient, "Redis to " + cut.name + " lost (its commands reach Redis; no reply, message or PONG comes back)"},
				{testsupport.DropToTarget, cut.name + " to Redis lost (its commands and acks do not reach Redis; Redis's messages reach it)"},
			} {
				rs := faultStream(b, put, 3*time.Second, 3*time.Second,
					func() error { cut.redisProxy.Set(f.fault); return nil },
					func() error { cut.redisProxy.Heal(); return nil })
				tab.add("redis one-way cut, "+f.fault.String(), fmt.Sprintf("%s, for 3 s, while %d clients PUT a note each on %s; target: no write waits more than 1 s", f.what, grayClients, app.name),
					gray(rs, 3*time.Second), refS, "-")
				waitAllReady(b, all)
			}
		}
	}

	if rows["storm"] {
		var alone time.Duration
		for _, n := range []int{1, 2, 4, 8} {
			d, applied := c.benchStorm(b, n, 3)
			if n == 1 {
				alone = d
				tab.add("migration storm, N=1", "one instance alone on an empty database until ready (median of 3)", ms(d)+"; "+applied, "-", "-")
				continue
			}
			tab.add(fmt.Sprintf("migration storm, N=%d", n), fmt.Sprintf("%d instances started at once on an empty database until all ready (median of 3)", n),
				ms(d)+"; "+applied, "one instance alone: "+ms(alone), fmt.Sprintf("%.2f", float64(d)/float64(alone)))
		}
	}

	if rows["restart"] {
		sent, failed, took := c.benchRollingRestart(b, readPath)
		tab.add("rolling restart", fmt.Sprintf("every instance restarted in turn (SIGTERM, drain, start) under steady load through %s, %v", c.lbKind, took.Round(time.Second)),
			fmt.Sprintf("%d sent, %d failed", sent, failed), "-", "-")
	}
}

// benchRows is the set of rows to run: BENCH_ROWS, or all.
func benchRows() map[string]bool {
	all := []string{"read", "lb", "write", "invalidation", "takeover", "lock", "queue", "events", "frozen", "redisfrozen", "storm", "restart"}
	rows := map[string]bool{}
	for _, r := range strings.Split(os.Getenv("BENCH_ROWS"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			rows[r] = true
		}
	}
	if len(rows) == 0 {
		for _, r := range all {
			rows[r] = true
		}
	}
	return rows
}

func benchEnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func benchClients() int { return benchEnvInt("BENCH_CLIENTS", 8) }

// setQuiet stops keeping the instance's log lines: under load it writes one
// per request.
func (a *instance) setQuiet() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.quiet = true
	a.lines = nil
}

func instanceURL(a *instance) string { return "http://" + a.addr() }

// mustAt is must against one instance directly.
func (c *cluster) mustAt(t testing.TB, a *instance, want int, method, path string) response {
	t.Helper()
	r, err := c.doAt(instanceURL(a), method, path, nil, nil)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, a.name, err)
	}
	if r.status != want {
		t.Fatalf("%s %s on %s: got %s, want %d", method, path, a.name, r, want)
	}
	return r
}

// benchNotes creates n notes for a write row, one per client: each client
// updates a note of its own, so row locks do not queue the clients behind
// one another.
func (c *cluster) benchNotes(t testing.TB, n int) []int64 {
	t.Helper()
	var ids []int64
	for range n {
		r := c.must(t, 201, "POST", "/api/notes", []byte(`{"title":"bench write","body":"0"}`), nil)
		var note struct {
			ID int64 `json:"id"`
		}
		r.decode(t, &note)
		ids = append(ids, note.ID)
	}
	return ids
}

// putNotes is the target of the write rows: client k updates note
// ids[k] on a.
func putNotes(a *instance, ids []int64) target {
	return target{want: 200, req: func(client, i int) (*http.Request, error) {
		body := fmt.Sprintf(`{"title":"bench write","body":"%d"}`, i)
		return http.NewRequest("PUT", fmt.Sprintf("%s/api/notes/%d", instanceURL(a), ids[client%len(ids)]), strings.NewReader(body))
	}}
}

// extraInstance starts one more instance of the app with the environment
// of app-1 (as startCluster maps it) plus overrides, outside the load
// balancer. It is killed when the benchmark ends.
func (c *cluster) extraInstance(t testing.TB, name string, overrides map[string]string) *instance {
	t.Helper()
	p, err := loadCompose()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"INSTANCE_ID": name}
	for k, v := range overrides {
		env[k] = v
	}
	port := testsupport.FreePort(t)
	e, err := c.instanceEnv(p, p.Services[p.Apps[0]].Environment, port, env)
	if err != nil {
		t.Fatal(err)
	}
	a := &instance{name: name, port: port, bin: c.apps[0].bin, env: e, quiet: true}
	t.Cleanup(a.kill)
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	if err := a.waitReady(60 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, a.tail(40))
	}
	return a
}

// target is what the load generator sends: req builds the i-th request of
// a client; an answer with another status than want counts as an error.
type target struct {
	req  func(client, i int) (*http.Request, error)
	want int
}

func get(url string) target {
	return target{want: 200, req: func(int, int) (*http.Request, error) { return http.NewRequest("GET", url, nil) }}
}

// series is what one target gave: requests that started in the measured
// time, their latencies, and the errors among them.
type series struct {
	reqs     int
	errs     int
	elapsed  time.Duration
	lat      []time.Duration
	firstErr string
}

func (s series) rps() float64 { return float64(s.reqs) / s.elapsed.Seconds() }

func (s series) String() string {
	out := fmt.Sprintf("%.0f req/s, p50 %s, p99 %s", s.rps(), ms(pct(s.lat, 0.50)), ms(pct(s.lat, 0.99)))
	if s.errs > 0 {
		out += fmt.Sprintf(", %d errors (%s)", s.errs, s.firstErr)
	}
	return out
}

// ratio compares throughputs: s's requests/s over ref's.
func (s series) ratio(ref series) string { return fmt.Sprintf("%.2f", s.rps()/ref.rps()) }

func (s *series) add(o series) {
	s.reqs += o.reqs
	s.errs += o.errs
	s.elapsed += o.elapsed
	s.lat = append(s.lat, o.lat...)
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
}

// compare measures a and its reference b in alternating rounds (a b, b a,
// a b), so that both see the same machine.
func compare(a, b target) (series, series) {
	d := time.Duration(benchEnvInt("BENCH_SECONDS", 2)) * time.Second
	var sa, sb series
	for round := range 3 {
		if round%2 == 0 {
			sa.add(drive(a, d))
			sb.add(drive(b, d))
		} else {
			sb.add(drive(b, d))
			sa.add(drive(a, d))
		}
	}
	return sa, sb
}

// drive runs the closed loop of benchClients clients against tg for a
// warm-up, then d; requests that start during d are counted.
func drive(tg target, d time.Duration) series {
	clients := benchClients()
	tr := &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: 2 * clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	from := time.Now().Add(300 * time.Millisecond)
	until := from.Add(d)
	results := make([]series, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			s := &results[w]
			s.lat = make([]time.Duration, 0, 1<<14)
			for i := 0; ; i++ {
				t0 := time.Now()
				if t0.After(until) {
					return
				}
				err := send(client, tg, w, i)
				if t0.Before(from) {
					continue
				}
				s.reqs++
				s.lat = append(s.lat, time.Since(t0))
				if err != nil {
					s.errs++
					if s.firstErr == "" {
						s.firstErr = err.Error()
					}
				}
			}
		})
	}
	wg.Wait()
	var total series
	for _, s := range results {
		total.add(s)
	}
	total.elapsed = d
	return total
}

func send(client *http.Client, tg target, w, i int) error {
	status, err := roundTrip(client, tg, w, i)
	if err == nil && status != tg.want {
		err = fmt.Errorf("status %d, want %d", status, tg.want)
	}
	return err
}

// roundTrip sends the i-th request of client w and reads the whole answer.
func roundTrip(client *http.Client, tg target, w, i int) (status int, err error) {
	req, err := tg.req(w, i)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// bareServer answers every request with r's status, headers and body.
func bareServer(r response) *httptest.Server {
	header := r.header.Clone()
	header.Del("Date")
	header.Del("Content-Length")
	body := bytes.Clone(r.body)
	status := r.status
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		for k, v := range header {
			h[k] = v
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
}

// pct is the p-quantile of ds (nearest rank).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

// benchTable is the one table the benchmark prints.
type benchTable struct {
	mu   sync.Mutex
	rows [][5]string
}

func (t *benchTable) add(row, what, measured, reference, ratio string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows = append(t.rows, [5]string{row, what, measured, reference, ratio})
}

func (t *benchTable) print(b *testing.B) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out strings.Builder
	fmt.Fprintf(&out, "\n%d CPUs (GOMAXPROCS %d), %s, %s/%s; %d load-generator clients, %ss per series round\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel(), runtime.GOOS, runtime.GOARCH, benchClients(), strconv.Itoa(benchEnvInt("BENCH_SECONDS", 2)))
	out.WriteString("| row | what | measured | reference | ratio |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range t.rows {
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3], r[4])
	}
	if b.Failed() {
		out.WriteString("(the benchmark failed: the table is incomplete)\n")
	}
	fmt.Print(out.String())
}

// cpuModel is the first "model name" of /proc/cpuinfo, when there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

type invalidationResult struct {
	windows []time.Duration // per write: until the last other instance served the new body
	puts    []time.Duration // per write: the PUT's own latency
	stale   int             // reads of the old body after the PUT answered
}

// benchInvalidation updates the note on writer n times. Before each write
// every other instance has the note in its local tier (two reads); after
// the PUT answered, each is polled until it serves the new body.
func (c *cluster) benchInvalidation(t testing.TB, writer *instance, others []*instance, path string, n int) invalidationResult {
	t.Helper()
	var res invalidationResult
	var stale atomic.Int64
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		for _, o := range others {
			c.mustAt(t, o, 200, "GET", path)
			c.mustAt(t, o, 200, "GET", path)
		}
		want := fmt.Sprintf("window %d", i)
		p0 := time.Now()
		r, err := c.doAt(instanceURL(writer), "PUT", path, fmt.Appendf(nil, `{"title":"bench","body":%q}`, want), nil)
		if err != nil || r.status != 200 {
			t.Fatalf("PUT %s: %v %v", path, r, err)
		}
		answered := time.Now()
		res.puts = append(res.puts, answered.Sub(p0))
		var mu sync.Mutex
		var worst time.Duration
		var wg sync.WaitGroup
		for _, o := range others {
			wg.Go(func() {
				for end := answered.Add(5 * time.Second); time.Now().Before(end); {
					r, err := c.doAt(instanceURL(o), "GET", path, nil, nil)
					if err != nil || r.status != 200 {
						continue
					}
					var got struct {
						Body string `json:"body"`
					}
					if json.Unmarshal(r.body, &got) == nil && got.Body == want {
						d := time.Since(answered)
						mu.Lock()
						worst = max(worst, d)
						mu.Unlock()
						return
					}
					stale.Add(1)
				}
				mu.Lock()
				worst = max(worst, 5*time.Second)
				mu.Unlock()
			})
		}
		wg.Wait()
		res.windows = append(res.windows, worst)
	}
	res.stale = int(stale.Load())
	return res
}

// composeDuration is a duration from the app's environment in docker-compose.yml.
func composeDuration(t testing.TB, name string) time.Duration {
	t.Helper()
	p, err := loadCompose()
	if err != nil {
		t.Fatal(err)
	}
	d, err := time.ParseDuration(p.Services[p.Apps[0]].Environment[name])
	if err != nil {
		t.Fatalf("docker-compose.yml: %s: %v", name, err)
	}
	return d
}

// benchTakeover kills the leader among insts (SIGKILL) kills times, and
// measures each time until another instance reports leading; the killed
// instance is started again before the next kill.
func benchTakeover(t testing.TB, insts []*instance, kills int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for range kills {
		leader := waitLeader(t, insts, nil)
		killed := time.Now()
		leader.kill()
		waitLeader(t, insts, leader)
		out = append(out, time.Since(killed))
		if err := leader.start(); err != nil {
			t.Fatal(err)
		}
		if err := leader.waitReady(60 * time.Second); err != nil {
			t.Fatalf("%v\n%s", err, leader.tail(40))
		}
	}
	return out
}

// benchTakeoverPause stops the leader among insts (SIGSTOP) pauses times,
// and measures each time until another instance reports leading; then it
// resumes the paused one (SIGCONT), which reports not leading at once.
func benchTakeoverPause(t testing.TB, insts []*instance, pauses int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for range pauses {
		leader := waitLeader(t, insts, nil)
		paused := time.Now()
		if err := leader.sendSignal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		waitLeader(t, insts, leader)
		out = append(out, time.Since(paused))
		if err := leader.sendSignal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// waitLeader polls every instance but not directly, every 5ms, until one
// reports leading, and returns it.
func waitLeader(t testing.TB, insts []*instance, not *instance) *instance {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		for _, a := range insts {
			if a != not && leads(client, a) {
				return a
			}
		}
	}
	t.Fatalf("no instance reported leading within 30s")
	return nil
}

// grayClients is the number of writers of the gray-failure rows: a few, so
// that the latency they see is the fault's, not the queue's.
const grayClients = 4

// timedReq is one request of faultStream. Times are since the fault was
// injected (negative: before it).
type timedReq struct {
	start, end time.Duration
	status     int    // 0: no answer
	err        string // why there was no answer
}

func (r timedReq) lat() time.Duration { return r.end - r.start }

// faultStream runs grayClients closed-loop clients against tg: 1 s of
// steady load, then inject (time zero of the result), hold, heal, and after
// more; every request sent is returned. With inject nil it is the same
// stream with no fault: the reference. heal runs once inject was called,
// whatever happens next (a deferred call covers a failed benchmark), so
// nothing stays paused or cut. The clients stop sending at the end of after
// by themselves; a request still under way is waited for, bounded by the
// client's 10 s timeout.
func faultStream(t testing.TB, tg target, hold, after time.Duration, inject, heal func() error) []timedReq {
	t.Helper()
	const lead = time.Second
	tr := &http.Transport{MaxIdleConns: 2 * grayClients, MaxIdleConnsPerHost: 2 * grayClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	began := time.Now()
	until := lead + hold + after
	results := make([][]timedReq, grayClients)
	var wg sync.WaitGroup
	for w := range grayClients {
		wg.Go(func() {
			for i := 0; i < 1<<20; i++ {
				t0 := time.Since(began)
				if t0 >= until {
					return
				}
				status, err := roundTrip(client, tg, w, i)
				r := timedReq{start: t0, end: time.Since(began), status: status}
				if err != nil {
					r.status, r.err = 0, err.Error()
				}
				results[w] = append(results[w], r)
			}
		})
	}
	time.Sleep(lead)
	zero := time.Since(began)
	if inject != nil {
		healOnce := sync.OnceValue(heal)
		defer healOnce()
		if err := inject(); err != nil {
			t.Errorf("inject the fault: %v", err)
		}
		time.Sleep(hold)
		if err := healOnce(); err != nil {
			t.Errorf("heal the fault: %v", err)
		}
	} else {
		time.Sleep(hold)
	}
	wg.Wait()
	var out []timedReq
	for _, rs := range results {
		for _, r := range rs {
			r.start -= zero
			r.end -= zero
			out = append(out, r)
		}
	}
	return out
}

// during is the requests of rs under way at some time in [from, to).
func during(rs []timedReq, from, to time.Duration) []timedReq {
	var out []timedReq
	for _, r := range rs {
		if r.start < to && r.end > from {
			out = append(out, r)
		}
	}
	return out
}

// sentIn is the requests of rs sent in [from, to).
func sentIn(rs []timedReq, from, to time.Duration) []timedReq {
	var out []timedReq
	for _, r := range rs {
		if r.start >= from && r.start < to {
			out = append(out, r)
		}
	}
	return out
}

func lats(rs []timedReq) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = r.lat()
	}
	return out
}

// slowest is the request of rs that took longest (zero if rs is empty).
func slowest(rs []timedReq) timedReq {
	var w timedReq
	for _, r := range rs {
		if r.lat() > w.lat() {
			w = r
		}
	}
	return w
}

// slowerThan counts the requests of rs that took longer than d, and when
// the last of them was sent.
func slowerThan(rs []timedReq, d time.Duration) (n int, last time.Duration) {
	for _, r := range rs {
		if r.lat() > d {
			n++
			last = max(last, r.start)
		}
	}
	return n, last
}

// outcomes counts rs by status, with the slowest of each, e.g. "812 x 200
// (max 4.1 ms), 3 x 503 (max 310 ms)": errors are reported, never hidden
// in a latency, and a fast failure is told from a slow one.
func outcomes(rs []timedReq) string {
	by := map[int][]timedReq{}
	for _, r := range rs {
		by[r.status] = append(by[r.status], r)
	}
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(by)) {
		if status != 0 {
			parts = append(parts, fmt.Sprintf("%d x %d (max %s)", len(by[status]), status, ms(slowest(by[status]).lat())))
		}
	}
	if none := by[0]; len(none) > 0 {
		parts = append(parts, fmt.Sprintf("%d without answer (max %s; %s)", len(none), ms(slowest(none).lat()), none[0].err))
	}
	if len(parts) == 0 {
		return "no requests"
	}
	return strings.Join(parts, ", ")
}

// at is a time of a fault stream, relative to the fault: "+0.79 s".
func at(d time.Duration) string { return fmt.Sprintf("%+.2f s", d.Seconds()) }

// p99Ratio compares the p99 latencies of two request sets.
func p99Ratio(rs, ref []timedReq) string {
	if len(rs) == 0 || len(ref) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(pct(lats(rs), 0.99))/float64(pct(lats(ref), 0.99)))
}

// frozenSummary sums up the frozen-instance stream (or its reference),
// paused for hold: p50 and p99 of the writes under way in the first 3 s,
// p99 of those sent from 3 s on, the slowest, the writes over 50 ms among
// those answered before the resume, and the writes under way in the
// second after it (from hold on).
func frozenSummary(rs []timedReq, hold time.Duration) string {
	early, late := during(rs, 0, 3*time.Second), sentIn(rs, 3*time.Second, hold)
	var paused []timedReq // answered before the resume: only the pause can slow them
	for _, r := range during(rs, 0, hold) {
		if r.end < hold {
			paused = append(paused, r)
		}
	}
	worst := slowest(paused)
	over, last := slowerThan(paused, 50*time.Millisecond)
	after := during(rs, hold, hold+time.Second)
	return fmt.Sprintf("0-3 s: p50 %s, p99 %s; 3-%.0f s: p99 %s; max %s (sent at %s); %d over 50 ms, the last sent at %s; %s; %.0f-%.0f s: %s",
		ms(pct(lats(early), 0.50)), ms(pct(lats(early), 0.99)), hold.Seconds(), ms(pct(lats(late), 0.99)), ms(worst.lat()), at(worst.start),
		over, at(last), outcomes(paused), hold.Seconds(), hold.Seconds()+1, outcomes(after))
}

// gray sums up a fault stream whose fault lasted hold: the writes under way
// during the fault (latency, how many over 1 s, how many over 50 ms and
// when the last of those was sent: how long the fault slowed writes down,
// outcomes), how long after
// the heal the first 200 was answered (to any write, also one sent during
// the fault), and the writes sent after the heal.
func gray(rs []timedReq, hold time.Duration) string {
	in := during(rs, 0, hold)
	worst := slowest(in)
	over, _ := slowerThan(in, time.Second)
	slow, last := slowerThan(in, 50*time.Millisecond)
	out := fmt.Sprintf("%d writes under way during the fault: p99 %s, max %s (sent at %s), %d over 1 s, %d over 50 ms (the last sent at %s); %s",
		len(in), ms(pct(lats(in), 0.99)), ms(worst.lat()), at(worst.start), over, slow, at(last), outcomes(in))
	firstOK := time.Duration(-1) // since the heal
	for _, r := range rs {
		if r.status == 200 && r.end >= hold && (firstOK < 0 || r.end-hold < firstOK) {
			firstOK = r.end - hold
		}
	}
	healed := sentIn(rs, hold, math.MaxInt64)
	if firstOK < 0 {
		return out + "; after the heal: no 200 at all; writes sent after it: " + outcomes(healed)
	}
	return out + fmt.Sprintf("; after the heal: the first 200 %s after it; writes sent after it: %s", ms(firstOK), outcomes(healed))
}

// waitAllReady waits until every instance of insts answers /readyz with
// 200 again after a fault was healed.
func waitAllReady(t testing.TB, insts []*instance) {
	t.Helper()
	for _, a := range insts {
		if err := a.waitReady(30 * time.Second); err != nil {
			t.Fatalf("after the fault healed: %v\n%s", err, a.tail(40))
		}
	}
}

// stormPoll is how often benchStorm asks each instance whether it is ready:
// the time comes out rounded up to the next ask. With the 50ms of waitReady
// an instance ready after 52ms counted as about 105ms, so the rows moved in
// steps of about 50ms, from one run to the next as well as from one change
// to the next (one more migration, about 5ms of startup, read as 50ms
// more). An ask that finds no listener yet costs one refused loopback
// connection.
const stormPoll = 5 * time.Millisecond

// benchStorm starts n instances at the same moment on an empty database,
// reps times, and returns the median time until all were ready (within
// stormPoll), with how often each migration was applied (it must be once).
func (c *cluster) benchStorm(t testing.TB, n, reps int) (time.Duration, string) {
	t.Helper()
	p, err := loadCompose()
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Duration
	applied := ""
	for rep := range reps {
		dbURL := testsupport.Postgres(t)
		insts := make([]*instance, n)
		for i := range insts {
			port := testsupport.FreePort(t)
			name := fmt.Sprintf("storm-%d-%d-%d", n, rep, i+1)
			e, err := c.instanceEnv(p, p.Services[p.Apps[0]].Environment, port, map[string]string{"INSTANCE_ID": name, "DATABASE_URL": dbURL})
			if err != nil {
				t.Fatal(err)
			}
			insts[i] = &instance{name: name, port: port, bin: c.apps[0].bin, env: e, quiet: true}
		}
		began := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, a := range insts {
			wg.Go(func() {
				if errs[i] = a.start(); errs[i] == nil {
					errs[i] = a.waitReadyEvery(60*time.Second, stormPoll)
				}
			})
		}
		wg.Wait()
		times = append(times, time.Since(began))
		for _, a := range insts {
			a.kill()
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("storm of %d: %s: %v\n%s", n, insts[i].name, err, insts[i].tail(40))
			}
		}
		counts := testsupport.PSQL(t, dbURL, "SELECT string_agg(c::text, ',') FROM (SELECT count(*) c FROM goose_db_version WHERE version_id > 0 AND is_applied GROUP BY version_id ORDER BY version_id) v")
		if rep == 0 {
			applied = "migrations applied " + counts + " times"
		} else if "migrations applied "+counts+" times" != applied {
			applied += " / " + counts
		}
	}
	slices.Sort(times)
	return times[len(times)/2], applied
}

// benchRollingRestart restarts every instance of the cluster in turn (as
// TestRollingRestart does) while 4 clients send reads and updates through
// the load balancer, each pausing 2ms between requests.
func (c *cluster) benchRollingRestart(t testing.TB, readPath string) (sent, failed int64, took time.Duration) {
	t.Helper()
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	defer stop()
	var wg sync.WaitGroup
	var nSent, nFailed atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && nSent.Load() < 200000; i++ {
				method, path, want := "GET", readPath, 200
				var body []byte
				if i%4 == 3 {
					method = "PUT"
					body = fmt.Appendf(nil, `{"title":"bench","body":"restart %d-%d"}`, w, i)
				}
				nSent.Add(1)
				r, err := c.do(method, path, body, nil)
				if err != nil || r.status != want {
					nFailed.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	began := time.Now()
	time.Sleep(time.Second)
	for _, a := range c.apps {
		c.restart(t, a)
	}
	time.Sleep(time.Second)
	took = time.Since(began)
	stop()
	wg.Wait()
	return nSent.Load(), nFailed.Load(), took
}
