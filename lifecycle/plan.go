// Package lifecycle changes a generated project that the user has worked
// on: it plans, file by file, how to go from what the generator made (the
// base) to what it makes now (theirs) without losing the user's edits
// (ours, the files on disk), and carries the plan out all at once or not at
// all. It does no generating itself; the caller passes the three trees.
package lifecycle

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/scaffoldhq/scaffold/merge"
)

// Action is what happens to one file.
type Action string

const (
	Add      Action = "add"      // the generator makes a new file
	Replace  Action = "replace"  // the user did not edit it: the generator's new content
	Merge    Action = "merge"    // both changed it, in different places: merged
	Conflict Action = "conflict" // both changed the same lines: merged with markers
	Delete   Action = "delete"   // the generator no longer makes it, and the user did not edit it
	Keep     Action = "keep"     // left as it is although the generator changed it; Note says why
)

// Change is the plan for one file.
type Change struct {
	Path           string // slash-separated, relative to the project
	Action         Action
	Content        []byte // the new content, for Add, Replace, Merge and Conflict
	Added, Deleted int    // lines, against the file on disk
	Conflicts      int    // conflicting chunks, for Conflict
	Note           string // for Keep: why
}

// Writes reports whether the change touches the disk.
func (c Change) Writes() bool { return c.Action != Keep }

// Plan compares, for every path the generator made or makes, the base
// (what it made for the recorded answers and version; nil when nothing is
// known of it), theirs (what it makes now) and ours (the file on disk,
// absent when there is none), and returns the changes in path order. Files
// that need nothing are left out. Paths for which owned is true belong to
// the generator outright (.scaffold.yaml): theirs replaces whatever is
// there.
//
//   - unchanged by the user: replaced, or deleted when no longer made;
//   - changed by the user only: kept as it is (no change listed);
//   - changed by both: merged line by line, conflicts marked inline;
//   - deleted by the user: stays deleted (a Keep when the generator changed it);
//   - edited and no longer made: kept, and listed as a Keep.
func Plan(base, theirs, ours map[string][]byte, labels merge.Labels, owned func(string) bool) []Change {
	var changes []Change
	for _, p := range union(base, theirs) {
		b, inB := base[p]
		t, inT := theirs[p]
		o, inO := ours[p]
		c := Change{Path: p}
		switch {
		case inT && !inO && !inB:
			c.Action, c.Content = Add, t
		case inT && !inO:
			// Deleted by the user. It stays deleted, as copier does not;
			// worth saying only when the generator changed it since.
			if bytes.Equal(b, t) {
				continue
			}
			c.Action, c.Note = Keep, "deleted by you; the generator changed it, not restored"
		case inT && bytes.Equal(o, t):
			continue
		case inT && (owned(p) || inB && bytes.Equal(o, b)):
			c.Action, c.Content = Replace, t
		case inT && inB && bytes.Equal(t, b):
			continue // the user's edit, which the generator has no reason to touch
		case inT:
			// Changed by both, or made by both when there is no base.
			merged, n := merge.Merge(b, o, t, labels)
			c.Action, c.Content, c.Conflicts = Merge, merged, n
			if n > 0 {
				c.Action = Conflict
			}
		case !inO:
			continue // no longer made, and gone already
		case bytes.Equal(o, b) || owned(p):
			c.Action = Delete
		default:
			c.Action, c.Note = Keep, "edited; the generator no longer makes it"
		}
		if c.Action != Keep {
			c.Added, c.Deleted = merge.Stat(o, c.Content)
		}
		changes = append(changes, c)
	}
	return changes
}

func union(a, b map[string][]byte) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// ReadFiles reads the files at paths (slash-separated) under dir; a path
// with no file is left out. Anything else in the way (a directory, a
// symlink, unreadable) is an error, before anything is planned.
func ReadFiles(dir string, paths []string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, p := range paths {
		target := filepath.Join(dir, filepath.FromSlash(p))
		fi, err := os.Lstat(target)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v (fix its permissions or move it away)", target, cause(err))
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is in the way: scaffold makes a file there (move it away)", target)
		}
		b, err := os.ReadFile(target)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %v (fix its permissions or move it away)", target, cause(err))
		}
		files[p] = b
	}
	return files, nil
}
