package merge

import (
	"math/rand"
	"strings"
	"testing"
)

var labels = Labels{Ours: "yours", Base: "base", Theirs: "scaffold 0.2.0"}

// lines joins its arguments as lines, each ending in "\n".
func lines(s ...string) string {
	if len(s) == 0 {
		return ""
	}
	return strings.Join(s, "\n") + "\n"
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name               string
		base, ours, theirs string
		want               string
		conflicts          int
	}{
		{"nothing changed", lines("a", "b"), lines("a", "b"), lines("a", "b"), lines("a", "b"), 0},
		{"only ours", lines("a", "b", "c"), lines("a", "B", "c"), lines("a", "b", "c"), lines("a", "B", "c"), 0},
		{"only theirs", lines("a", "b", "c"), lines("a", "b", "c"), lines("a", "b", "C"), lines("a", "b", "C"), 0},
		{"apart", lines("a", "b", "c", "d", "e"), lines("A", "b", "c", "d", "e"), lines("a", "b", "c", "d", "E"), lines("A", "b", "c", "d", "E"), 0},
		// As in git and GNU diff3, changes to adjacent lines conflict: no
		// line both sides kept separates them.
		{"adjacent lines", lines("a", "b", "c"), lines("A", "b", "c"), lines("a", "B", "c"),
			lines("<<<<<<< yours", "A", "b", "||||||| base", "a", "b", "=======", "a", "B", ">>>>>>> scaffold 0.2.0", "c"), 1},
		{"same change both sides", lines("a", "b", "c"), lines("a", "X", "c"), lines("a", "X", "c"), lines("a", "X", "c"), 0},
		{"same deletion both sides", lines("a", "b", "c"), lines("a", "c"), lines("a", "c"), lines("a", "c"), 0},
		{"ours inserts, theirs deletes elsewhere", lines("a", "b", "c", "d"), lines("a", "new", "b", "c", "d"), lines("a", "b", "c"), lines("a", "new", "b", "c"), 0},
		{"overlapping edit", lines("a", "b", "c"), lines("a", "mine", "c"), lines("a", "theirs", "c"),
			lines("a", "<<<<<<< yours", "mine", "||||||| base", "b", "=======", "theirs", ">>>>>>> scaffold 0.2.0", "c"), 1},
		{"insertions at the same place", lines("a", "c"), lines("a", "mine", "c"), lines("a", "theirs", "c"),
			lines("a", "<<<<<<< yours", "mine", "||||||| base", "=======", "theirs", ">>>>>>> scaffold 0.2.0", "c"), 1},
		{"same insertion both sides", lines("a", "c"), lines("a", "b", "c"), lines("a", "b", "c"), lines("a", "b", "c"), 0},
		{"edit against deletion", lines("a", "b", "c"), lines("a", "B", "c"), lines("a", "c"),
			lines("a", "<<<<<<< yours", "B", "||||||| base", "b", "=======", ">>>>>>> scaffold 0.2.0", "c"), 1},
		{"common lines kept out of the markers", lines("a", "b", "c"), lines("a", "x", "mine", "y", "c"), lines("a", "x", "theirs", "y", "c"),
			lines("a", "x", "<<<<<<< yours", "mine", "||||||| base", "b", "=======", "theirs", ">>>>>>> scaffold 0.2.0", "y", "c"), 1},
		{"two conflicts", lines("a", "b", "c", "d", "e"), lines("1", "b", "c", "d", "5"), lines("one", "b", "c", "d", "five"),
			lines("<<<<<<< yours", "1", "||||||| base", "a", "=======", "one", ">>>>>>> scaffold 0.2.0", "b", "c", "d",
				"<<<<<<< yours", "5", "||||||| base", "e", "=======", "five", ">>>>>>> scaffold 0.2.0"), 2},
		{"no trailing newline, changed by theirs only", "a\nb", "a\nb", "a\nB", "a\nB", 0},
		{"ours adds the trailing newline, theirs edits the top", "a\nb\nc", "a\nb\nc\n", "A\nb\nc", "A\nb\nc\n", 0},
		{"no trailing newline in a conflict", "a\nb", "a\nmine", "a\ntheirs",
			lines("a", "<<<<<<< yours", "mine", "||||||| base", "b", "=======", "theirs", ">>>>>>> scaffold 0.2.0"), 1},
		{"empty base, both add the same", "", lines("x"), lines("x"), lines("x"), 0},
		{"empty base, both add different", "", lines("x"), lines("y"),
			lines("<<<<<<< yours", "x", "||||||| base", "=======", "y", ">>>>>>> scaffold 0.2.0"), 1},
		{"ours empties the file, theirs unchanged", lines("a", "b"), "", lines("a", "b"), "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := Merge([]byte(tt.base), []byte(tt.ours), []byte(tt.theirs), labels)
			if string(got) != tt.want || n != tt.conflicts {
				t.Errorf("Merge = %d conflicts\n%s\nwant %d conflicts\n%s", n, got, tt.conflicts, tt.want)
			}
		})
	}
}

