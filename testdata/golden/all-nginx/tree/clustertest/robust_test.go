package clustertest

// The robustness suite (issue 8): clients read and write notes through the
// load balancer and directly against each instance while a nemesis injects
// one kind of fault (a process killed or frozen, a dependency restarted,
// emptied or cut off from one instance); then the fault heals, the clients
// go on for a quiet period, and the history is checked:
//
//   - linearizability (github.com/anishathalye/porcupine), one register per
//     note: a read returns the value of the last write that took effect, or
//     404 when the note was deleted. A write that got a 5xx, a timeout or a
//     connection error is indeterminate: it may take effect at any time
//     after it was sent, or never;
//   - lost writes: after the quiet period every note's value in PostgreSQL
//     must be one the history allows, and every acknowledged create exists
//     (unless a delete was sent);
//   - with the worker: duplicate runs of a slot and time without a leader
//     (robust_worker_test.go).
//
// On a violation the test fails and leaves the history (history.json and
// porcupine's history.html) in a directory it prints, with the seed.
//
//	go test -run TestRobust ./clustertest/                       # every nemesis once, a few seconds of fault each
//	ROBUST_DURATION=60s go test -timeout 2h -run TestRobust ./clustertest/   # a minute of fault each
//	ROBUST_SEED=1234 go test -run 'TestRobust/app-sigkill' ./clustertest/  # replay a run's choices

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"example.com/acme/shop/testsupport"
)

// A nemesis injects one kind of fault into a running cluster and returns
// how to heal it. Faults last r.fault unless the nemesis says otherwise.
type nemesis struct {
	name   string
	env    map[string]string // cluster settings the nemesis needs
	inject func(t *testing.T, r *robustRun) (heal func())
	// observe, if set, runs beside the clients until stop (a feature's
	// observer); check, if set, runs after the history check (its counters).
	observe func(t *testing.T, r *robustRun, stop <-chan struct{})
	check   func(t *testing.T, r *robustRun)
}

// The nemeses of a cluster with a database: app instances and PostgreSQL
// (and MinIO).
func TestRobust(t *testing.T) {
	runNemeses(t, []nemesis{
		{name: "app-sigkill", inject: func(t *testing.T, r *robustRun) func() {
			a := r.c.apps[0]
			a.kill()
			return func() { r.restartInstance(t, a) }
		}},
		{name: "app-sigstop", inject: func(t *testing.T, r *robustRun) func() {
			a := r.c.apps[0]
			a.send(t, syscall.SIGSTOP)
			return func() { a.send(t, syscall.SIGCONT) }
		}},
		{name: "pg-blackhole-one-instance", inject: func(t *testing.T, r *robustRun) func() {
			p := r.c.apps[0].dbProxy
			p.Set(testsupport.Blackhole)
			return p.Heal
		}},
		{name: "pg-oneway-answers-lost", inject: func(t *testing.T, r *robustRun) func() {
			p := r.c.apps[0].dbProxy
			p.Set(testsupport.DropToClient)
			return p.Heal
		}},
		{name: "pg-oneway-requests-lost", inject: func(t *testing.T, r *robustRun) func() {
			p := r.c.apps[0].dbProxy
			p.Set(testsupport.DropToTarget)
			return p.Heal
		}},
		{name: "pg-restart-fast", inject: func(t *testing.T, r *robustRun) func() {
			testsupport.PostgresRestart(t, "fast", r.fault)
			return func() {}
		}},
		{name: "pg-restart-immediate", inject: func(t *testing.T, r *robustRun) func() {
			testsupport.PostgresRestart(t, "immediate", r.fault)
			return func() {}
		}},
		// Notes do not use MinIO: a dead MinIO must not take their
		// instances down with it (readiness, shared pools).
		{name: "minio-sigkill", inject: func(t *testing.T, r *robustRun) func() {
			r.c.minio.Kill(t)
			return func() { r.c.minio.Start(t) }
		}},
	})
}

