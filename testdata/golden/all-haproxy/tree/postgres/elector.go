package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// LeaderLockKey is the advisory lock key of the worker's leader election.
// Advisory locks are per database, so instances lead per database. The key
// differs from goose's migration lock (5887940537704921958).
const LeaderLockKey int64 = 0x73686f702d6c6472 // "shop-ldr" in ASCII; any fixed value works

// Elector elects one leader among the instances that share a database.
//
// The leader holds a session-level advisory lock (pg_try_advisory_lock) on a
// connection of its own, opened with pgx.Connect and never taken from the
// pool: a pooled connection goes back to the pool and is reused by others, and
// the session lock would travel with it. PostgreSQL releases the lock when the
// session ends, so the lock is exactly "the leader's connection is alive".
//
// Every poll interval the leader checks, with a short timeout, that its
// session still holds the lock, and between checks it waits on the
// connection, so a session the server ends is noticed at once; on any error
// it steps down immediately: it cancels the context its jobs run with, closes
// the connection, sits out one poll and competes again. Followers try the
// lock every poll interval, so a free lock is taken within one poll.
//
// How fast another instance takes over:
//   - leader stops (shutdown): it closes the connection, the lock is free at
//     once, a follower gets it on its next poll.
//   - leader process killed (SIGKILL, crash): the kernel closes its socket,
//     the server ends the session and frees the lock at once, a follower gets
//     it on its next poll.
//   - leader's backend terminated (pg_terminate_backend) or the server
//     restarted: the same, and the leader steps down at once.
//   - network partition between leader and server: nothing closes the socket,
//     so the server only notices through TCP. The dedicated connection asks the
//     server for keepalives after 5 s idle, every 1 s, 3 probes, and a
//     tcp_user_timeout of 8 s, so the server drops the session (and the lock)
//     about 8 s after the partition; a follower takes over one poll later.
//     The partitioned leader's own check fails within one poll plus
//     checkTimeout, so it stops its jobs well before that (this is why
//     LEADER_POLL_INTERVAL is at most 5 s). These settings apply to TCP
//     connections only (a Unix socket cannot be partitioned); values already
//     in DATABASE_URL win. Lower them for faster takeover after a partition,
//     at the cost of dropping leaders on short network hiccups.
//
// Even so, an instance may believe it leads for a moment after it lost the
// lock; that is why the worker fences each run in the database as well.
type Elector struct {
	url  string
	poll time.Duration
	key  int64
	log  *slog.Logger

	leader atomic.Bool
}

// checkTimeout bounds the leader's check and a follower's try: a server that
// does not answer within it counts as lost.
const checkTimeout = time.Second

// connectTimeout bounds opening the dedicated connection.
const connectTimeout = 5 * time.Second

// NewElector returns an elector for the database at url that checks the lock
// every poll interval.
func NewElector(url string, poll time.Duration, log *slog.Logger) *Elector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{url: url, poll: poll, key: LeaderLockKey, log: log}
}

// IsLeader reports whether this instance holds the leader lock, as of the
// last check (at most one poll old; a closed connection is seen at once).
func (e *Elector) IsLeader() bool { return e.leader.Load() }

