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
// BENCH_ROWS=read,lb selects rows: read, lb, restart.

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	"testing"
	"time"
)

func BenchmarkCluster(b *testing.B) {
	rows := benchRows()
	tab := &benchTable{}
	defer tab.print(b)
	c := startCluster(b, nil)
	for _, a := range c.apps {
		a.setQuiet()
	}
	app := c.apps[0] // the instance the single-instance rows measure
	readPath := "/api/instance"

	if rows["read"] {
		// The same bytes and headers as the app's answer, from a handler
		// that does nothing else.
		first := c.mustAt(b, app, 200, "GET", readPath)
		first = c.mustAt(b, app, 200, "GET", readPath)
		bare := bareServer(first)
		defer bare.Close()
		appS, bareS := compare(get(instanceURL(app)+readPath), get(bare.URL+readPath))
		tab.add("read", "GET "+readPath+" on one instance", appS.String(), "bare net/http handler, same bytes: "+bareS.String(), appS.ratio(bareS))
	}

	if rows["lb"] {
		for _, a := range c.apps {
			c.mustAt(b, a, 200, "GET", readPath) // every instance holds the note
		}
		lbS, directS := compare(get(c.lb.URL+readPath), get(instanceURL(app)+readPath))
		tab.add("through the load balancer", fmt.Sprintf("the same read through %s to %s", c.lbKind, instances(len(c.apps))),
			lbS.String(), "direct to one instance: "+directS.String(), lbS.ratio(directS))
	}

	if rows["restart"] {
		sent, failed, took := c.benchRollingRestart(b, readPath)
		tab.add("rolling restart", fmt.Sprintf("every instance restarted in turn (SIGTERM, drain, start) under steady load through %s, %v", c.lbKind, took.Round(time.Second)),
			fmt.Sprintf("%d sent, %d failed", sent, failed), "-", "-")
	}
}

// benchRows is the set of rows to run: BENCH_ROWS, or all.
func benchRows() map[string]bool {
	all := []string{"read", "lb", "restart"}
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

// benchRollingRestart restarts every instance of the cluster in turn (as
// TestRollingRestart does) while 4 clients send reads through
// the load balancer, each pausing 2ms between requests.
func (c *cluster) benchRollingRestart(t testing.TB, readPath string) (sent, failed int64, took time.Duration) {
	t.Helper()
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	defer stop()
	var wg sync.WaitGroup
	var nSent, nFailed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && nSent.Load() < 200000; i++ {
				method, path, want := "GET", readPath, 200
				var body []byte
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
