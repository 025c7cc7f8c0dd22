// Package matrix holds only a test: it generates every valid combination of
// the available features and builds, vets, tidies and tests each one. It is
// slow (minutes once the features exist) and is skipped only with -short.
package matrix