// robustSettings: ROBUST_DURATION is how long each fault lasts (default
// 3s; the quiet period after the heal is as long, at least 3s);
// ROBUST_SEED replays the clients' choices of a run.
func robustSettings(t *testing.T) (fault time.Duration, seed uint64) {
	t.Helper()
	fault = 3 * time.Second
	if v := os.Getenv("ROBUST_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("ROBUST_DURATION=%q: want a duration such as 60s", v)
		}
		fault = d
	}
	seed = uint64(time.Now().UnixNano())
	if v := os.Getenv("ROBUST_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ROBUST_SEED=%q: want a number", v)
		}
		seed = s
	}
	return fault, seed
}

func runNemeses(t *testing.T, list []nemesis) {
	for _, n := range list {
		t.Run(n.name, func(t *testing.T) { runRobust(t, n) })
	}
}

// robustRun is one nemesis against one cluster, and its history.
type robustRun struct {
	c      *cluster
	fault  time.Duration
	seed   uint64
	began  time.Time
	client *http.Client // short timeout: a request without an answer is indeterminate

	faulted, healed time.Time // when the fault began and was healed

	mu      sync.Mutex
	ops     []historyOp
	notes   []int64 // note ids the clients work on
	nextCID int     // client ids of indeterminate operations (visualization rows)
}

// historyOp is one operation as the client saw it.
type historyOp struct {
	Client  int       `json:"client"`
	Target  string    `json:"target"` // lb, app-N or db (the final read)
	Input   noteInput `json:"input"`
	Output  noteOut   `json:"output"`
	Call    int64     `json:"call_ns"`   // since the run began
	Return  int64     `json:"return_ns"` // -1: indeterminate
	Details string    `json:"details,omitempty"`
}

type noteInput struct {
	Op    string `json:"op"` // create, put, get, delete
	ID    int64  `json:"id"`
	Value string `json:"value,omitempty"`
}

type noteOut struct {
	Status  int    `json:"status"` // 0 when unknown
	Value   string `json:"value,omitempty"`
	Unknown bool   `json:"unknown,omitempty"` // indeterminate write
}

func (r *robustRun) now() int64 { return time.Since(r.began).Nanoseconds() }

func (r *robustRun) add(op historyOp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

func runRobust(t *testing.T, n nemesis) {
	fault, seed := robustSettings(t)
	c := startCluster(t, n.env)
	r := &robustRun{c: c, fault: fault, seed: seed, began: time.Now(), nextCID: 1000,
		client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	t.Cleanup(r.client.CloseIdleConnections)
	t.Logf("nemesis %s, fault %v, ROBUST_SEED=%d", n.name, fault, seed)
	for i := 0; i < 3; i++ {
		r.create(0, "lb", fmt.Sprintf("init-%d", i))
	}
	if len(r.notes) == 0 {
		t.Fatal("no note could be created before the fault")
	}

	// Clients, each bounded in operations and time.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const clients = 8
	for id := 1; id <= clients; id++ {
		wg.Go(func() { r.client1(id, stop) })
	}
	var extra sync.WaitGroup
	if n.observe != nil {
		extra.Go(func() { n.observe(t, r, stop) })
	}

	quiet := max(fault, 3*time.Second)
	time.Sleep(time.Second)
	faultAt := time.Now()
	heal := n.inject(t, r)
	time.Sleep(fault - min(fault, time.Since(faultAt)))
	healing := time.Now()
	heal()
	healedAt := time.Now()
	t.Logf("fault for %v, healed in %v; quiet period %v", healing.Sub(faultAt).Round(time.Millisecond), healedAt.Sub(healing).Round(time.Millisecond), quiet)
	time.Sleep(quiet)
	close(stop)
	wg.Wait()
	extra.Wait()

	// Final reads: each note through every instance, then in PostgreSQL.
	for _, id := range r.noteIDs() {
		for _, a := range c.apps {
			r.get(0, a.name, "http://"+a.addr(), id)
		}
	}
	final := r.finalDB(t)
	r.faulted, r.healed = faultAt, healedAt
	r.check(t, n.name, final)
	if n.check != nil {
		n.check(t, r)
	}
}

// client1 is one client: random operations on random notes, through the
// load balancer or straight to a random instance, until stop (at most
// 20000 operations).
func (r *robustRun) client1(id int, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(r.seed, uint64(id)))
	for seq := 0; seq < 20000; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		// Each client has a home (the load balancer or one instance) and
		// strays now and then: a frozen or cut-off instance holds up only
		// some of the clients.
		home := id % (len(r.c.apps) + 1)
		if rng.IntN(4) == 0 {
			home = rng.IntN(len(r.c.apps) + 1)
		}
		target, base := "lb", r.c.lb.URL
		if home > 0 {
			a := r.c.apps[home-1]
			target, base = a.name, "http://"+a.addr()
		}
		ids := r.noteIDs()
		note := ids[rng.IntN(len(ids))]
		value := fmt.Sprintf("c%d-%d", id, seq)
		switch p := rng.IntN(100); {
		case p < 55:
			r.get(id, target, base, note)
		case p < 85:
			r.put(id, target, base, note, value)
		case p < 90:
			r.del(id, target, base, note)
		default:
			if len(ids) < 6 {
				r.create(id, target, value)
			} else {
				r.get(id, target, base, note)
			}
		}
		time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
	}
}

