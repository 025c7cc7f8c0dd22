package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/acme/shop/lock"
	"example.com/acme/shop/notes"
)

// Locker is lock.Locker on the locks table: a lease is a row whose
// expires_at is in the future, by the database's clock. No instance's clock
// decides whether a lease is live, so clocks that drift between machines
// cannot make two holders.
//
// Why a lease row and not an advisory lock (pg_advisory_lock, as the
// migrations use): an advisory lock lives as long as its session, so it
// needs a connection held for the whole of the work, and it carries no
// token, so a holder cut off from its session (a proxy that keeps the TCP
// connection, a pause) cannot be fenced. A row outlives its holder by at
// most its ttl, and its token is the fence.
//
// The worker's leader lease (elector.go, and liveTerm in runs.go) is the
// same mechanism for one name: a row, a term that grows with each grant,
// and a FOR SHARE fence in every write; it adds renewal by its holder.
//
// Rows are never deleted, so the table holds one small row per name ever
// locked (per note appended to, here). Deleting one would start its tokens
// again at 1, and a stale holder of an old token 1 would pass the fence of
// the new lease 1: purge only names that can never be locked again (a
// deleted note's), never to save space on live ones.
type Locker struct {
	pool *pgxpool.Pool
}

var _ lock.Locker = (*Locker)(nil)

// NewLocker returns a Locker on the pool of db.
func NewLocker(db *DB) *Locker { return &Locker{pool: db.pool} }

// acquireLock grants the lease on $1 for $2 seconds when the lock is free:
// no row yet (token 1), or a row whose lease has expired (next token). A
// live lease makes the WHERE false: no row is returned, nothing changes.
// One statement, so two instances can never both be granted: the second
// waits for the row lock of the first, then sees its live lease.
// clock_timestamp(), not now(): now() is the start of the transaction, and
// an expiry must be judged at the moment the row is looked at (after a
// wait for its lock, say).
const acquireLock = `
	INSERT INTO locks (name, token, expires_at)
	VALUES ($1, 1, clock_timestamp() + make_interval(secs => $2))
	ON CONFLICT (name) DO UPDATE
	    SET token = locks.token + 1, expires_at = clock_timestamp() + make_interval(secs => $2)
	    WHERE locks.expires_at <= clock_timestamp()
	RETURNING token`

// Poll period of Acquire while another holder has the lock: from
// acquirePoll to twice that, at random, so waiters started together do not
// try in step.
const acquirePoll = 25 * time.Millisecond

// Acquire takes the lock on name for ttl, trying again every 25 to 50 ms
// while another holder has it, until ctx is done (lock.ErrTimeout). It polls
// rather than waits in PostgreSQL because a lease's end is a time, which
// no row lock signals; the poll costs one indexed statement. An error of
// the database itself (unreachable, overloaded) is returned at once,
// wrapped in notes.ErrUnavailable when it is temporary.
//
// When ctx ends while a try is on the wire, the database may have granted a
// lease that nobody learns of: it ends by itself after ttl.
func (l *Locker) Acquire(ctx context.Context, name string, ttl time.Duration) (lock.Lease, error) {
	if ttl < time.Millisecond {
		return lock.Lease{}, fmt.Errorf("lock %q: ttl %v, want at least 1ms", name, ttl)
	}
	for {
		var token int64
		err := l.pool.QueryRow(ctx, acquireLock, name, ttl.Seconds()).Scan(&token)
		switch {
		case err == nil:
			return lock.Lease{Name: name, Token: token}, nil
		case ctx.Err() != nil:
			return lock.Lease{}, fmt.Errorf("lock %q: %w (%w)", name, lock.ErrTimeout, ctx.Err())
		case !errors.Is(err, pgx.ErrNoRows):
			return lock.Lease{}, fmt.Errorf("lock %q: acquire: %w", name, classify(err))
		}
		wait := acquirePoll + rand.N(acquirePoll)
		select {
		case <-ctx.Done():
			return lock.Lease{}, fmt.Errorf("lock %q: %w (%w)", name, lock.ErrTimeout, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// Release ends the lease now, if it is still the live one: its token
// matches. The row stays (expired), so the next grant's token is greater.
// Releasing a lost lease changes nothing: a later holder's lease has
// another token.
func (l *Locker) Release(ctx context.Context, lease lock.Lease) error {
	_, err := l.pool.Exec(ctx,
		`UPDATE locks SET expires_at = clock_timestamp()
		 WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp()`,
		lease.Name, lease.Token)
	if err != nil {
		return fmt.Errorf("lock %q: release: %w", lease.Name, classify(err))
	}
	return nil
}

// checkLease is the fence: inside the transaction of the protected write,
// before the write, it checks that lease is the live one, and locks its row
// FOR SHARE until COMMIT. The lock is what makes the check hold at COMMIT
// too: the next grant (an UPDATE of the row) waits until this transaction
// ends, and then reads the note as this write left it. A holder that was
// paused past its expiry (SIGSTOP, a GC stall) finds its lease expired or a
// greater token in the row, and gets lock.ErrLost: nothing is written.
func checkLease(ctx context.Context, tx pgx.Tx, lease lock.Lease) error {
	// The transaction's own fence first, as beginFenced sets it: a holder
	// paused inside the transaction, now that it will hold the lease's
	// row, has its transaction ended by PostgreSQL after writeIdleTimeout,
	// so the next holder waits that long at most. (The write's transaction
	// starts fenced only when the cache is on; setting it twice is
	// harmless.) No argument, so pgx sends both in one round trip.
	if _, err := tx.Exec(ctx, fenceTimeouts); err != nil {
		return err
	}
	var live int
	err := tx.QueryRow(ctx,
		`SELECT 1 FROM locks
		 WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp()
		 FOR SHARE`,
		lease.Name, lease.Token).Scan(&live)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("lock %q token %d: %w", lease.Name, lease.Token, lock.ErrLost)
	}
	return err
}

// fenceTimeouts is beginFenced without its BEGIN.
var fenceTimeouts = fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = %d; SET LOCAL lock_timeout = %d",
	writeIdleTimeout.Milliseconds(), writeLockTimeout.Milliseconds())

// UpdateFenced replaces the title and body of a note as Update does, but
// only under lease, the live lease of the lock that guards the note: a lost
// lease is lock.ErrLost and nothing is written. The note records the
// lease's token in lock_token. It goes through write, so the cache's
// invalidation (BeforeCommit) runs as for every other write.
func (s *NoteStore) UpdateFenced(ctx context.Context, id int64, in notes.Input, lease lock.Lease) (notes.Note, error) {
	if err := in.Validate(); err != nil {
		return notes.Note{}, err
	}
	var n notes.Note
	err := s.write(ctx, id, func(tx pgx.Tx) (int64, error) {
		if err := checkLease(ctx, tx, lease); err != nil {
			return 0, err
		}
		var err error
		n, err = scanNote(tx.QueryRow(ctx,
			`UPDATE notes SET title = $2, body = $3, lock_token = $4, updated_at = now()
			 WHERE id = $1 RETURNING `+noteColumns, id, in.Title, in.Body, lease.Token))
		return id, err
	})
	if err != nil {
		return notes.Note{}, fmt.Errorf("update note %d under lock: %w", id, err)
	}
	return n, nil
}
