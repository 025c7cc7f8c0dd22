package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"example.com/acme/shop/worker"
)

// LeaseName is the row of leader_lease that the worker's election uses.
const LeaseName = "worker"

// Elector elects one leader among the instances that share a database, with
// a lease: the row LeaseName of leader_lease (migrations 00003_leader.sql
// and 00004_leader_pid.sql).
//
// The leader proves it is alive by renewing the lease, not by keeping a
// connection open: a paused process (SIGSTOP, a long GC stall, a frozen VM)
// keeps its TCP sessions, because its kernel still answers, but it renews
// nothing, so its lease runs out and another instance takes over.
//
//   - acquire: one INSERT ... ON CONFLICT DO UPDATE that takes the row only
//     when it has expired, is already ours, or its holder's database session
//     has ended (below), and increments term.
//   - renew: UPDATE ... WHERE holder = me AND term = my term AND the lease
//     has not expired, setting expires_at = now() + lease.
//   - release (clean stop): UPDATE ... SET expires_at = now(), so another
//     instance takes over on its next try.
//
// Every expiry is compared with the database clock, never with an
// instance's: there is one clock for all.
//
// A leader that dies (SIGKILL, a crash) releases nothing, but its kernel
// closes its connection and the database ends its session. The lease row
// names that session (pid, the backend's process id, written by every
// acquire and renew), and a follower that finds no such backend takes the
// lease at once instead of waiting for it to run out. The session is
// therefore the elector's own connection, not a pooled one that a pool
// could retire while it leads.
//
// Invariant: at any moment of the database clock, at most one holder has a
// live term (expires_at > now()), and term grows with every election, so a
// term names one leadership for good. Writes that check, in the same
// statement, that their term is still the live one (the claim and finish of
// a run, the purge; see RunStore) are fenced: a leader that lost its lease
// cannot make them, whatever it believes.
//
// Locally, the leader believes it leads only until the monotonic time at
// which it SENT its last successful renew (or acquire), plus the lease,
// minus a margin. The database set expires_at from its now(), which is no
// earlier than that send, so the local belief ends a margin before the row
// expires. When a paused leader resumes, IsLeader is false at once and the
// context of its jobs is cancelled; it competes again like any other.
// Between renews the leader waits on its session, so when the database ends
// that session (which lets a follower take the lease early) the leader
// reads the close and stops believing at once.
//
// Where the invariant stops:
//   - after an early take, the old leader believes it leads until it reads
//     the end of its session: at once as a rule, but at worst (the close is
//     lost on the network, the process is not scheduled) until its local
//     deadline. Only fenced writes stay safe in that window.
//   - the local belief assumes the instance's monotonic clock runs at the
//     database clock's rate, within margin/lease (25%). Go's monotonic clock
//     (CLOCK_MONOTONIC) keeps counting through SIGSTOP and GC stalls, but not
//     through a suspend of the whole machine: such a leader may believe it
//     leads after resuming until its next renew fails. Only fenced writes
//     stay safe then.
//   - side effects outside this database (an email, a call to another
//     service, a file) are not fenced unless they carry the term
//     (worker.Term) to something that checks it. A job cut off mid-run by a
//     pause may have done part of its work.
//
// Timing, from LEADER_POLL_INTERVAL (poll): the lease is 2 x poll, the leader
// renews every poll/2 (three tries before the lease ends) and believes it
// leads for lease - poll/2 after each renew; followers try every poll. So a
// leader that dies is replaced within one poll, one that freezes (or is cut
// off from the database) within lease + poll = 3 x poll of its last renew,
// and a clean stop is taken over within one poll. A database restart ends
// every session: the leader steps down and sits out one poll, and one of
// the others takes over.
type Elector struct {
	url    string
	holder string
	poll   time.Duration
	log    *slog.Logger

	mu       sync.Mutex
	term     int64     // the term this instance leads in; 0 when it does not
	deadline time.Time // local, monotonic: it leads until then at most
}

// NewElector returns an elector for the database at url. holder names this
// instance in the lease row (a random suffix makes every run distinct, so a
// restarted instance never takes its predecessor's lease for its own); poll
// sets the timing (see Elector).
func NewElector(url, holder string, poll time.Duration, log *slog.Logger) *Elector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{url: url, holder: holder + "#" + rand.Text()[:8], poll: poll, log: log}
}

// Lease is how long an acquire or renew holds the lease.
func (e *Elector) Lease() time.Duration { return 2 * e.poll }

// renewEvery is the leader's renew period, margin how long before the
// lease ends (counted from the renew's send) the leader stops believing.
func (e *Elector) renewEvery() time.Duration { return e.poll / 2 }
func (e *Elector) margin() time.Duration     { return e.poll / 2 }