func (r *robustRun) noteIDs() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.notes...)
}

// send is one HTTP request; status 0 with err when no answer came.
func (r *robustRun) send(method, url string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// write records a write: acknowledged (the status says what happened) or
// indeterminate (5xx, timeout, connection error).
func (r *robustRun) write(client int, target string, in noteInput, call int64, status int, body []byte, err error) {
	op := historyOp{Client: client, Target: target, Input: in, Call: call, Return: r.now(), Output: noteOut{Status: status}}
	if err != nil || status >= 500 || status == 0 {
		op.Output = noteOut{Unknown: true}
		op.Return = -1
		op.Details = fmt.Sprintf("status %d, err %v: %s", status, err, bytes.TrimSpace(body))
		r.mu.Lock()
		op.Client = r.nextCID
		r.nextCID++
		r.mu.Unlock()
	}
	r.add(op)
}

func noteJSON(value string) []byte {
	return fmt.Appendf(nil, `{"title":"robust","body":%q}`, value)
}

func (r *robustRun) create(client int, target, value string) {
	base := r.c.lb.URL
	if target != "lb" {
		base = "http://" + r.c.byName(target).addr()
	}
	call := r.now()
	status, body, err := r.send("POST", base+"/api/notes", noteJSON(value))
	if err != nil || status != 201 {
		return // the id is unknown: nothing the history could refer to
	}
	var n struct {
		ID int64 `json:"id"`
	}
	if json.Unmarshal(body, &n) != nil || n.ID == 0 {
		return
	}
	r.add(historyOp{Client: client, Target: target, Input: noteInput{Op: "create", ID: n.ID, Value: value},
		Call: call, Return: r.now(), Output: noteOut{Status: status}})
	r.mu.Lock()
	r.notes = append(r.notes, n.ID)
	r.mu.Unlock()
}

func (r *robustRun) put(client int, target, base string, id int64, value string) {
	call := r.now()
	status, body, err := r.send("PUT", fmt.Sprintf("%s/api/notes/%d", base, id), noteJSON(value))
	r.write(client, target, noteInput{Op: "put", ID: id, Value: value}, call, status, body, err)
}

func (r *robustRun) del(client int, target, base string, id int64) {
	call := r.now()
	status, body, err := r.send("DELETE", fmt.Sprintf("%s/api/notes/%d", base, id), nil)
	r.write(client, target, noteInput{Op: "delete", ID: id}, call, status, body, err)
}

// get records a read that answered 200 or 404; any other read says
// nothing about the note and is left out.
func (r *robustRun) get(client int, target, base string, id int64) {
	call := r.now()
	status, body, err := r.send("GET", fmt.Sprintf("%s/api/notes/%d", base, id), nil)
	if err != nil || (status != 200 && status != 404) {
		return
	}
	out := noteOut{Status: status}
	if status == 200 {
		var n struct {
			Body string `json:"body"`
		}
		if json.Unmarshal(body, &n) != nil {
			return
		}
		out.Value = n.Body
	}
	r.add(historyOp{Client: client, Target: target, Input: noteInput{Op: "get", ID: id}, Call: call, Return: r.now(), Output: out})
}

// finalDB reads every note's value in PostgreSQL, after everything else.
func (r *robustRun) finalDB(t *testing.T) []historyOp {
	t.Helper()
	call := r.now()
	rows := testsupport.PSQL(t, r.c.dbURL, "SELECT id || ' ' || body FROM notes")
	ret := r.now()
	inDB := map[int64]string{}
	for _, line := range strings.Split(rows, "\n") {
		idText, body, ok := strings.Cut(line, " ")
		if id, err := strconv.ParseInt(idText, 10, 64); ok && err == nil {
			inDB[id] = body
		}
	}
	var out []historyOp
	for _, id := range r.noteIDs() {
		op := historyOp{Client: 0, Target: "db", Input: noteInput{Op: "get", ID: id}, Call: call, Return: ret, Output: noteOut{Status: 404}}
		if v, ok := inDB[id]; ok {
			op.Output = noteOut{Status: 200, Value: v}
		}
		out = append(out, op)
	}
	return out
}

// noteModel is one register per note; the state is the body, "" when the
// note does not exist (bodies written here are never empty).
var noteModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byID := map[int64][]porcupine.Operation{}
		var ids []int64
		for _, op := range history {
			id := op.Input.(noteInput).ID
			if _, ok := byID[id]; !ok {
				ids = append(ids, id)
			}
			byID[id] = append(byID[id], op)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		var out [][]porcupine.Operation
		for _, id := range ids {
			out = append(out, byID[id])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{""} },
	Step: func(state, input, output interface{}) []interface{} {
		s, in, out := state.(string), input.(noteInput), output.(noteOut)
		exists := s != ""
		switch in.Op {
		case "get":
			if (out.Status == 200 && out.Value == s && exists) || (out.Status == 404 && !exists) {
				return []interface{}{s}
			}
		case "create":
			if !exists {
				return []interface{}{in.Value}
			}
		case "put":
			switch {
			case out.Unknown && exists:
				return []interface{}{s, in.Value}
			case out.Unknown, out.Status == 404 && !exists:
				return []interface{}{s}
			case out.Status == 200 && exists:
				return []interface{}{in.Value}
			}
		case "delete":
			switch {
			case out.Unknown:
				return []interface{}{s, ""}
			case out.Status == 404 && !exists, out.Status == 204 && exists:
				return []interface{}{""}
			}
		}
		return nil
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(noteInput), output.(noteOut)
		res := strconv.Itoa(out.Status)
		if out.Unknown {
			res = "?"
		} else if out.Value != "" {
			res += " " + out.Value
		}
		if in.Value != "" {
			return fmt.Sprintf("%s(%d, %s) -> %s", in.Op, in.ID, in.Value, res)
		}
		return fmt.Sprintf("%s(%d) -> %s", in.Op, in.ID, res)
	},
	DescribeState: func(state interface{}) string {
		if state.(string) == "" {
			return "absent"
		}
		return state.(string)
	},
}

// porcupineOps converts the history; an indeterminate write returns at end
// (it may take effect at any time up to then, or never).
func porcupineOps(ops []historyOp, end int64) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		ret := op.Return
		if ret < 0 {
			ret = end
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: op.Input, Call: op.Call, Output: op.Output, Return: ret,
			Metadata: op.Target})
	}
	return out
}