// Run competes for leadership until ctx is done. Each time this instance
// becomes leader, onLead runs with a context that is cancelled as soon as it
// stops leading; Run waits for onLead to return before competing again. When
// ctx is done, Run steps down, releases the lock (closing the connection) and
// returns once onLead has returned.
func (e *Elector) Run(ctx context.Context, onLead func(leaderCtx context.Context)) {
	var (
		conn     *pgx.Conn
		stopLead context.CancelFunc
		leading  sync.WaitGroup
		lastErr  string
	)
	var next time.Time // the next poll
	// stepDown ends a term (or just drops a broken connection). The
	// connection is closed before waiting for onLead so that the lock is
	// released at once and another instance takes over without waiting for
	// our jobs to notice the cancellation.
	stepDown := func(reason string, err error) {
		wasLeader := e.leader.Swap(false)
		if stopLead != nil {
			stopLead()
			stopLead = nil
		}
		if conn != nil {
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkTimeout)
			_ = conn.Close(closeCtx)
			cancel()
			conn = nil
		}
		switch {
		case wasLeader && err != nil:
			e.log.Warn("leader: stepped down", "reason", reason, "err", err)
			// Sit out one poll before competing again, so that a healthy
			// follower takes over rather than the instance whose
			// connection just failed.
			next = next.Add(e.poll)
		case wasLeader:
			e.log.Info("leader: stepped down", "reason", reason)
		}
		leading.Wait()
	}
	defer stepDown("stopping", nil)

	for {
		next = time.Now().Add(e.poll)
		if conn == nil {
			c, err := e.connect(ctx)
			if err != nil {
				// Log a failure once, not every poll, while the database is down.
				if ctx.Err() == nil && err.Error() != lastErr {
					e.log.Warn("leader: cannot connect, will retry", "err", err)
				}
				lastErr = err.Error()
			} else {
				conn, lastErr = c, ""
			}
		}
		if conn != nil {
			if e.leader.Load() {
				if err := e.check(ctx, conn); err != nil && ctx.Err() == nil {
					stepDown("lock check failed", err)
				}
			} else if won, err := e.try(ctx, conn); err != nil {
				if ctx.Err() == nil {
					stepDown("lock try failed", err)
				}
			} else if won {
				leaderCtx, cancel := context.WithCancel(ctx)
				stopLead = cancel
				e.leader.Store(true)
				e.log.Info("leader: elected", "backend_pid", conn.PgConn().PID())
				leading.Go(func() { onLead(leaderCtx) })
			}
		}
		if e.leader.Load() {
			if err := e.watch(ctx, conn, next); err != nil {
				stepDown("connection lost", err)
			}
		}
		if !sleepUntil(ctx, next) {
			return
		}
	}
}

// watch blocks on the leader's connection until the deadline. The server
// sends an error and closes the socket when it ends the session (the backend
// was terminated, the server is shutting down), so the read returns at once
// and the leader steps down immediately instead of at its next check. A
// silent network is caught by the check instead.
func (e *Elector) watch(ctx context.Context, conn *pgx.Conn, deadline time.Time) error {
	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// We LISTEN to nothing, so no notification arrives; a timeout leaves the
	// connection usable (pgx only closes it on other errors).
	err := conn.PgConn().WaitForNotification(waitCtx)
	if err != nil && waitCtx.Err() != nil {
		return nil // the deadline (or shutdown), not the connection
	}
	return err
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

// connect opens the dedicated connection with TCP keepalives on both ends
// (see the Elector comment).
func (e *Elector) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(e.url)
	if err != nil {
		return nil, fmt.Errorf("leader: parse DATABASE_URL: %w", err)
	}
	// Server side: how fast the server notices that this client is gone,
	// which is when it releases the lock. pgx sends unknown settings to the
	// server as session parameters.
	for name, value := range map[string]string{
		"tcp_keepalives_idle":     "5",
		"tcp_keepalives_interval": "1",
		"tcp_keepalives_count":    "3",
		"tcp_user_timeout":        "8000", // ms
		"application_name":        "leader-elector",
	} {
		if _, set := cfg.RuntimeParams[name]; !set {
			cfg.RuntimeParams[name] = value
		}
	}
	// Client side: the check timeout already detects a dead server; the
	// keepalives also make an idle socket fail instead of hanging.
	dialer := &net.Dialer{
		Timeout: connectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 5 * time.Second, Interval: time.Second, Count: 3,
		},
	}
	cfg.DialFunc = dialer.DialContext
	connectCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pgx.ConnectConfig(connectCtx, cfg)
}

// try takes the lock if it is free.
func (e *Elector) try(ctx context.Context, conn *pgx.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var won bool
	err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", e.key).Scan(&won)
	return won, err
}

// check verifies that this session still holds the lock. A working connection
// would be enough in theory (a session lock lives as long as the session), but
// asking pg_locks also catches a connection pooler in transaction mode between
// us and the server, which would hand our statements to other sessions.
func (e *Elector) check(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var held bool
	// pg_locks splits a bigint advisory key into classid (high 32 bits) and
	// objid (low 32 bits), with objsubid 1.
	err := conn.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
			  AND objsubid = 1
			  AND (classid::bigint << 32) | objid::bigint = $1)`, e.key).Scan(&held)
	if err != nil {
		return err
	}
	if !held {
		return errors.New("the session no longer holds the leader lock")
	}
	return nil
}
