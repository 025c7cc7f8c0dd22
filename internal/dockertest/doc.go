// Package dockertest holds only tests: the generated docker-compose.yml and
// Dockerfile run by a real Docker engine and docker compose v2, for
// reference-app (haproxy) and the all-nginx golden tree (nginx).
//
// scripts/docker-engine.sh provides the engine: Debian's docker.io, docker
// compose built from the Go module proxy, and local stand-ins for every
// image the project pins, because no image registry is reachable from these
// machines. The stand-ins are made from Debian packages under the upstream
// names and tags, so these tests check the compose file, the Dockerfile,
// the healthchecks, the DNS names and depends_on - what Docker does with
// them - and not the upstream images themselves.
//
// The app's build is cached in the engine between the two trees and between
// runs: both trees send the same build context (TestBuildContextsSame), so
// the second build is all cache hits, and TestCompose keeps the build stage
// and the app image under tags of their own (scaffold-dockertest/...) and
// prunes only the dangling images made from the stand-ins. An unchanged app
// is not compiled again; a changed one once per run.
package dockertest
