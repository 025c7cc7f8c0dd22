// Package matrix holds only a test: of the valid combinations of the
// available features (those that differ only by k8s, which adds no Go code,
// once: with it) it vets and tidies enough that every three features'
// values are in one, tests enough that every two features' values are in
// one, and with every feature on, covers the other answers (replicas 1, 2,
// 3 and 20, both load balancers, two ports) pairwise, running the cluster
// tests whose meaning depends on them. It is slow (minutes) and is skipped
// only with -short.
package matrix
