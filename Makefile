# Targets for people and CI; see README.md.
.PHONY: test k8s-server-check golden reference deps bench

# The whole suite, without -short: the combination matrix builds every
# feature combination and tests every pair of features, and the conformance
# test runs the generated cluster behind each load balancer. -p 1 runs one package at a time: the
# matrix and the cluster test each load both cores, and timing-sensitive
# checks (a rolling restart with zero failed requests) deserve a quiet
# machine. The servers the tests start (PostgreSQL, Redis, MinIO, nginx,
# haproxy) are installed first, by the script every generated project has,
# and the Kubernetes tools internal/k8scheck uses (kustomize, kubeconform and
# the schemas of a pinned Kubernetes release, into ~/.cache/scaffold).
# internal/dockertest installs and starts its Docker engine itself
# (scripts/docker-engine.sh, as root) and keeps the app's image layers in it.
test:
	sh reference-app/scripts/install-servers.sh
	go run ./internal/k8scheck/install
	go vet ./...
	go test -p 1 -timeout 80m ./...

# The server-side dry run of every generated Kubernetes overlay and the
# rollout on fake nodes (internal/k8scheck, TestServer*): each object applied
# with dryRun=All to a real kube-apiserver v1.37.2 on etcd v3.7.3, then
# reference-app's prod overlay run by kube-controller-manager and
# kube-scheduler on kwok v0.8.0's nodes. All are built from the Go module
# proxy into ~/.cache/scaffold the first time, which takes too long for make
# test (see README.md); make test runs these tests only when they are already
# built. K8S_SERVER_CHECK makes a missing binary a failure.
k8s-server-check:
	go run ./internal/k8scheck/install -server
	K8S_SERVER_CHECK=1 go test -count=1 -run '^TestServer' ./internal/k8scheck/

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
	sh reference-app/scripts/install-servers.sh
	go run ./internal/bench
