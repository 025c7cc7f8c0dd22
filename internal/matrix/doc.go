// Package matrix holds only a test: it generates every valid combination of
// the available features (those that differ only by k8s, which adds no Go
// code, once: with it) and builds, vets and tidies each one, tests those
// that hold every pair of two features' values, and
// with every feature on, covers the other answers (replicas 1, 2, 3 and 20,
// both load balancers, two ports) pairwise, running the cluster tests whose
// meaning depends on them. It is slow (minutes) and is skipped only with
// -short.
package matrix
