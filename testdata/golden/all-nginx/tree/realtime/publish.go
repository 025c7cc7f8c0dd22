package realtime

import (
	"context"
	"log/slog"
	"time"

	"example.com/acme/shop/notes"
)

// ReadChange reads a note's version and state as committed now; ok is
// false when the note has no version (no such note ever committed).
type ReadChange func(ctx context.Context, id int64) (c Change, ok bool, err error)

// publishTimeout bounds the publishing of one write's event; the write's
// response waits for it.
const publishTimeout = 2 * time.Second

// Publish returns a notes.BeforeCommit that runs next (the cache's
// invalidation) and, once the write has ended, publishes the note's change.
//
// It publishes after COMMIT, never inside the transaction: a write rolled
// back must not emit an event. What it publishes is read after the COMMIT
// (read), so it is the note as committed now, with its version; the log
// refuses a version already published, so of two writes that race the
// event of the newer state wins and the older one is dropped (Stream).
// It publishes even when done reports no COMMIT: a COMMIT that failed may
// have taken effect, and an event of a state already published is refused.
//
// The response of the write waits for the publish, so a client that got
// its response knows its event is in the log. The known gap: an instance
// killed between COMMIT and publish (or that cannot reach Redis for 2 s
// then) loses that event; the note's next write publishes its state, and
// the log's versions tell a client that one was skipped.
func Publish(next notes.BeforeCommit, read ReadChange, stream Stream, log *slog.Logger) notes.BeforeCommit {
	return func(ctx context.Context, id int64) (func(bool), error) {
		var nextDone func(bool)
		if next != nil {
			d, err := next(ctx, id)
			if err != nil {
				return nil, err
			}
			nextDone = d
		}
		return func(committed bool) {
			if nextDone != nil {
				nextDone(committed)
			}
			// Not the request's context: a client that hung up after its
			// write was committed must not cancel the write's event.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
			defer cancel()
			c, ok, err := read(pctx, id)
			if err == nil && ok {
				_, err = stream.Publish(pctx, c)
			}
			if err != nil {
				log.Error("events: note change not published", "note_id", id, "committed", committed, "err", err)
			}
		}, nil
	}
}
