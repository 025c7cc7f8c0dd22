// Package blob stores files ("objects") by key. Store is the small interface
// the HTTP layer consumes; Dir is the single-node implementation (a local
// directory) and package minio is the one for clusters (any S3 server).
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxKeyBytes is the longest key accepted, and MaxElementBytes the longest
// element between slashes. S3 allows 1024 bytes; a local file system limits
// whole paths to 4096 bytes and single names to 255, so these keep both
// implementations equal: a key one accepts, the other accepts too.
const (
	MaxKeyBytes     = 512
	MaxElementBytes = 255
)

var (
	// ErrNotFound is returned by Get and Delete for a key that has no object.
	ErrNotFound = errors.New("blob: not found")
	// ErrUnavailable means the backend cannot be reached (or is not ready).
	// It is temporary: the HTTP layer answers 503 and the client may retry.
	ErrUnavailable = errors.New("blob: store unavailable")
	// ErrInvalidKey is wrapped by ValidKey's errors.
	ErrInvalidKey = errors.New("blob: invalid key")
	// ErrConflict means the key cannot be stored because a file and a
	// "directory" would share a name ("a" and "a/b"). Only Dir returns it:
	// S3 keys are flat and never conflict.
	ErrConflict = errors.New("blob: key conflicts with an existing key")
)

// Object is a stored object being read. The caller must close Body.
type Object struct {
	Body        io.ReadCloser
	Size        int64
	ContentType string
	ModTime     time.Time
}

// Store keeps objects by key. Implementations are safe for concurrent use
// by many goroutines and, for package minio, by many instances.
type Store interface {
	// Put stores r under key, replacing any object there. size is the
	// exact length of r, or -1 when unknown. Readers never see a partly
	// written object: either the old one or the new one.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Get opens the object at key, or returns ErrNotFound.
	Get(ctx context.Context, key string) (Object, error)
	// Delete removes the object at key, or returns ErrNotFound.
	Delete(ctx context.Context, key string) error
	// Check reports whether the store answers (for readiness).
	Check(ctx context.Context) error
}

// ValidKey accepts keys that are safe as S3 object names and as relative
// file paths: slash-separated, non-empty elements of at most
// MaxElementBytes bytes, no "." or ".." element, at most MaxKeyBytes bytes of valid UTF-8 without control characters or
// backslashes (which some systems treat as separators).
func ValidKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, truncate(key), why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyBytes:
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyBytes))
	case !utf8.ValidString(key):
		return bad("not valid UTF-8")
	case strings.HasPrefix(key, "/"):
		return bad("starts with /")
	case strings.HasSuffix(key, "/"):
		return bad("ends with /")
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return bad("contains a control character")
		}
		if c == '\\' {
			return bad(`contains \`)
		}
	}
	for elem := range strings.SplitSeq(key, "/") {
		switch elem {
		case "":
			return bad("contains an empty path element (//)")
		case ".", "..":
			return bad("contains a . or .. path element")
		}
		if len(elem) > MaxElementBytes {
			return bad(fmt.Sprintf("has a path element longer than %d bytes", MaxElementBytes))
		}
	}
	return nil
}

// truncate keeps error messages short when a hostile key is huge.
func truncate(key string) string {
	if len(key) > 64 {
		return key[:64] + "..."
	}
	return key
}
