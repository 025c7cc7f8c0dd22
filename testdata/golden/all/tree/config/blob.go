package config

import "strings"

// Blob holds the settings of the blob feature.
type Blob struct {
	// BlobDir is the local directory for files when no S3 server is set
	// (BLOB_DIR); single-node only.
	BlobDir string
	// S3Endpoint is host:port of the S3 server (S3_ENDPOINT); when set,
	// files go to its bucket S3Bucket, shared by every instance.
	S3Endpoint  string
	S3AccessKey string // S3_ACCESS_KEY
	S3SecretKey string // S3_SECRET_KEY
	S3Bucket    string // S3_BUCKET
	S3UseSSL    bool   // S3_USE_SSL: https to the S3 server
	// MaxFileBytes caps an uploaded file (MAX_FILE_BYTES); it replaces
	// MaxBodyBytes on the file routes.
	MaxFileBytes int64
}

func loadBlob(r *reader, c *Config) {
	c.BlobDir = r.str("BLOB_DIR", "./data/blobs")
	c.S3Endpoint = r.str("S3_ENDPOINT", "")
	// Read whatever S3_ENDPOINT is, so that Vars lists them.
	c.S3AccessKey = r.str("S3_ACCESS_KEY", "")
	c.S3SecretKey = r.str("S3_SECRET_KEY", "")
	c.S3Bucket = r.str("S3_BUCKET", "shop")
	c.S3UseSSL = r.bool("S3_USE_SSL", false)
	c.MaxFileBytes = int64(r.int("MAX_FILE_BYTES", 32<<20, 1, 1<<40))
	switch {
	case strings.Contains(c.S3Endpoint, "/"):
		r.fail("S3_ENDPOINT", c.S3Endpoint, "want host:port without scheme or path (S3_USE_SSL=true for https)")
	case c.S3Endpoint != "":
		if c.S3AccessKey == "" {
			r.missing("S3_ACCESS_KEY", "S3_ENDPOINT is set")
		}
		if c.S3SecretKey == "" {
			r.missing("S3_SECRET_KEY", "S3_ENDPOINT is set")
		}
	case c.Cluster:
		r.clusterNeeds("S3_ENDPOINT", "files in a local directory are not shared between instances")
	}
}
