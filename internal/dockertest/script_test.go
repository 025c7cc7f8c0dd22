package dockertest

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestStandinsCoverPinnedImages checks, without an engine, that
// scripts/docker-engine.sh makes a stand-in for every image the trees pin,
// under the same reference: a tag changed in the templates must be changed
// there too, or compose would try to pull it.
func TestStandinsCoverPinnedImages(t *testing.T) {
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for _, m := range regexp.MustCompile(`(?m)^IMG_[A-Z]+=(\S+)$`).FindAllSubmatch(b, -1) {
		made = append(made, string(m[1]))
	}
	if len(made) == 0 {
		t.Fatal("no IMG_ line in scripts/docker-engine.sh")
	}
	for _, tree := range trees {
		refs, err := pinnedImages(tree.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range refs {
			if !slices.Contains(made, ref) {
				t.Errorf("%s pins %s; scripts/docker-engine.sh makes no stand-in for it (it makes %v)", tree.dir, ref, made)
			}
		}
	}
}

// TestMinIOVersion: the MinIO stand-in is the binary install-servers.sh
// builds, found by its version.
func TestMinIOVersion(t *testing.T) {
	re := regexp.MustCompile(`(?m)^MINIO_VERSION=(\S+)$`)
	var versions []string
	for _, path := range []string{script, "../../reference-app/scripts/install-servers.sh"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no MINIO_VERSION= line in %s", path)
		}
		versions = append(versions, string(m[1]))
	}
	if versions[0] != versions[1] {
		t.Errorf("scripts/docker-engine.sh has MINIO_VERSION=%s, install-servers.sh %s", versions[0], versions[1])
	}
}
