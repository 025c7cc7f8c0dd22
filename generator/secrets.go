package generator

import "io"

// SecretsFunc makes files with random content for a feature (compose's .env
// with its passwords, for instance).
type SecretsFunc func(a Answers, random io.Reader) (map[string][]byte, error)

// Secrets returns the files with random content of the features on in a,
// read from random. They are written with the project but are not part of
// Generate's output: the same answers must give the same bytes, and a
// project's secrets must not be the same as every other's. Golden trees and
// reference-app leave them out.
func Secrets(a Answers, random io.Reader) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, f := range Features {
		if f.Secrets == nil || !a.Has(f.Name) {
			continue
		}
		more, err := f.Secrets(a, random)
		if err != nil {
			return nil, err
		}
		for p, b := range more {
			files[p] = b
		}
	}
	return files, nil
}
