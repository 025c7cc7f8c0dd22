package lifecycle

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/scaffoldhq/scaffold/merge"
)

var labels = merge.Labels{Ours: "yours", Base: "base", Theirs: "scaffold 0.2.0"}

func noneOwned(string) bool { return false }

func TestPlan(t *testing.T) {
	base := map[string][]byte{
		"same":           []byte("a\n"),
		"untouched":      []byte("a\n"),
		"edited":         []byte("a\nb\nc\nd\ne\n"),
		"conflict":       []byte("a\nb\nc\n"),
		"userdeleted":    []byte("a\n"),
		"deletedsame":    []byte("a\n"),
		"gone":           []byte("a\n"),
		"goneedited":     []byte("a\n"),
		"onlymine":       []byte("a\n"),
		"bothsame":       []byte("a\n"),
		".scaffold.yaml": []byte("version: 1\n"),
	}
	theirs := map[string][]byte{
		"same":           []byte("a\n"),
		"untouched":      []byte("A\n"),
		"edited":         []byte("a\nb\nc\nd\nE\n"),
		"conflict":       []byte("a\ntheirs\nc\n"),
		"userdeleted":    []byte("A\n"),
		"deletedsame":    []byte("a\n"),
		"new":            []byte("n\n"),
		"newtoo":         []byte("n\n"),
		"onlymine":       []byte("a\n"),
		"bothsame":       []byte("b\n"),
		".scaffold.yaml": []byte("version: 2\n"),
	}
	ours := map[string][]byte{
		"same":           []byte("a\n"),
		"untouched":      []byte("a\n"),
		"edited":         []byte("A\nb\nc\nd\ne\n"),
		"conflict":       []byte("a\nmine\nc\n"),
		"gone":           []byte("a\n"),
		"goneedited":     []byte("mine\n"),
		"newtoo":         []byte("mine\n"),
		"onlymine":       []byte("mine\n"),
		"bothsame":       []byte("b\n"),
		".scaffold.yaml": []byte("version: 1 # edited\n"),
	}
	got := Plan(base, theirs, ours, labels, func(p string) bool { return p == ".scaffold.yaml" })
	var lines []string
	for _, c := range got {
		lines = append(lines, fmt.Sprintf("%s %s +%d -%d %d %q %q", c.Action, c.Path, c.Added, c.Deleted, c.Conflicts, c.Content, c.Note))
	}
	want := []string{
		`replace .scaffold.yaml +1 -1 0 "version: 2\n" ""`,
		`conflict conflict +6 -0 1 "a\n<<<<<<< yours\nmine\n||||||| base\nb\n=======\ntheirs\n>>>>>>> scaffold 0.2.0\nc\n" ""`,
		`merge edited +1 -1 0 "A\nb\nc\nd\nE\n" ""`,
		`delete gone +0 -1 0 "" ""`,
		`keep goneedited +0 -0 0 "" "edited; the generator no longer makes it"`,
		`add new +1 -0 0 "n\n" ""`,
		`conflict newtoo +5 -0 1 "<<<<<<< yours\nmine\n||||||| base\n=======\nn\n>>>>>>> scaffold 0.2.0\n" ""`,
		`replace untouched +1 -1 0 "A\n" ""`,
		`keep userdeleted +0 -0 0 "" "deleted by you; the generator changed it, not restored"`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("Plan:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, s := range files {
		target := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel != "." {
				files[filepath.ToSlash(rel)+"/"] = ""
			}
			return nil
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func mode(string) fs.FileMode { return 0o644 }

var changes = []Change{
	{Path: "a.txt", Action: Replace, Content: []byte("new a\n")},
	{Path: "sub/deep/b.txt", Action: Add, Content: []byte("b\n")},
	{Path: "old/c.txt", Action: Delete},
	{Path: "kept.txt", Action: Keep},
}

func TestApply(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.txt": "a\n", "old/c.txt": "c\n", "kept.txt": "k\n", "mine.txt": "m\n"})
	if err := os.Chmod(filepath.Join(dir, "a.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Apply(context.Background(), dir, changes, mode); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dir)
	want := map[string]string{"a.txt": "new a\n", "sub/": "", "sub/deep/": "", "sub/deep/b.txt": "b\n", "kept.txt": "k\n", "mine.txt": "m\n"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after Apply:\n%v\nwant\n%v", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, "a.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("a.txt lost its mode: %v %v", fi.Mode(), err)
	}
}

// TestApplyFails checks that a failure half way, and an interruption, leave
// every file as it was, with no temporary file or new directory behind.
func TestApplyFails(t *testing.T) {
	before := map[string]string{"a.txt": "a\n", "old/c.txt": "c\n", "kept.txt": "k\n", "blocker": "a file where a directory must be\n"}
	t.Run("failure", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, before)
		bad := append(slices.Clone(changes), Change{Path: "blocker/x.txt", Action: Add, Content: []byte("x\n")})
		if err := Apply(context.Background(), dir, bad, mode); err == nil {
			t.Fatal("Apply succeeded with a file in the way")
		}
		if got := readTree(t, dir); fmt.Sprint(got) != fmt.Sprint(withDirs(before)) {
			t.Errorf("after a failed Apply:\n%v\nwant\n%v", got, withDirs(before))
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, before)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := Apply(ctx, dir, changes, mode); err != ErrInterrupted {
			t.Fatalf("Apply = %v, want ErrInterrupted", err)
		}
		if got := readTree(t, dir); fmt.Sprint(got) != fmt.Sprint(withDirs(before)) {
			t.Errorf("after an interrupted Apply:\n%v\nwant\n%v", got, withDirs(before))
		}
	})
}

func withDirs(files map[string]string) map[string]string {
	out := map[string]string{}
	for p, s := range files {
		out[p] = s
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			out[d+"/"] = ""
		}
	}
	return out
}