// check runs the checker on the history: first the clients' operations
// (stale reads), then with the final values in PostgreSQL (lost writes).
func (r *robustRun) check(t *testing.T, name string, final []historyOp) {
	t.Helper()
	r.mu.Lock()
	ops := append([]historyOp(nil), r.ops...)
	r.mu.Unlock()
	var end int64
	for _, op := range ops {
		end = max(end, op.Call, op.Return)
	}
	indeterminate := 0
	for _, op := range ops {
		if op.Return < 0 {
			indeterminate++
		}
	}
	model := noteModel.ToModel()
	model.DescribeOperationMetadata = func(info interface{}) string { return fmt.Sprint(info) }
	t.Logf("history: %d operations (%d indeterminate writes) on %d notes", len(ops), indeterminate, len(r.noteIDs()))
	during := map[string]int{}
	f0, f1 := r.faulted.Sub(r.began).Nanoseconds(), r.healed.Sub(r.began).Nanoseconds()
	for _, op := range ops {
		if op.Call >= f0 && op.Call <= f1 {
			during[op.Target+" "+op.Input.Op]++
		}
	}
	t.Logf("recorded operations sent during the fault, by target: %v", during)

	res, info := porcupine.CheckOperationsVerbose(model, porcupineOps(ops, end+1), 60*time.Second)
	switch res {
	case porcupine.Illegal:
		r.fail(t, name, "stale read: the reads are not linearizable with the writes", model, info, append(ops, final...))
		return
	case porcupine.Unknown:
		t.Logf("the linearizability check timed out: no verdict")
	}

	// Lost writes: the final database values (read after everything) must
	// be ones the history allows.
	for i := range final {
		final[i].Call, final[i].Return = end+2, end+3
	}
	all := append(ops, final...)
	res, info = porcupine.CheckOperationsVerbose(model, porcupineOps(all, end+1), 60*time.Second)
	if res == porcupine.Illegal {
		r.fail(t, name, "lost write: a note's final value in PostgreSQL is not one the acknowledged writes allow", model, info, all)
	}
	deletes := map[int64]bool{}
	for _, op := range ops {
		if op.Input.Op == "delete" {
			deletes[op.Input.ID] = true
		}
	}
	lost := 0
	for _, op := range final {
		if op.Output.Status == 404 && !deletes[op.Input.ID] {
			lost++
			t.Errorf("lost write: note %d was created (acknowledged) and never deleted, but is not in PostgreSQL", op.Input.ID)
		}
	}
	record(fmt.Sprintf("robust %s: ops/indeterminate/lost creates", name), fmt.Sprintf("%d/%d/%d", len(ops), indeterminate, lost))
}

