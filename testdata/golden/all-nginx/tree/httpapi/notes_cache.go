package httpapi

import (
	"context"
	"fmt"
	"strconv"

	"example.com/acme/shop/cache"
	"example.com/acme/shop/notes"
)

// The cache feature: GET /api/notes/{id} is cache-aside (X-Cache says
// local, redis or miss), and every update or delete invalidates the note on
// every instance before it commits (InvalidateNote).

func noteKey(id int64) string { return "note:" + strconv.FormatInt(id, 10) }

// cachedNote is loadNote through the cache. A missing note is not cached:
// the store's ErrNotFound comes back as is.
func (s *Server) cachedNote(ctx context.Context, id int64) (notes.Note, string, error) {
	var note notes.Note
	src, err := s.opts.Cache.Get(ctx, noteKey(id), &note, func(ctx context.Context) (any, error) {
		return s.opts.Notes.Get(ctx, id)
	})
	return note, string(src), err
}

// InvalidateNote is the notes.BeforeCommit of the cache: the store calls it
// inside every write, before COMMIT, so no instance can serve
// the old note once the change is visible (see package redis). When the
// invalidation fails the change is rolled back and the client gets 503.
func InvalidateNote(c cache.Cache) notes.BeforeCommit {
	return func(ctx context.Context, id int64) (func(bool), error) {
		done, err := c.Invalidate(ctx, noteKey(id))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", notes.ErrUnavailable, err)
		}
		return done, nil
	}
}
