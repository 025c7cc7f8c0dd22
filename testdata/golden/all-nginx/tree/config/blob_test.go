package config

import (
	"strings"
	"testing"
)

func TestBlob(t *testing.T) {
	c, err := Load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.BlobDir != "./data/blobs" || c.S3Endpoint != "" || c.S3Bucket != "shop" || c.S3UseSSL || c.MaxFileBytes != 32<<20 {
		t.Errorf("blob defaults = %+v", c)
	}

	c, err = Load(env("S3_ENDPOINT", "minio:9000", "S3_ACCESS_KEY", "ak", "S3_SECRET_KEY", "sk",
		"S3_BUCKET", "files", "S3_USE_SSL", "true", "MAX_FILE_BYTES", "1000", "CLUSTER_MODE", "true"))
	if err != nil {
		t.Fatal(err)
	}
	if c.S3Endpoint != "minio:9000" || c.S3AccessKey != "ak" || c.S3SecretKey != "sk" || c.S3Bucket != "files" ||
		!c.S3UseSSL || c.MaxFileBytes != 1000 {
		t.Errorf("blob values = %+v", c)
	}

	for _, tc := range []struct {
		env  []string
		want []string
	}{
		{[]string{"CLUSTER_MODE", "true"}, []string{"S3_ENDPOINT is required when CLUSTER_MODE=true"}},
		{[]string{"S3_ENDPOINT", "minio:9000"}, []string{"S3_ACCESS_KEY is required", "S3_SECRET_KEY is required"}},
		{[]string{"S3_ENDPOINT", "http://minio:9000"}, []string{`S3_ENDPOINT="http://minio:9000"`}},
		{[]string{"MAX_FILE_BYTES", "0"}, []string{`MAX_FILE_BYTES="0"`}},
	} {
		_, err := Load(env(tc.env...))
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%q) = %v, want an error with %q", tc.env, err, want)
			}
		}
	}
}
