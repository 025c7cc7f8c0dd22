package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

type ctxKey struct{}

// requestInfo travels in the request context so handlers log with the
// request id without passing it around.
type requestInfo struct {
	id  string
	log *slog.Logger
	// The body before the MAX_BODY_BYTES limit and the writer it reports
	// to, for setBodyLimit.
	rawBody io.ReadCloser
	rawW    http.ResponseWriter
	body    io.ReadCloser // the limited body the handler reads
}

// logger returns the request's logger: it carries instance_id and
// request_id on every line.
func logger(ctx context.Context) *slog.Logger {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri.log
	}
	return slog.Default()
}

// setBodyLimit replaces the MAX_BODY_BYTES limit of r's body by n, for the
// routes that accept larger bodies (file uploads). It must be called before
// the body is read. The new limit wraps the raw body, not the limited one:
// wrapping twice would keep the smaller limit.
func setBodyLimit(r *http.Request, n int64) {
	if ri, ok := r.Context().Value(ctxKey{}).(*requestInfo); ok && ri.rawBody != nil {
		r.Body = http.MaxBytesReader(ri.rawW, ri.rawBody, n)
		ri.body = r.Body
	}
}

func requestID(ctx context.Context) string {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// middleware sets the instance and request id headers, limits the body,
// recovers panics and logs one line per request.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Instance-ID", s.opts.InstanceID)
		w.Header().Set("X-Request-ID", id)
		ri := &requestInfo{id: id, log: s.log.With("request_id", id), rawBody: r.Body, rawW: w}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
		if s.opts.MaxBodyBytes > 0 {
			r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		}
		ri.body = r.Body
		rec := &recorder{ResponseWriter: w, status: http.StatusOK, draining: &s.draining}

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				ri.log.Error("panic", "panic", p)
				if !rec.wrote {
					writeError(rec, r, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				level = slog.LevelDebug // probes every second would drown the log
			}
			ri.log.Log(r.Context(), level, "request",
				"method", r.Method, "path", r.URL.Path, "status", rec.status,
				"bytes", rec.bytes, "duration_ms", float64(time.Since(start).Microseconds())/1000,
				"remote", r.RemoteAddr)
		}()
		next.ServeHTTP(rec, r)
		// A handler that answered without reading the whole body (a 400
		// on a bad key, say) leaves bytes in the socket; Go's server would
		// then reset the connection and a load balancer in front would
		// see an error instead of the answer. Reading the rest, up to the
		// body limit, keeps the connection clean. A client that sent
		// "Expect: 100-continue" and got its answer first never sends the
		// body: there is nothing to read, and waiting for it would stall.
		if r.Header.Get("Expect") == "" {
			_, _ = io.Copy(io.Discard, ri.body)
		}
	})
}

// validRequestID accepts an id a client or load balancer sent when it is 1
// to 128 characters of a safe set: letters, digits and ._~:/+=@- (the set
// the nginx config keeps too). Anything else - quotes, angle brackets,
// spaces, control characters - is replaced by a new id, so a hostile header
// can neither forge log lines nor be echoed into a page or a JSON body.
func validRequestID(id string) bool { return safeToken(id, 128) }

// safeToken reports whether s is 1 to max bytes of the safe set of
// validRequestID. The Idempotency-Key of POST /api/notes follows it too.
func safeToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("._~:/+=@-", c) >= 0) {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recorder remembers the status and size of a response for the log line.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	wrote    bool
	draining *atomic.Bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status = code
		r.begin()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.begin()
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// begin marks the answer as started. While the instance drains, the answer
// says "Connection: close" and Go's server closes the connection after it:
// a load balancer that keeps connections open drops this one instead of
// reusing it, so the drain never has to close a connection under its feet.
// It is decided when the answer starts, not when the request came in, so a
// request that began before the drain leaves no open connection either.
func (r *recorder) begin() {
	r.wrote = true
	if r.draining.Load() {
		r.Header().Set("Connection", "close")
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
