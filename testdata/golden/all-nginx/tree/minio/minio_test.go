package minio

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/acme/shop/blob"
	"example.com/acme/shop/testsupport"
)

func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }

// unavailableWithin bounds how long an operation against a stopped server
// may take to report ErrUnavailable: a request must get its 503 promptly.
const unavailableWithin = 3 * time.Second

func newStore(t *testing.T, srv *testsupport.MinIOServer, bucket string) *Store {
	t.Helper()
	s, err := New(Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readyStore(t *testing.T, srv *testsupport.MinIOServer, bucket string) *Store {
	t.Helper()
	s := newStore(t, srv, bucket)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func getAll(t *testing.T, s blob.Store, key string) (blob.Object, []byte) {
	t.Helper()
	obj, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return obj, b
}

// onlyReader hides every method but Read, as an HTTP request body does
// (bytes.Reader would let minio-go seek and read at offsets).
type onlyReader struct{ io.Reader }

func TestRoundTrip(t *testing.T) {
	srv := testsupport.MinIO(t)
	s := readyStore(t, srv, "test-bucket")
	ctx := context.Background()

	// Known length above minio-go's 16 MiB multipart threshold (one
	// streaming PUT), and unknown length over two parts.
	for _, tc := range []struct {
		key   string
		size  int
		known bool
	}{
		{"big/known.bin", 20 << 20, true},
		{"big/chunked.bin", PartSize + 3<<20, false},
		{"small.txt", 5, true},
		{"empty", 0, false},
	} {
		data := randomBytes(t, tc.size)
		size := int64(-1)
		if tc.known {
			size = int64(tc.size)
		}
		start := time.Now()
		if err := s.Put(ctx, tc.key, onlyReader{bytes.NewReader(data)}, size, "application/x-test"); err != nil {
			t.Fatalf("Put(%q, size %d): %v", tc.key, size, err)
		}
		t.Logf("put %s (%d bytes, size %d) in %v", tc.key, tc.size, size, time.Since(start))
		obj, got := getAll(t, s, tc.key)
		if !bytes.Equal(got, data) || obj.Size != int64(tc.size) {
			t.Fatalf("Get(%q): %d bytes, Size %d, want %d identical bytes", tc.key, len(got), obj.Size, tc.size)
		}
		if obj.ContentType != "application/x-test" || time.Since(obj.ModTime) > time.Minute {
			t.Fatalf("Get(%q): content type %q, mod time %v", tc.key, obj.ContentType, obj.ModTime)
		}
	}

	if err := s.Put(ctx, "default-type", strings.NewReader("x"), 1, ""); err != nil {
		t.Fatal(err)
	}
	if obj, _ := getAll(t, s, "default-type"); obj.ContentType != blob.DefaultContentType {
		t.Errorf("content type without one given: %q", obj.ContentType)
	}

	if _, err := s.Get(ctx, "missing"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get(missing): %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "big/known.bin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "big/known.bin"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "big/known.bin"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, "../x", strings.NewReader("x"), 1, ""); !errors.Is(err, blob.ErrInvalidKey) {
		t.Fatalf("Put(../x): %v, want ErrInvalidKey", err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestFailedUploadKeepsOldObject: a client that hangs up or sends too
// much is not a store failure, and the old object stays.
func TestFailedUploadKeepsOldObject(t *testing.T) {
	srv := testsupport.MinIO(t)
	s := readyStore(t, srv, "test-bucket")
	ctx := context.Background()
	if err := s.Put(ctx, "k", strings.NewReader("old"), 3, "text/old"); err != nil {
		t.Fatal(err)
	}
	clientGone := errors.New("client hung up")
	for _, size := range []int64{-1, PartSize + 1<<20} {
		body := io.MultiReader(bytes.NewReader(randomBytes(t, PartSize+100)), errReader{clientGone})
		err := s.Put(ctx, "k", body, size, "text/new")
		if !errors.Is(err, clientGone) || errors.Is(err, blob.ErrUnavailable) {
			t.Fatalf("Put(size %d) with a failing body: %v, want the body's error", size, err)
		}
	}
	obj, got := getAll(t, s, "k")
	if string(got) != "old" || obj.ContentType != "text/old" {
		t.Fatalf("after failed puts: %q %q, want the old object", got, obj.ContentType)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestBucketCreationRace starts 16 instances at once on a server without
// the bucket: every one must succeed and they must share one bucket.
func TestBucketCreationRace(t *testing.T) {
	srv := testsupport.MinIO(t)
	const n = 16
	stores := make([]*Store, n)
	errs := make([]error, n)
	for i := range stores {
		stores[i] = newStore(t, srv, "raced")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.EnsureBucket(ctx)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	for i, s := range stores {
		key := fmt.Sprintf("from-%d", i)
		if err := s.Put(ctx, key, strings.NewReader(key), int64(len(key)), ""); err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		if _, got := getAll(t, stores[(i+1)%n], key); string(got) != key {
			t.Fatalf("instance %d reads %q for %q", (i+1)%n, got, key)
		}
	}
}

// TestServerDown stops MinIO: every operation reports ErrUnavailable
// promptly (measured and logged), Check fails, and all works again once the
// server is back, with the data written before.
func TestServerDown(t *testing.T) {
	srv := testsupport.MinIO(t)
	s := readyStore(t, srv, "test-bucket")
	ctx := context.Background()
	data := randomBytes(t, 1<<20)
	if err := s.Put(ctx, "kept", bytes.NewReader(data), int64(len(data)), "application/x-kept"); err != nil {
		t.Fatal(err)
	}

	srv.Stop(t)
	ops := []struct {
		name string
		do   func() error
	}{
		{"put", func() error { return s.Put(ctx, "new", onlyReader{bytes.NewReader(data)}, int64(len(data)), "") }},
		{"put chunked", func() error { return s.Put(ctx, "new", onlyReader{bytes.NewReader(data)}, -1, "") }},
		{"get", func() error {
			obj, err := s.Get(ctx, "kept")
			if err == nil {
				obj.Body.Close()
			}
			return err
		}},
		{"delete", func() error { return s.Delete(ctx, "kept") }},
		{"check", func() error { return s.Check(ctx) }},
		{"ensure bucket (1 s budget)", func() error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return s.EnsureBucket(ctx)
		}},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.do()
		took := time.Since(start)
		t.Logf("server down: %s -> %v after %v", op.name, err, took.Round(time.Millisecond))
		if !errors.Is(err, blob.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", op.name, err)
		}
		if took > unavailableWithin {
			t.Errorf("%s: took %v to fail, want under %v", op.name, took, unavailableWithin)
		}
	}

	// A starting instance waits for the server in EnsureBucket.
	ensured := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		ensured <- newStore(t, srv, "test-bucket").EnsureBucket(ctx)
	}()
	time.Sleep(500 * time.Millisecond)
	srv.Start(t)
	if err := <-ensured; err != nil {
		t.Fatalf("EnsureBucket while the server started: %v", err)
	}

	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check after restart: %v", err)
	}
	obj, got := getAll(t, s, "kept")
	if !bytes.Equal(got, data) || obj.ContentType != "application/x-kept" {
		t.Fatalf("object written before the stop: %d bytes, type %q", len(got), obj.ContentType)
	}
	if err := s.Put(ctx, "after", strings.NewReader("after"), 5, ""); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
}

// TestWrongCredentials: a configuration error is not "unavailable", so
// start-up fails at once instead of waiting for a server that answers.
func TestWrongCredentials(t *testing.T) {
	srv := testsupport.MinIO(t)
	s, err := New(Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: "wrong", Bucket: "test-bucket"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = s.EnsureBucket(ctx)
	if err == nil || errors.Is(err, blob.ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Fatalf("EnsureBucket with a wrong secret: %v after %v, want a prompt error that is not ErrUnavailable", err, time.Since(start))
	}
	t.Logf("wrong secret: %v", err)
}

// TestPutStreams checks the memory claim of Put: an upload of known length
// is streamed (it allocates far less than its size), and one of unknown
// length holds about one part at a time.
func TestPutStreams(t *testing.T) {
	srv := testsupport.MinIO(t)
	s := readyStore(t, srv, "test-bucket")
	const size = 96 << 20
	for _, tc := range []struct {
		size     int64
		maxAlloc uint64
	}{
		{size, 8 << 20},
		{-1, 3 * PartSize},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		body := onlyReader{io.LimitReader(zeros{}, size)}
		if err := s.Put(context.Background(), "stream", body, tc.size, ""); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("Put of %d MiB with size %d allocated %.1f MiB", size>>20, tc.size, float64(alloc)/(1<<20))
		if alloc > tc.maxAlloc {
			t.Errorf("Put with size %d allocated %d bytes, want at most %d", tc.size, alloc, tc.maxAlloc)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// trickle sends a few bytes, then nothing until release is closed: a slow
// or hostile client of a chunked upload.
type trickle struct {
	sent    bool
	release <-chan struct{}
}

func (r *trickle) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "0123456789"), nil
	}
	<-r.release
	return 0, io.EOF
}

// Uploads of unknown length that trickle pin only the bytes they sent, not
// a part each: 20 of them at once move the heap by a few KiB. (Before:
// minio-go allocated a 16 MiB part for each up front, 320 MiB in all.)
func TestTricklingUploadsPinLittleMemory(t *testing.T) {
	srv := testsupport.MinIO(t)
	s := readyStore(t, srv, "test-bucket")
	ctx := context.Background()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	release := make(chan struct{})
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			errs <- s.Put(ctx, fmt.Sprintf("trickle/%d", i), &trickle{release: release}, -1, "")
		}()
	}
	time.Sleep(500 * time.Millisecond) // every upload has sent its bytes and waits
	during := heap()
	close(release)
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatalf("Put of a trickled upload: %v", err)
		}
	}
	grew := int64(during) - int64(before)
	t.Logf("heap %d KiB before, %d KiB with 20 trickling uploads (%+d KiB)", before>>10, during>>10, grew>>10)
	if grew > 8<<20 {
		t.Errorf("20 trickling uploads grew the heap by %d MiB, want under 8 MiB", grew>>20)
	}
	if _, got := getAll(t, s, "trickle/7"); string(got) != "0123456789" {
		t.Errorf("trickle/7 = %q, want the 10 bytes sent", got)
	}
}
