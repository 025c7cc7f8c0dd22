// Package merge is a line-based three-way merge (diff3) of text files: the
// base both sides started from, "ours" (the user's file) and "theirs" (what
// the generator makes now). Where the two sides changed the base in
// different places both changes are taken; where they changed the same
// lines differently the result holds git-style conflict markers.
//
// It is small on purpose: a Myers diff of each side against the base, then
// the stable/unstable chunk walk of diff3 (Khanna, Kuber and Pierce, "A
// Formal Investigation of Diff3"). No module on the proxy did this without
// pulling in a VCS library.
package merge

import (
	"bytes"
	"strings"
)

// Labels name the sides in conflict markers.
type Labels struct {
	Ours   string // after <<<<<<<, e.g. "yours"
	Base   string // after |||||||, e.g. "base"; the base section is always shown
	Theirs string // after >>>>>>>, e.g. "scaffold 0.2.0"
}

// Merge merges the changes from base to ours and from base to theirs. It
// returns the merged bytes and the number of conflicting chunks, each of
// which is in the output between markers:
//
//	<<<<<<< ours
//	(our lines)
//	||||||| base
//	(the base lines)
//	=======
//	(their lines)
//	>>>>>>> theirs
//
// Lines keep their terminators, so a last line without a newline is a
// different line from the same text with one; a marker never follows such
// a line on the same line.
func Merge(base, ours, theirs []byte, l Labels) ([]byte, int) {
	b, o, t := split(base), split(ours), split(theirs)
	mo := match(b, o) // mo[i]: the line of ours that base line i is kept as, or -1
	mt := match(b, t)
	var out bytes.Buffer
	conflicts := 0
	i, x, y := 0, 0, 0 // cursors in base, ours, theirs
	for i < len(b) || x < len(o) || y < len(t) {
		if i < len(b) && mo[i] == x && mt[i] == y {
			// Stable: the line is in all three at the cursors.
			out.WriteString(b[i])
			i, x, y = i+1, x+1, y+1
			continue
		}
		// Unstable chunk: up to the next base line both sides kept.
		j := i
		for j < len(b) && (mo[j] < 0 || mt[j] < 0) {
			j++
		}
		ex, ey := len(o), len(t)
		if j < len(b) {
			ex, ey = mo[j], mt[j]
		}
		cb, co, ct := b[i:j], o[x:ex], t[y:ey]
		switch {
		case equal(co, cb):
			write(&out, ct)
		case equal(ct, cb), equal(co, ct):
			write(&out, co)
		default:
			conflicts++
			conflict(&out, cb, co, ct, l)
		}
		i, x, y = j, ex, ey
	}
	return out.Bytes(), conflicts
}

// conflict writes one conflicting chunk. Lines both sides agree on at its
// start and end are written outside the markers, so the markers hold only
// what really differs.
func conflict(out *bytes.Buffer, base, ours, theirs []string, l Labels) {
	pre := 0
	for pre < len(ours) && pre < len(theirs) && ours[pre] == theirs[pre] {
		pre++
	}
	suf := 0
	for suf < len(ours)-pre && suf < len(theirs)-pre && ours[len(ours)-1-suf] == theirs[len(theirs)-1-suf] {
		suf++
	}
	write(out, ours[:pre])
	marker(out, "<<<<<<< "+l.Ours)
	write(out, ours[pre:len(ours)-suf])
	marker(out, "||||||| "+l.Base)
	write(out, base)
	marker(out, "=======")
	write(out, theirs[pre:len(theirs)-suf])
	marker(out, ">>>>>>> "+l.Theirs)
	write(out, ours[len(ours)-suf:])
}

// marker writes a marker line, on a line of its own even when what came
// before it had no final newline.
func marker(out *bytes.Buffer, m string) {
	if out.Len() > 0 && out.Bytes()[out.Len()-1] != '\n' {
		out.WriteByte('\n')
	}
	out.WriteString(strings.TrimSpace(m) + "\n")
}

func write(out *bytes.Buffer, lines []string) {
	for _, s := range lines {
		out.WriteString(s)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// split cuts text into lines, each with its "\n" (the last may have none).
func split(text []byte) []string {
	lines := strings.SplitAfter(string(text), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