// IsLeader reports whether this instance leads: it holds a term and its
// local deadline has not passed. It turns false the moment the deadline
// passes, even if the process was paused and has not run since.
func (e *Elector) IsLeader() bool {
	_, ok := e.Term()
	return ok
}

// Term is the term this instance leads in, if it leads now.
func (e *Elector) Term() (int64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term == 0 || !time.Now().Before(e.deadline) {
		return 0, false
	}
	return e.term, true
}

// extend moves the deadline of term to sent + lease - margin, unless the
// current deadline has already passed: a term that ran out locally is over,
// whatever the database says later.
func (e *Elector) extend(term int64, sent time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term != term || !time.Now().Before(e.deadline) {
		return time.Time{}, false
	}
	e.deadline = sent.Add(e.Lease() - e.margin())
	return e.deadline, true
}

// Run competes for leadership until ctx is done. Each time this instance
// becomes leader, onLead runs with a context that carries the term
// (worker.Term) and is cancelled as soon as it stops leading: the lease was
// taken by another, or its local deadline passed without a renew. Run waits
// for onLead to return before competing again. When ctx is done, Run stops
// leading, waits for onLead, releases the lease and returns.
func (e *Elector) Run(ctx context.Context, onLead func(leaderCtx context.Context)) {
	db, err := e.open()
	if err != nil {
		e.log.Error("leader: cannot run the election", "err", err)
		<-ctx.Done()
		return
	}
	defer db.close()

	var (
		stopLead context.CancelFunc
		expiry   *time.Timer
		leading  sync.WaitGroup
		lastErr  string
		next     time.Time
	)
	// stepDown ends this instance's term: jobs are cancelled first, then,
	// once they returned (and recorded their end under the still live
	// term), the lease is released so another instance takes over at once.
	stepDown := func(reason string, err error) {
		e.mu.Lock()
		term := e.term
		e.term = 0
		e.mu.Unlock()
		if term == 0 {
			return
		}
		expiry.Stop()
		stopLead()
		leading.Wait()
		relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.poll)
		relErr := db.exec(relCtx, `UPDATE leader_lease SET expires_at = now()
			WHERE name = $1 AND holder = $2 AND term = $3 AND expires_at > now()`, LeaseName, e.holder, term)
		cancel()
		if err != nil {
			e.log.Warn("leader: stepped down", "term", term, "reason", reason, "err", err)
			// Sit out one poll, so that a healthy follower takes over
			// rather than the instance that just failed.
			next = next.Add(e.poll)
		} else {
			e.log.Info("leader: stepped down", "term", term, "reason", reason)
		}
		if relErr != nil && ctx.Err() == nil {
			e.log.Warn("leader: cannot release the lease; it expires by itself", "err", relErr)
		}
	}
	defer func() { stepDown("stopping", nil) }()

	for {
		sent := time.Now()
		e.mu.Lock()
		term, deadline := e.term, e.deadline
		e.mu.Unlock()
		if term == 0 {
			next = sent.Add(e.poll)
			won, err := e.acquire(ctx, db)
			switch {
			case err != nil:
				// Log a failure once, not every poll, while the database is down.
				if ctx.Err() == nil && err.Error() != lastErr {
					e.log.Warn("leader: cannot reach the lease, will retry", "err", err)
				}
				lastErr = err.Error()
			case won != 0:
				lastErr = ""
				leaderCtx, cancel := context.WithCancel(worker.WithTerm(ctx, won))
				e.mu.Lock()
				e.term, e.deadline = won, sent.Add(e.Lease()-e.margin())
				deadline = e.deadline
				e.mu.Unlock()
				stopLead = cancel
				// Cancel the jobs when the deadline passes without a renew,
				// even if this loop is blocked in a query.
				expiry = time.AfterFunc(time.Until(deadline), func() {
					if _, ok := e.Term(); !ok {
						cancel()
					}
				})
				e.log.Info("leader: elected", "term", won, "holder", e.holder, "lease", e.Lease().String())
				leading.Go(func() { onLead(leaderCtx) })
				next = sent.Add(e.renewEvery())
			default:
				lastErr = ""
			}
		} else {
			next = sent.Add(e.renewEvery())
			ok, err := e.renew(ctx, db, term, deadline)
			_, leads := e.Term()
			switch {
			case ctx.Err() != nil:
				return
			case err == nil && ok:
				if d, ok := e.extend(term, sent); ok {
					expiry.Reset(time.Until(d))
				} else {
					stepDown("local deadline passed before the renew", nil)
				}
			case err == nil:
				stepDown("lease taken by another instance", errors.New("renew matched no live lease of this term"))
			case !leads:
				stepDown("lease not renewed in time", err)
			case db.ended():
				// Followers may take the lease from now on (see acquire).
				stepDown("database session ended", err)
			default:
				e.log.Warn("leader: renew failed, will retry before the lease ends", "term", term, "err", err)
			}
		}
		if _, ok := e.Term(); !ok && term != 0 {
			stepDown("lease not renewed in time", nil)
		}
		if _, ok := e.Term(); ok {
			// The leader waits on its session rather than on a timer, to
			// learn at once when the database ends it.
			if err := db.wait(ctx, next); err != nil {
				stepDown("database session ended", err)
			}
		}
		if !sleepUntil(ctx, next) {
			return
		}
	}
}

