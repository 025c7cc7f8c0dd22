// Package httpapi is the service's HTTP interface: routes, middleware, and
// the JSON shapes of responses and errors. It holds no state of its own, so
// every instance answers every request the same way.
package httpapi

import (
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"example.com/acme/shop/cache"
	"example.com/acme/shop/lock"
	"example.com/acme/shop/notes"
)

// Options are what the server is built from. cmd/ fills them in.
type Options struct {
	Logger       *slog.Logger
	InstanceID   string
	Version      string
	MaxBodyBytes int64
	// Checks are run by /readyz.
	Checks []Check

	// db
	Notes notes.Store // nil: no /api/notes routes

	// cache
	Cache cache.Cache // nil: GET /api/notes/{id} reads Notes directly, without X-Cache

	// blob
	Files        FileStore // nil: no /api/files routes
	MaxFileBytes int64     // limit of an uploaded file; replaces MaxBodyBytes there
	// FileIdleTimeout cuts a file upload or download that moves no byte
	// for this long; it replaces the server's whole-request timeouts on
	// the file routes (see idleReader). Zero means 60s.
	FileIdleTimeout time.Duration

	// worker
	Leader  Leader  // nil: /api/instance has no "leader" field
	JobRuns JobRuns // nil: no /api/jobs/runs route

	// lock
	Locks       lock.Locker // nil: no POST /api/notes/{id}/append
	FencedNotes FencedNotes // the fenced write of the append

	// realtime
	Events          Events        // nil: no GET /api/events
	EventsHeartbeat time.Duration // interval of the streams' heartbeats; zero means 15s
}

// Server routes requests. It is safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	handler  http.Handler
	draining atomic.Bool
	streams  streams // ended by Drain

	checkFailing sync.Map // check name -> bool: failing at the last /readyz
}

// New returns a server with every route registered.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	s.routes()
	s.handler = s.middleware(http.HandlerFunc(s.route))
	return s
}

// routes is the one place where every route is registered.
func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /api/instance", s.instance)
	s.notesRoutes()
	s.filesRoutes()
	s.jobsRoutes()
	s.appendRoutes()
	s.eventsRoutes()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Drain makes /readyz answer 503 and every answer close its connection, so
// that load balancers stop sending requests here, and keep no connection
// open to this instance, before the process stops listening.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.streams.end() // open event streams end; their clients reconnect elsewhere
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) instance(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{
		"instance_id": s.opts.InstanceID,
		"version":     s.opts.Version,
	}
	if s.opts.Leader != nil {
		body["leader"] = s.opts.Leader.IsLeader()
	}
	writeJSON(w, http.StatusOK, body)
}

// route serves a request through the mux, but answers an unknown path (404)
// or method (405) with the JSON error shape instead of the mux's plain text.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(&muxError{ResponseWriter: w, r: r}, r)
}

// muxError turns the mux's own 404 and 405 replies into JSON errors; the
// Allow header the mux sets on a 405 is kept.
type muxError struct {
	http.ResponseWriter
	r       *http.Request
	written bool
}

func (m *muxError) WriteHeader(code int) {
	if m.written {
		return
	}
	m.written = true
	m.Header().Del("Content-Type")
	m.Header().Del("X-Content-Type-Options")
	msg, errCode := "no route for "+m.r.URL.Path, "not_found"
	if code == http.StatusMethodNotAllowed {
		msg, errCode = "method "+m.r.Method+" not allowed for "+m.r.URL.Path, "method_not_allowed"
	}
	writeError(m.ResponseWriter, m.r, code, errCode, msg)
}

func (m *muxError) Write(b []byte) (int, error) {
	if !m.written {
		m.WriteHeader(http.StatusOK)
	}
	return len(b), nil // the mux's plain-text body is dropped
}
