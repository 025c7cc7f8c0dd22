package httpapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"example.com/acme/shop/blob"
)

// FileStore is what the file routes need: blob.Dir on a single node, the
// S3 store (package minio) in a cluster.
type FileStore = blob.Store

// maxContentTypeBytes bounds the Content-Type stored with a file.
const maxContentTypeBytes = 255

func (s *Server) filesRoutes() {
	if s.opts.Files == nil {
		return
	}
	// {key...} takes the rest of the path, so keys may hold slashes.
	s.mux.HandleFunc("PUT /api/files/{key...}", s.putFile)
	s.mux.HandleFunc("GET /api/files/{key...}", s.getFile)
	s.mux.HandleFunc("DELETE /api/files/{key...}", s.deleteFile)
}

type fileInfo struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
}

// putFile streams the body into the store: it is never held in memory
// whole, and it may be up to MaxFileBytes (not MaxBodyBytes).
func (s *Server) putFile(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := blob.ValidKey(key); err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_key", err.Error())
		return
	}
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		contentType = blob.DefaultContentType
	} else if _, _, err := mime.ParseMediaType(contentType); err != nil || len(contentType) > maxContentTypeBytes {
		writeError(w, r, http.StatusBadRequest, "invalid_content_type",
			fmt.Sprintf("Content-Type %.64q is not a valid media type of at most %d bytes", contentType, maxContentTypeBytes))
		return
	}
	limit := s.opts.MaxFileBytes
	if limit <= 0 {
		limit = s.opts.MaxBodyBytes
	}
	// A declared length over the limit is refused before reading anything
	// (a client that sent "Expect: 100-continue" never sends the body). A
	// chunked body (length -1) is cut by the limit while it streams.
	if r.ContentLength > limit {
		writeError(w, r, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("file is larger than %d bytes", limit))
		return
	}
	setBodyLimit(r, limit)
	body := &countingReader{r: &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: s.fileIdle()}}
	if err := s.opts.Files.Put(r.Context(), key, body, r.ContentLength, contentType); err != nil {
		// A failure to read the body is the client's (too large, or it
		// hung up), whatever the store made of it.
		if body.err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(body.err, &tooBig) {
				writeError(w, r, http.StatusRequestEntityTooLarge, "too_large",
					fmt.Sprintf("file is larger than %d bytes", limit))
				return
			}
			logger(r.Context()).Info("file upload cut short", "key", key, "error", body.err)
			writeError(w, r, http.StatusBadRequest, "bad_request", "reading the request body failed")
			return
		}
		s.fileError(w, r, "put", key, err)
		return
	}
	writeJSON(w, http.StatusCreated, fileInfo{Key: key, Size: body.n, ContentType: contentType})
}

// getFile streams the object out with its type, length and time.
func (s *Server) getFile(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := blob.ValidKey(key); err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_key", err.Error())
		return
	}
	obj, err := s.opts.Files.Get(r.Context(), key)
	if err != nil {
		s.fileError(w, r, "get", key, err)
		return
	}
	defer obj.Body.Close()
	h := w.Header()
	h.Set("Content-Type", obj.ContentType)
	h.Set("Content-Length", strconv.FormatInt(obj.Size, 10))
	if !obj.ModTime.IsZero() {
		h.Set("Last-Modified", obj.ModTime.UTC().Format(http.TimeFormat))
	}
	// Uploaded content is served from the API's origin: browsers must not
	// guess another type, nor run an uploaded HTML page's scripts here.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	out := &idleWriter{w: w, rc: http.NewResponseController(w), idle: s.fileIdle()}
	if n, err := io.Copy(out, obj.Body); err != nil {
		// The status is sent; the client sees a short body.
		logger(r.Context()).Warn("file download cut short", "key", key, "sent", n, "size", obj.Size, "error", err)
	}
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := blob.ValidKey(key); err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_key", err.Error())
		return
	}
	if err := s.opts.Files.Delete(r.Context(), key); err != nil {
		s.fileError(w, r, "delete", key, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fileError answers a failed store call. Details of an unavailable or
// failing store (addresses, credentials' names) go to the log only.
func (s *Server) fileError(w http.ResponseWriter, r *http.Request, op, key string, err error) {
	switch {
	case errors.Is(err, blob.ErrInvalidKey):
		writeError(w, r, http.StatusBadRequest, "invalid_key", err.Error())
	case errors.Is(err, blob.ErrNotFound):
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("file %q not found", key))
	case errors.Is(err, blob.ErrConflict):
		writeError(w, r, http.StatusConflict, "conflict",
			fmt.Sprintf("file %q conflicts with another key (a file cannot also be a folder)", key))
	case errors.Is(err, blob.ErrUnavailable):
		logger(r.Context()).Warn("file store unavailable", "op", op, "key", key, "error", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, r, http.StatusServiceUnavailable, "unavailable", "file storage is unavailable, try again later")
	default:
		logger(r.Context()).Error("file store failed", "op", op, "key", key, "error", err)
		writeError(w, r, http.StatusInternalServerError, "internal", "internal error")
	}
}

// Files move at the client's pace. The server's ReadTimeout and
// WriteTimeout bound a whole request (60 s), which would cut a 100 MiB
// upload or download slower than 1.75 MB/s; on the file routes every read
// and write instead pushes the connection's deadlines FileIdleTimeout
// ahead, so a slow transfer goes on and a stalled one ends.
func (s *Server) fileIdle() time.Duration {
	if s.opts.FileIdleTimeout > 0 {
		return s.opts.FileIdleTimeout
	}
	return 60 * time.Second
}

// idleReader pushes both deadlines back before each read of an upload:
// the write one too, because the response is written after the body.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	t := time.Now().Add(i.idle)
	_ = i.rc.SetReadDeadline(t)
	_ = i.rc.SetWriteDeadline(t)
	return i.r.Read(p)
}

// idleWriter pushes the write deadline back before each write of a
// download.
type idleWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleWriter) Write(p []byte) (int, error) {
	_ = i.rc.SetWriteDeadline(time.Now().Add(i.idle))
	return i.w.Write(p)
}

// countingReader counts the bytes read and keeps the first read error
// other than EOF.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
