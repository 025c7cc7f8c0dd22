package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/acme/shop/lock"
	"example.com/acme/shop/notes"
)

// acquire takes the lock or fails the test.
func acquire(t *testing.T, l *Locker, name string, ttl, wait time.Duration) lock.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	lease, err := l.Acquire(ctx, name, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", name, err)
	}
	return lease
}

// noteToLock creates a note with body and returns it and the name of the
// lock that guards it, as the append route names it.
func noteToLock(t *testing.T, s *NoteStore, body string) (notes.Note, string) {
	t.Helper()
	n, err := s.Create(context.Background(), notes.Input{Title: "t", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return n, fmt.Sprintf("note:%d", n.ID)
}

// Every grant of a name has a greater token than the grants before it,
// whether the lease before was released or expired; names are independent.
func TestLockTokensGrow(t *testing.T) {
	ctx := context.Background()
	l := NewLocker(openTestDB(t))
	var last int64
	for i := range 3 {
		lease := acquire(t, l, "a", 5*time.Second, time.Second)
		if lease.Token <= last || (i == 0 && lease.Token != 1) {
			t.Fatalf("grant %d: token %d after %d", i, lease.Token, last)
		}
		last = lease.Token
		if err := l.Release(ctx, lease); err != nil {
			t.Fatal(err)
		}
	}
	// Not released: granted again once expired, with the next token.
	expiring := acquire(t, l, "a", 100*time.Millisecond, time.Second)
	next := acquire(t, l, "a", 5*time.Second, 2*time.Second)
	if expiring.Token != last+1 || next.Token != last+2 {
		t.Fatalf("tokens %d then %d after %d, want %d and %d", expiring.Token, next.Token, last, last+1, last+2)
	}
	if other := acquire(t, l, "b", 5*time.Second, time.Second); other.Token != 1 {
		t.Fatalf("first grant of another name: token %d, want 1", other.Token)
	}
}

// A second Acquire waits while the lease is live: it times out with
// ErrTimeout, and it is granted only after the Release.
func TestLockWaitsAndTimesOut(t *testing.T) {
	ctx := context.Background()
	l := NewLocker(openTestDB(t))
	held := acquire(t, l, "n", 10*time.Second, time.Second)

	start := time.Now()
	waitCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := l.Acquire(waitCtx, "n", time.Second)
	cancel()
	took := time.Since(start)
	if !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Acquire of a held lock: %v, want lock.ErrTimeout", err)
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("Acquire gave up after %v, want about 300ms", took)
	}

	type grant struct {
		lease lock.Lease
		err   error
	}
	granted := make(chan grant, 1)
	go func() {
		waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		lease, err := l.Acquire(waitCtx, "n", 5*time.Second)
		granted <- grant{lease, err}
	}()
	// Still waiting after several polls: the lease is live.
	select {
	case g := <-granted:
		t.Fatalf("granted %+v (%v) while the lease was held", g.lease, g.err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := l.Release(ctx, held); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-granted:
		if g.err != nil || g.lease.Token != held.Token+1 {
			t.Fatalf("after Release: %+v %v, want token %d", g.lease, g.err, held.Token+1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not granted within 5s of the Release")
	}
}

// A holder paused past its ttl (here: a sleep) while another instance took
// the lock is refused by the fence, and its write changes nothing; so is one
// whose lease merely expired. The live holder's write goes through and
// records its token.
func TestLockStaleHolderFenced(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	l, s := NewLocker(db), NewNoteStore(db)
	n, name := noteToLock(t, s, "start")
	stale := acquire(t, l, name, 200*time.Millisecond, time.Second)
	time.Sleep(400 * time.Millisecond) // the pause, past the ttl

	// Expired, nobody else holds it: refused all the same.
	if _, err := s.UpdateFenced(ctx, n.ID, notes.Input{Title: "t", Body: "stale 1"}, stale); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("write under an expired lease: %v, want lock.ErrLost", err)
	}
	live := acquire(t, l, name, 5*time.Second, time.Second)
	if _, err := s.UpdateFenced(ctx, n.ID, notes.Input{Title: "t", Body: "stale 2"}, stale); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("write under a lease taken since: %v, want lock.ErrLost", err)
	}
	if got, err := s.Get(ctx, n.ID); err != nil || got.Body != "start" {
		t.Fatalf("after the refused writes: %+v %v, want the body unchanged", got, err)
	}
	// The stale holder's Release does not end the live lease.
	if err := l.Release(ctx, stale); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := l.Acquire(waitCtx, name, time.Second)
	cancel()
	if !errors.Is(err, lock.ErrTimeout) {
		t.Fatalf("Acquire after the stale holder's Release: %v, want lock.ErrTimeout", err)
	}

	if _, err := s.UpdateFenced(ctx, n.ID, notes.Input{Title: "t", Body: "live"}, live); err != nil {
		t.Fatalf("write under the live lease: %v", err)
	}
	var body string
	var token int64
	if err := db.pool.QueryRow(ctx, `SELECT body, lock_token FROM notes WHERE id = $1`, n.ID).Scan(&body, &token); err != nil {
		t.Fatal(err)
	}
	if body != "live" || token != live.Token {
		t.Fatalf("note body %q lock_token %d, want %q and %d", body, token, "live", live.Token)
	}
}

// The fence judges the lease when it checks it, not when the transaction
// began: a holder whose lease expires between its BEGIN and its check (a
// pause there) is refused. now() would be the BEGIN's time and let it
// through; hence clock_timestamp().
func TestLockFenceJudgesExpiryAtTheCheck(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	l := NewLocker(db)
	holder := acquire(t, l, "n", 200*time.Millisecond, time.Second)
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	time.Sleep(400 * time.Millisecond) // the pause, past the ttl
	if err := checkLease(ctx, tx, holder); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("check of a lease that expired after BEGIN: %v, want lock.ErrLost", err)
	}
}

// A holder inside its fenced transaction keeps the lock even past its
// ttl: the next Acquire is granted only after the COMMIT, and then sees the
// write. Without FOR SHARE the check would hold only at the moment it ran.
func TestLockFenceHoldsUntilCommit(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	l, s := NewLocker(db), NewNoteStore(db)
	n, name := noteToLock(t, s, "start")
	holder := acquire(t, l, name, 200*time.Millisecond, time.Second)
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := checkLease(ctx, tx, holder); err != nil {
		t.Fatal(err)
	}

	type grant struct {
		lease lock.Lease
		body  string
		err   error
	}
	granted := make(chan grant, 1)
	go func() {
		waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		lease, err := l.Acquire(waitCtx, name, 5*time.Second)
		var got notes.Note
		if err == nil {
			got, err = s.Get(ctx, n.ID)
		}
		granted <- grant{lease, got.Body, err}
	}()
	// The lease expires 200ms in; the transaction stays open well past it
	// (but within writeIdleTimeout), and no grant may happen meanwhile.
	select {
	case g := <-granted:
		t.Fatalf("granted %+v (%v) while the holder's fenced transaction was open", g.lease, g.err)
	case <-time.After(800 * time.Millisecond):
	}
	if _, err := tx.Exec(ctx, `UPDATE notes SET body = 'written', lock_token = $2 WHERE id = $1`, n.ID, holder.Token); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-granted:
		t.Fatalf("granted %+v (%v) before the holder's COMMIT", g.lease, g.err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("COMMIT of the holder that checked its lease in time: %v", err)
	}
	select {
	case g := <-granted:
		if g.err != nil || g.lease.Token != holder.Token+1 || g.body != "written" {
			t.Fatalf("after the COMMIT: %+v body %q %v, want token %d and the holder's write", g.lease, g.body, g.err, holder.Token+1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not granted within 5s of the COMMIT")
	}
}

// A holder that stalls inside its fenced transaction cannot keep the lock
// forever: PostgreSQL ends the transaction after writeIdleTimeout, the next
// holder is granted, and the stalled write never takes effect.
func TestLockStalledFencedWriteEnds(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	l, s := NewLocker(db), NewNoteStore(db)
	n, name := noteToLock(t, s, "start")
	holder := acquire(t, l, name, 200*time.Millisecond, time.Second)
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := checkLease(ctx, tx, holder); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	next := acquire(t, l, name, 5*time.Second, 3*writeIdleTimeout)
	if took := time.Since(start); took < writeIdleTimeout-100*time.Millisecond || next.Token != holder.Token+1 {
		t.Fatalf("granted token %d after %v, want token %d after the idle fence (%v)", next.Token, took, holder.Token+1, writeIdleTimeout)
	}
	_, err = tx.Exec(ctx, `UPDATE notes SET body = 'stalled' WHERE id = $1`, n.ID)
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err == nil {
		t.Fatal("the stalled holder's write committed after its transaction was ended")
	}
	if got, err := s.Get(ctx, n.ID); err != nil || got.Body != "start" {
		t.Fatalf("after the stalled write: %+v %v, want the body unchanged", got, err)
	}
}

// appendWork is appenders x appends: each append adds its own marker,
// "[w.i]", to one note's body.
const (
	appenders = 4
	appends   = 10
)

func marker(w, i int) string { return fmt.Sprintf("[%d.%d]", w, i) }

// checkAppends says which acknowledged appends are not in body exactly
// once: the check of 0 lost updates (TestLockWithoutLockLosesAppends shows
// it fails when updates are lost).
func checkAppends(body string, acked []string) error {
	var bad []string
	for _, m := range acked {
		if c := strings.Count(body, m); c != 1 {
			bad = append(bad, fmt.Sprintf("%s x%d", m, c))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d acknowledged appends not in the body exactly once: %v", len(bad), len(acked), bad)
	}
	return nil
}

// Appenders x appends on one note through the store, each a read, a
// computation in Go and a write under the lock: every append is there
// exactly once. A pause between the read and the write widens the window
// in which an unlocked append would lose another's.
func TestLockNoLostAppends(t *testing.T) {
	ctx := context.Background()
	db := openTestDB(t)
	l, s := NewLocker(db), NewNoteStore(db)
	n, name := noteToLock(t, s, "")
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := range appenders {
		wg.Go(func() {
			for i := range appends {
				waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
				lease, err := l.Acquire(waitCtx, name, 5*time.Second)
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				cur, err := s.Get(ctx, n.ID)
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(2 * time.Millisecond)
				_, err = s.UpdateFenced(ctx, n.ID, notes.Input{Title: cur.Title, Body: cur.Body + marker(w, i)}, lease)
				if err := l.Release(ctx, lease); err != nil {
					t.Error(err)
				}
				if err != nil {
					t.Errorf("append %s: %v", marker(w, i), err)
					continue
				}
				mu.Lock()
				acked = append(acked, marker(w, i))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	got, err := s.Get(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) != appenders*appends {
		t.Errorf("%d appends acknowledged, want %d", len(acked), appenders*appends)
	}
	if err := checkAppends(got.Body, acked); err != nil {
		t.Fatal(err)
	}
	if len(got.Body) != len(strings.Join(acked, "")) {
		t.Fatalf("body has %d bytes, the acknowledged appends %d: %q", len(got.Body), len(strings.Join(acked, "")), got.Body)
	}
}

// The same appends without the lock: each round, every appender reads the
// note before any writes it back (a barrier makes the interleaving certain,
// not likely), and all but one append of the round are lost, although
// every Update succeeded. checkAppends must catch it.
func TestLockWithoutLockLosesAppends(t *testing.T) {
	ctx := context.Background()
	s := NewNoteStore(openTestDB(t))
	n, err := s.Create(ctx, notes.Input{Title: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []string
	for i := range appends {
		var read, wg sync.WaitGroup
		read.Add(appenders)
		for w := range appenders {
			wg.Go(func() {
				cur, err := s.Get(ctx, n.ID)
				read.Done()
				if err != nil {
					t.Error(err)
					return
				}
				read.Wait() // every appender has read the same body
				if _, err := s.Update(ctx, n.ID, notes.Input{Title: cur.Title, Body: cur.Body + marker(w, i)}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, marker(w, i))
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	got, err := s.Get(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	err = checkAppends(got.Body, acked)
	if err == nil {
		t.Fatalf("no append lost without the lock: the check cannot fail (body %q)", got.Body)
	}
	t.Logf("without the lock, as expected: %v", err)
}
