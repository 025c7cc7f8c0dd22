package httpapi

import (
	"context"
	"strconv"

	"example.com/jobs/notes"
)

// The cache feature: GET /api/notes/{id} is cache-aside (X-Cache says
// local, redis or miss), and every update or delete invalidates the note on
// every instance before its response is written (see package redis).

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

// invalidateNote is noteChanged's cache part. The write is committed
// whatever happens here, so a failure (Redis down) is logged, not answered:
// the cache has already waited until no instance can serve the old note
// from its local tier, and Redis entries it could not delete expire
// (CACHE_TTL) or are deleted when Redis answers again.
func (s *Server) invalidateNote(ctx context.Context, id int64) {
	if err := s.opts.Cache.Delete(ctx, noteKey(id)); err != nil {
		logger(ctx).Warn("cache invalidation failed; the write is committed", "note_id", id, "err", err)
	}
}
