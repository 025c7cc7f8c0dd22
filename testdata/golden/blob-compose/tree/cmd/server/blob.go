package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/acme/files/blob"
	"github.com/acme/files/config"
	"github.com/acme/files/httpapi"
	"github.com/acme/files/minio"
)

// bucketWait is how long start-up waits for the S3 server to create the
// bucket (compose starts the app and MinIO together). A var for tests.
var bucketWait = 15 * time.Second

// openFiles serves the file routes from the file store, and adds its
// readiness check: not critical, since a store that fails makes only the
// file routes fail (503). The returned func releases the store, after the
// server has drained.
func openFiles(ctx context.Context, cfg config.Config, log *slog.Logger, opts *httpapi.Options) (func(), error) {
	files, closeFiles, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	opts.Files, opts.MaxFileBytes = files, cfg.MaxFileBytes
	opts.Checks = append(opts.Checks, httpapi.Check{Name: "blob", Critical: false, Check: files.Check})
	return closeFiles, nil
}

// openStore opens the file store: the bucket S3_BUCKET on S3_ENDPOINT when
// that is set, else the local directory BLOB_DIR. The returned func
// releases it.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (blob.Store, func(), error) {
	if cfg.S3Endpoint == "" {
		d, err := blob.OpenDir(cfg.BlobDir)
		if err != nil {
			return nil, nil, err
		}
		log.Info("files in a local directory", "dir", cfg.BlobDir, "max_file_bytes", cfg.MaxFileBytes)
		return d, func() { d.Close() }, nil
	}

	s, err := minio.New(minio.Config{
		Endpoint:  cfg.S3Endpoint,
		AccessKey: cfg.S3AccessKey,
		SecretKey: cfg.S3SecretKey,
		Bucket:    cfg.S3Bucket,
		UseSSL:    cfg.S3UseSSL,
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info("files in an S3 bucket", "endpoint", cfg.S3Endpoint, "bucket", cfg.S3Bucket,
		"max_file_bytes", cfg.MaxFileBytes)
	waitCtx, cancel := context.WithTimeout(ctx, bucketWait)
	err = s.EnsureBucket(waitCtx)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, blob.ErrUnavailable):
		// The S3 server is down: serve anyway, as when it goes down later.
		// The file routes answer 503 (readiness says "degraded") until the
		// bucket is made in the background.
		log.Warn("S3 server unavailable at start; file routes answer 503 until it is back", "error", err)
		go func() {
			if err := s.EnsureBucket(ctx); err == nil {
				log.Info("S3 bucket ready", "bucket", cfg.S3Bucket)
			}
		}()
	default:
		// Wrong credentials or bucket name: a configuration error.
		return nil, nil, err
	}
	return s, func() {}, nil
}
