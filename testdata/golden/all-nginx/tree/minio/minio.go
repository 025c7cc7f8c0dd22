// Package minio is the blob.Store for clusters: objects live in a bucket of
// an S3 server (MinIO, or any S3-compatible one), shared by every instance.
package minio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"example.com/acme/shop/blob"
)

const (
	// PartSize is the size of the parts of an upload whose length is not
	// known in advance (a chunked request body). minio-go reads each part
	// into memory before sending it, so every such upload in flight holds
	// up to PartSize bytes; minio-go's own default for an unknown length
	// is about 537 MiB. 16 MiB parts allow objects up to 156 GiB (10,000
	// parts). Uploads of known length do not buffer at all (see Put).
	PartSize = 16 << 20

	// maxSinglePut is S3's limit for one PUT request; larger objects of
	// known length go up in parts.
	maxSinglePut = 5 << 30

	// smallPut is how much of an upload of unknown length is read first,
	// into a buffer that grows only as the bytes arrive: a body that ends
	// within it goes up as one PUT of known length, and a client that
	// trickles a few bytes pins only those bytes, not a whole part.
	smallPut = 1 << 20

	// MaxPartUploads bounds the uploads of unknown length larger than
	// smallPut that run at once, each holding a part of PartSize bytes in
	// memory: at most MaxPartUploads x PartSize (64 MiB) per instance. More
	// wait for a slot, for as long as their request lives.
	MaxPartUploads = 4

	// maxRetries bounds minio-go's own retries of a failed request (its
	// default is 10, with backoff up to 1 s each: about 10 s before a down
	// server is reported). Request bodies that cannot be rewound (an upload
	// streamed from a client) are never retried whatever this says.
	maxRetries = 3

	// dialTimeout bounds connecting, so an unreachable host (packets
	// dropped, not refused) is reported in seconds, not after the 30 s of
	// minio-go's default transport.
	dialTimeout = 2 * time.Second

	// DefaultOpTimeout is Config.OpTimeout's default.
	DefaultOpTimeout = 5 * time.Second
)

// Config says where the bucket is.
type Config struct {
	Endpoint  string // host:port, no scheme
	AccessKey string
	SecretKey string
	Bucket    string
	UseSSL    bool
	// OpTimeout bounds every request that does not move an object's bytes
	// (stat, delete, check, bucket creation) and the wait for the first
	// byte of a download. A down server thus yields ErrUnavailable (503)
	// within OpTimeout instead of holding the request. Zero means
	// DefaultOpTimeout.
	OpTimeout time.Duration
}

// Store is a blob.Store on one bucket. It is safe for concurrent use.
type Store struct {
	client    *miniogo.Client
	bucket    string
	opTimeout time.Duration
	parts     chan struct{} // slots for uploads in parts; see MaxPartUploads
}

var _ blob.Store = (*Store)(nil)

// New returns a Store. It does not contact the server: call EnsureBucket.
func New(cfg Config) (*Store, error) {
	tr, err := miniogo.DefaultTransport(cfg.UseSSL)
	if err != nil {
		return nil, fmt.Errorf("minio: transport: %w", err)
	}
	tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	client, err := miniogo.New(cfg.Endpoint, &miniogo.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     cfg.UseSSL,
		Transport:  tr,
		MaxRetries: maxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("minio: endpoint %q: %w", cfg.Endpoint, err)
	}
	s := &Store{client: client, bucket: cfg.Bucket, opTimeout: cfg.OpTimeout, parts: make(chan struct{}, MaxPartUploads)}
	if s.opTimeout <= 0 {
		s.opTimeout = DefaultOpTimeout
	}
	return s, nil
}

