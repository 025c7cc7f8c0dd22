package generator

import (
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
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

// k8sSecrets writes the dev overlay's secrets.env: its example with each
// change-me-* placeholder replaced by one random value, the same wherever the
// placeholder is (DATABASE_URL holds POSTGRES_PASSWORD, say).
func k8sSecrets(a Answers, random io.Reader) (map[string][]byte, error) {
	data := newData(a, Lock{})
	if len(data.SecretEnv) == 0 {
		return nil, nil
	}
	const example = "deploy/k8s/overlays/dev/secrets.env.example"
	content, err := render(example+".tmpl", example, data, nil)
	if err != nil {
		return nil, err
	}
	values := map[string]string{}
	out := placeholder.ReplaceAllStringFunc(string(content), func(p string) string {
		if v, ok := values[p]; ok {
			return v
		}
		var b [16]byte
		if _, err = io.ReadFull(random, b[:]); err != nil {
			return p
		}
		values[p] = hex.EncodeToString(b[:])
		return values[p]
	})
	if err != nil {
		return nil, fmt.Errorf("making a secret for %s: %w", example, err)
	}
	return map[string][]byte{strings.TrimSuffix(example, ".example"): []byte(out)}, nil
}

var placeholder = regexp.MustCompile(`change-me-[a-z-]+`)
