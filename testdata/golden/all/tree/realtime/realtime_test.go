package realtime

import (
	"testing"

	"example.com/acme/shop/notes"
)

func TestParseID(t *testing.T) {
	for _, s := range []string{"0-0", "1700000000000-0", "1700000000000-18446744073709551615"} {
		if _, err := ParseID(s); err != nil {
			t.Errorf("ParseID(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "12", "a-1", "1-", "-1", "1-2-3", "-1-0", "1 -0", "18446744073709551616-0"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}

// Ids compare as numbers, not as text: "9-0" comes before "10-0".
func TestLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"9-0", "10-0", true},
		{"10-0", "9-0", false},
		{"5-2", "5-10", true},
		{"5-1", "5-1", false},
		{"0-0", "1-0", true},
	} {
		if got := Less(c.a, c.b); got != c.want {
			t.Errorf("Less(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestChangeType(t *testing.T) {
	n := &notes.Note{ID: 1}
	for _, c := range []struct {
		change Change
		want   string
	}{
		{Change{NoteID: 1, Version: 1, Note: n}, Created},
		{Change{NoteID: 1, Version: 2, Note: n}, Updated},
		{Change{NoteID: 1, Version: 3}, Deleted},
	} {
		if got := c.change.Type(); got != c.want {
			t.Errorf("%+v: type %s, want %s", c.change, got, c.want)
		}
	}
}
