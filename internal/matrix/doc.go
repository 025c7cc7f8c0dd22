// Package matrix holds only a test: it generates every valid combination of
// the available features and builds, vets, tidies and tests each one, and
// with every feature on, covers the other answers (replicas 1, 2, 3 and 20,
// both load balancers, two ports) pairwise, running the cluster tests whose
// meaning depends on them. It is slow (minutes) and is skipped only with
// -short.
package matrix
