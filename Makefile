# Targets for people and CI; see README.md.
.PHONY: test golden reference deps bench

# The whole suite, without -short: the combination matrix builds every
# feature combination. Servers for the integration tests are installed first
# when reference-app provides the script for it.
test:
	@if [ -f reference-app/scripts/install-servers.sh ]; then sh reference-app/scripts/install-servers.sh; fi
	go vet ./...
	go test -timeout 60m ./...

# Rewrite testdata/golden/*/tree from the generator's output.
golden:
	go test ./generator -run '^TestGolden$$' -update

# Rewrite reference-app/ (the "all" preset) from the generator's output.
reference:
	go test ./generator -run '^TestReferenceApp$$' -update

# Resolve the go.mod requirements and go.sum of every feature set into
# generator/deps (needs the module proxy). Follow with: make golden reference
deps:
	go run ./internal/lockdeps

# Measure the generated cluster (make bench in reference-app: one table, each
# row beside its reference) and add the generation row (scaffold new, go
# build). Servers are installed first, as for make test. Record a run in
# reference-app/BENCHMARKS.md (written here, not generated; see
# TestReferenceApp).
bench:
	@if [ -f reference-app/scripts/install-servers.sh ]; then sh reference-app/scripts/install-servers.sh; fi
	go run ./internal/bench
