package generator

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

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

// composeSecrets writes .env: .env.example with every "change-me" replaced
// by its own random value (hex, so it is safe inside URLs).
func composeSecrets(a Answers, random io.Reader) (map[string][]byte, error) {
	example, err := render(".env.example.tmpl", ".env.example", newData(a, Lock{}), nil)
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(string(example), "\n") {
		if name, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok && value == "change-me" {
			var b [16]byte
			if _, err := io.ReadFull(random, b[:]); err != nil {
				return nil, fmt.Errorf("making a secret for %s: %w", name, err)
			}
			line = name + "=" + hex.EncodeToString(b[:]) + "\n"
		}
		out.WriteString(line)
	}
	return map[string][]byte{".env": []byte(out.String())}, nil
}