// EnsureBucket creates the bucket unless it exists, retrying with backoff
// while the server cannot be reached (it may be starting, like this
// instance) until ctx is done. Many instances may call it at once: losing
// the creation race to another instance counts as success.
func (s *Store) EnsureBucket(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for {
		err := s.makeBucket(ctx)
		if err == nil || !errors.Is(err, blob.ErrUnavailable) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("minio: gave up creating bucket %q: %w", s.bucket, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (s *Store) makeBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	err := s.client.MakeBucket(ctx, s.bucket, miniogo.MakeBucketOptions{})
	if err == nil || miniogo.ToErrorResponse(err).Code == miniogo.BucketAlreadyOwnedByYou {
		return nil
	}
	// Another instance may have won the race, and S3 servers do not all
	// answer that case alike (BucketAlreadyExists, or a conflict during
	// creation). If the bucket is there and ours to use, that is success.
	// (A bucket of another account answers AccessDenied here.)
	if ok, existsErr := s.client.BucketExists(ctx, s.bucket); existsErr == nil && ok {
		return nil
	}
	return mapErr("create bucket", s.bucket, err)
}

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	if contentType == "" {
		contentType = blob.DefaultContentType
	}
	opts := miniogo.PutObjectOptions{ContentType: contentType, PartSize: PartSize}
	// body hides r's Close (minio-go closes a body it can, and r is the
	// caller's) and remembers why reading r failed: a client that sent too
	// much or hung up is not a store failure.
	body := &bodyReader{r: r}
	var in io.Reader = body
	if size < 0 {
		// Unknown length: minio-go would read a whole part into memory
		// before sending anything. Read up to smallPut first; a body that
		// ends there has a known length after all.
		var head bytes.Buffer
		n, err := io.CopyN(&head, body, smallPut+1)
		switch {
		case err == io.EOF:
			size, in = n, &head
		case err != nil:
			return fmt.Errorf("minio: put %q: read body: %w", key, err)
		default:
			select {
			case s.parts <- struct{}{}:
				defer func() { <-s.parts }()
			case <-ctx.Done():
				return fmt.Errorf("minio: put %q: waiting for a slot for an upload in parts: %w", key, ctx.Err())
			}
			in = io.MultiReader(&head, body)
		}
	}
	// With a known length one streaming PUT carries the body and nothing is
	// buffered.
	if size >= 0 && size <= maxSinglePut {
		opts.DisableMultipart = true
	}
	_, err := s.client.PutObject(ctx, s.bucket, key, in, size, opts)
	if err != nil && body.err != nil {
		return fmt.Errorf("minio: put %q: read body: %w", key, body.err)
	}
	return mapErr("put", key, err)
}

type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Get implements blob.Store.
func (s *Store) Get(ctx context.Context, key string) (blob.Object, error) {
	if err := blob.ValidKey(key); err != nil {
		return blob.Object{}, err
	}
	// The download runs under ctx for as long as the client reads, but the
	// wait for the server's answer is bounded by opTimeout. A context
	// timeout would also cut long downloads, hence the timer that cancels
	// only if the answer has not come yet.
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(s.opTimeout, cancel)
	body, info, _, err := miniogo.Core{Client: s.client}.GetObject(ctx, s.bucket, key, miniogo.GetObjectOptions{})
	timedOut := !timer.Stop()
	if err == nil && timedOut {
		body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		if timedOut {
			return blob.Object{}, fmt.Errorf("%w: get %q: no answer within %s", blob.ErrUnavailable, key, s.opTimeout)
		}
		return blob.Object{}, mapErr("get", key, err)
	}
	return blob.Object{
		Body:        cancelOnClose{body, cancel},
		Size:        info.Size,
		ContentType: info.ContentType,
		ModTime:     info.LastModified,
	}, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Delete implements blob.Store. S3 deletes of a missing key succeed, so a
// stat first tells a missing key (ErrNotFound) apart.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidKey(key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	if _, err := s.client.StatObject(ctx, s.bucket, key, miniogo.StatObjectOptions{}); err != nil {
		return mapErr("delete", key, err)
	}
	return mapErr("delete", key, s.client.RemoveObject(ctx, s.bucket, key, miniogo.RemoveObjectOptions{}))
}

// Check implements blob.Store: the server answers and the bucket exists.
func (s *Store) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return mapErr("check bucket", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("%w: bucket %q does not exist", blob.ErrUnavailable, s.bucket)
	}
	return nil
}

// mapErr turns minio-go's errors into blob's: a missing key is
// ErrNotFound; a server that cannot be reached, answers 5xx (starting,
// overloaded) or lost its bucket is ErrUnavailable; anything else (denied
// access, bad request) stays a plain error.
func mapErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	resp := miniogo.ToErrorResponse(err)
	var urlErr *url.Error
	switch {
	case resp.Code == miniogo.NoSuchKey:
		return fmt.Errorf("%w: %q", blob.ErrNotFound, name)
	case resp.Code == miniogo.NoSuchBucket, resp.StatusCode >= 500,
		// No answer at all. (Errors reading an upload's body are told
		// apart in Put before this.)
		errors.As(err, &urlErr), miniogo.IsNetworkOrHostDown(err, false):
		return fmt.Errorf("%w: %s %q: %w", blob.ErrUnavailable, op, name, err)
	}
	return fmt.Errorf("minio: %s %q: %w", op, name, err)
}
