// Package lock is a lock for application code that holds across every
// instance of the service: while one request works on a resource (a note,
// an order, a workflow), no other request on any instance works on it.
//
// The invariant: a write protected by a lease takes effect only while the
// lease is live, that is only if no later lease on the same name has been
// granted. A lease alone cannot promise that: its holder can be paused (a GC
// stall, SIGSTOP, a frozen VM) past the lease's expiry, another instance is
// then granted the lock, and the first one wakes up believing it still holds
// it. So every grant carries a fencing token that grows with each grant of
// the name, and the protected write checks the token against the live lease
// in the same transaction (postgres.NoteStore.UpdateFenced shows how): a
// stale holder's write is refused with ErrLost and changes nothing.
//
// Acquire does not wait forever: a lease not granted before the context is
// done is ErrTimeout, and the caller answers "busy, retry" instead of
// queueing without bound. A lease ends at Release, or by itself after its
// ttl (a holder that died releases nothing), so ttl must exceed the work
// done under the lease; a holder slower than that loses the lease, and the
// fence refuses its write.
package lock

import (
	"context"
	"errors"
	"time"
)

// Lease is one grant of the lock on Name. Token is its fencing token:
// greater than the token of every earlier grant on Name.
type Lease struct {
	Name  string
	Token int64
}

var (
	// ErrTimeout: the lock was not granted before the context was done
	// (another holder kept it). Nothing was done; the caller may retry.
	ErrTimeout = errors.New("lock: not granted in time, another holder has it")
	// ErrLost: the lease expired or a later lease was granted, so the
	// protected write must not happen (and did not).
	ErrLost = errors.New("lock: lease lost (expired or taken by another holder)")
)

// Locker grants leases. Implementations are safe for concurrent use, by any
// number of instances at once.
type Locker interface {
	// Acquire waits until the lock on name is free, or its lease expired,
	// and takes it for ttl; ErrTimeout when ctx is done first.
	Acquire(ctx context.Context, name string, ttl time.Duration) (Lease, error)
	// Release ends the lease early, so the next holder need not wait for
	// its expiry. Releasing a lease that was lost does nothing.
	Release(ctx context.Context, l Lease) error
}