// TestMergeOneSide checks, on random edits, that a change on one side only
// comes through exactly, whichever side it is on.
func TestMergeOneSide(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		base := randomText(r, 40)
		edited := edit(r, base)
		if got, n := Merge([]byte(base), []byte(edited), []byte(base), labels); string(got) != edited || n != 0 {
			t.Fatalf("ours only: got %d conflicts\n%q\nwant\n%q", n, got, edited)
		}
		if got, n := Merge([]byte(base), []byte(base), []byte(edited), labels); string(got) != edited || n != 0 {
			t.Fatalf("theirs only: got %d conflicts\n%q\nwant\n%q", n, got, edited)
		}
		if got, n := Merge([]byte(base), []byte(edited), []byte(edited), labels); string(got) != edited || n != 0 {
			t.Fatalf("both the same: got %d conflicts\n%q\nwant\n%q", n, got, edited)
		}
	}
}

func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(string(rune('a'+r.Intn(6))) + "\n")
	}
	return b.String()
}

func edit(r *rand.Rand, text string) string {
	ls := split([]byte(text))
	for k := r.Intn(5); k >= 0; k-- {
		i := r.Intn(len(ls) + 1)
		switch r.Intn(3) {
		case 0:
			ls = append(ls[:i], append([]string{"new\n"}, ls[i:]...)...)
		case 1:
			if i < len(ls) {
				ls = append(ls[:i], ls[i+1:]...)
			}
		default:
			if i < len(ls) {
				ls[i] = "changed\n"
			}
		}
	}
	return strings.Join(ls, "")
}

func TestStat(t *testing.T) {
	for _, tt := range []struct {
		a, b           string
		added, deleted int
	}{
		{lines("a", "b", "c"), lines("a", "b", "c"), 0, 0},
		{lines("a", "b", "c"), lines("a", "x", "c", "d"), 2, 1},
		{"", lines("a", "b"), 2, 0},
		{lines("a", "b"), "", 0, 2},
		{"a", "a\n", 1, 1},
	} {
		added, deleted := Stat([]byte(tt.a), []byte(tt.b))
		if added != tt.added || deleted != tt.deleted {
			t.Errorf("Stat(%q, %q) = +%d -%d, want +%d -%d", tt.a, tt.b, added, deleted, tt.added, tt.deleted)
		}
	}
}

// TestMyersMinimal checks the diff is a shortest one on a known case.
func TestMyersMinimal(t *testing.T) {
	a := split([]byte(lines("a", "b", "c", "a", "b", "b", "a")))
	b := split([]byte(lines("c", "b", "a", "b", "a", "c")))
	kept := 0
	for _, j := range match(a, b) {
		if j >= 0 {
			kept++
		}
	}
	if kept != 4 { // the LCS of ABCABBA and CBABAC has 4 lines
		t.Errorf("kept %d lines, want 4", kept)
	}
}