// session is the elector's own database connection, reopened when it is
// gone. It is not pooled: its backend's pid is in the lease while this
// instance leads, and a pool would close it after MaxConnLifetime or share
// it with requests. Only Run's goroutine uses it.
type session struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

func (e *Elector) open() (*session, error) {
	cfg, err := pgx.ParseConfig(e.url)
	if err != nil {
		return nil, fmt.Errorf("leader: DATABASE_URL: %w", err)
	}
	cfg.ConnectTimeout = 5 * time.Second
	if _, set := cfg.RuntimeParams["application_name"]; !set {
		cfg.RuntimeParams["application_name"] = "leader-elector"
	}
	return &session{cfg: cfg}, nil
}

// get returns the connection, connecting first if there is none or it
// was closed (pgx closes a connection on any error but a query error,
// including a query cut off by its context).
func (s *session) get(ctx context.Context) (*pgx.Conn, error) {
	if s.conn == nil || s.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			return nil, err
		}
		s.conn = conn
	}
	return s.conn, nil
}

// ended reports whether the session is gone (closed by an error).
func (s *session) ended() bool { return s.conn == nil || s.conn.IsClosed() }

func (s *session) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := s.get(ctx)
	if err == nil {
		_, err = conn.Exec(ctx, sql, args...)
	}
	return err
}

// wait blocks until t, reading the idle connection: the read returns at
// once if the database ends the session (the server restarts, the backend
// is terminated, the connection breaks), with the error that ended it. It
// returns nil at t, or when ctx is done.
func (s *session) wait(ctx context.Context, t time.Time) error {
	if s.ended() {
		return errors.New("no database session")
	}
	ctx, cancel := context.WithDeadline(ctx, t)
	defer cancel()
	for {
		// Nothing LISTENs here, so no notification comes: the read ends
		// with ctx (the connection stays open) or with the session.
		_, err := s.conn.WaitForNotification(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *session) close() {
	if s.conn != nil {
		s.conn.Close(context.Background())
	}
}

// acquire takes the lease if it has expired, is ours, or its holder's
// session has ended (no backend has its pid: the holder died and its
// connection closed), for a new term, and returns that term; 0 when another
// instance holds a live lease. A pid the server has reused since only
// delays the take until the lease runs out.
func (e *Elector) acquire(ctx context.Context, db *session) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.poll)
	defer cancel()
	conn, err := db.get(ctx)
	if err != nil {
		return 0, err
	}
	var term int64
	err = conn.QueryRow(ctx, `
		INSERT INTO leader_lease AS l (name, holder, term, expires_at, pid)
		VALUES ($1, $2, 1, now() + $3 * interval '1 microsecond', pg_backend_pid())
		ON CONFLICT (name) DO UPDATE
		SET holder = excluded.holder, term = l.term + 1, expires_at = excluded.expires_at, pid = excluded.pid
		WHERE l.expires_at < now() OR l.holder = excluded.holder
		   OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.pid)
		RETURNING term`, LeaseName, e.holder, e.Lease().Microseconds()).Scan(&term)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return term, err
}

// renew extends the lease of term if it is still ours and live. It gives up
// at the local deadline: past it, this instance has stopped leading anyway.
func (e *Elector) renew(ctx context.Context, db *session, term int64, deadline time.Time) (bool, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := db.get(ctx)
	if err != nil {
		return false, err
	}
	tag, err := conn.Exec(ctx, `
		UPDATE leader_lease SET expires_at = now() + $4 * interval '1 microsecond', pid = pg_backend_pid()
		WHERE name = $1 AND holder = $2 AND term = $3 AND expires_at > now()`,
		LeaseName, e.holder, term, e.Lease().Microseconds())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// sleepUntil waits until t and reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