// fail fails the test and keeps the history: porcupine's visualization and
// the raw operations as JSON, in a directory that outlives the test.
func (r *robustRun) fail(t *testing.T, name, what string, model porcupine.Model, info porcupine.LinearizationInfo, ops []historyOp) {
	t.Helper()
	dir, err := os.MkdirTemp("", "robust-"+strings.ReplaceAll(name, "/", "-")+"-")
	if err != nil {
		t.Errorf("%s (and the history could not be kept: %v)", what, err)
		return
	}
	if err := porcupine.VisualizePath(model, info, filepath.Join(dir, "history.html")); err != nil {
		t.Logf("visualize: %v", err)
	}
	b, _ := json.MarshalIndent(struct {
		Nemesis string      `json:"nemesis"`
		Seed    uint64      `json:"seed"`
		Fault   string      `json:"fault"`
		Ops     []historyOp `json:"ops"`
	}{name, r.seed, r.fault.String(), ops}, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "history.json"), b, 0o644); err != nil {
		t.Logf("write history: %v", err)
	}
	t.Errorf("%s\n  history: %s/history.html and history.json\n  replay: ROBUST_SEED=%d ROBUST_DURATION=%v go test -run 'TestRobust.*/%s$' ./clustertest/",
		what, dir, r.seed, r.fault, name)
}

// restartInstance starts a killed instance again and waits until it is ready.
func (r *robustRun) restartInstance(t *testing.T, a *instance) {
	t.Helper()
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	if err := a.waitReady(60 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, a.tail(40))
	}
}

// send delivers sig to the instance (SIGSTOP, SIGCONT) without waiting.
func (a *instance) send(t testing.TB, sig syscall.Signal) {
	t.Helper()
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Logf("%s: %v: %v", a.name, sig, err)
	}
}
