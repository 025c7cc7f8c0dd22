// Package writer puts a generated project on disk without ever leaving half
// of one behind: files are written into a temporary directory beside the
// target and renamed into place.
package writer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Error is a problem with the target directory, as one line: what is wrong,
// then the fix in parentheses.
type Error struct{ What, Fix string }

func (e *Error) Error() string { return e.What + " (" + e.Fix + ")" }

// Plan is what Write would do in dir.
type Plan struct {
	Dir      string   // the target, as the user named it
	Exists   bool     // dir exists already (and is a directory)
	Replaced []string // generated paths that exist in dir and will be replaced
	Kept     []string // secret paths that exist and are kept as they are
}

// Check looks at dir and reports what writing files into it would do. dir
// must be new or empty unless force is set; with force, only paths in files
// are touched, and each must not be a directory in dir. Secrets (files with
// random content) that exist already are kept rather than replaced, so
// --force never rotates a project's passwords.
func Check(dir string, files, secrets map[string][]byte, force bool) (Plan, error) {
	plan := Plan{Dir: dir}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return plan, checkParent(dir)
	case err != nil:
		return plan, &Error{What: fmt.Sprintf("cannot use %s: %v", dir, cause(err)), Fix: "choose another DIR"}
	case !fi.IsDir():
		return plan, &Error{What: fmt.Sprintf("%s exists and is not a directory", dir), Fix: "choose another DIR"}
	}
	plan.Exists = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		return plan, &Error{What: fmt.Sprintf("cannot read %s: %v", dir, cause(err)), Fix: "choose another DIR"}
	}
	// A directory holding only .git (a repository just made, or cloned
	// empty) is empty for scaffold: the project becomes its first files.
	entries = slices.DeleteFunc(entries, func(e fs.DirEntry) bool { return e.Name() == ".git" })
	if len(entries) == 0 {
		return plan, nil
	}
	if !force {
		return plan, &Error{What: fmt.Sprintf("%s is not empty", dir),
			Fix: "choose a new or empty DIR, or pass --force to replace only the files scaffold generates"}
	}
	for _, p := range sortedKeys(files, secrets) {
		target := filepath.Join(dir, filepath.FromSlash(p))
		// Each existing parent must be a directory, and the target a file.
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(d))); err == nil && !fi.IsDir() {
				return plan, &Error{What: fmt.Sprintf("%s is in the way of %s: it is a file, scaffold needs a directory there", filepath.Join(dir, d), p), Fix: "move it away"}
			}
		}
		fi, err := os.Lstat(target)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return plan, &Error{What: fmt.Sprintf("cannot use %s: %v", target, cause(err)), Fix: "fix its permissions or move it away"}
		}
		if !fi.Mode().IsRegular() {
			return plan, &Error{What: fmt.Sprintf("%s is in the way: scaffold writes a file there", target), Fix: "move it away"}
		}
		if _, secret := secrets[p]; secret {
			plan.Kept = append(plan.Kept, p)
		} else {
			plan.Replaced = append(plan.Replaced, p)
		}
	}
	return plan, nil
}

// checkParent makes sure dir can be created: its nearest existing ancestor
// must be a directory.
func checkParent(dir string) error {
	for p := filepath.Dir(filepath.Clean(dir)); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return &Error{What: fmt.Sprintf("cannot create %s: %s is not a directory", dir, p), Fix: "choose a DIR inside a writable directory"}
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return &Error{What: fmt.Sprintf("cannot create %s: %v", dir, cause(err)), Fix: "choose a DIR inside a writable directory"}
		}
		if next := filepath.Dir(p); next == p {
			return nil
		}
	}
}

// Write writes files and secrets into dir as planned by Check (which it
// calls again), and returns the plan it carried out. On any error nothing is
// left behind: not the temporary directory, not parent directories it made.
//
// For a new dir the whole tree is renamed into place at once; for an empty
// one, each top-level entry is (and taken back on failure). With
// --force into a non-empty dir the files are renamed one by one over their
// targets; those renames are each atomic, but a failure half way (a full
// disk, say) can leave some files replaced and others not.
func Write(ctx context.Context, dir string, files, secrets map[string][]byte, force bool, mode func(string) fs.FileMode) (plan Plan, err error) {
	plan, err = Check(dir, files, secrets, force)
	if err != nil {
		return plan, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return plan, &Error{What: fmt.Sprintf("cannot find %s: %v", dir, err), Fix: "choose another DIR"}
	}
	parent := filepath.Dir(abs)
	created, err := mkdirAll(parent)
	if err != nil {
		return plan, &Error{What: fmt.Sprintf("cannot create %s: %v", parent, cause(err)), Fix: "choose a DIR inside a writable directory"}
	}
	defer func() {
		if err != nil && created != "" {
			os.RemoveAll(created)
		}
	}()
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(abs)+".scaffold-*")
	if err != nil {
		return plan, &Error{What: fmt.Sprintf("cannot write in %s: %v", parent, cause(err)), Fix: "choose a DIR inside a writable directory"}
	}
	defer os.RemoveAll(tmp) // gone after a rename; cleans up after a failure
	if err := os.Chmod(tmp, 0o755); err != nil {
		return plan, err
	}
	all := map[string][]byte{}
	for p, b := range files {
		all[p] = b
	}
	for p, b := range secrets {
		if !slices.Contains(plan.Kept, p) {
			all[p] = b
		}
	}
	for _, p := range sortedKeys(all, nil) {
		target := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return plan, &Error{What: fmt.Sprintf("cannot write %s: %v", p, cause(err)), Fix: "check the disk and try again"}
		}
		if err := os.WriteFile(target, all[p], mode(p)); err != nil {
			return plan, &Error{What: fmt.Sprintf("cannot write %s: %v", p, cause(err)), Fix: "check the disk and try again"}
		}
	}
	// Last chance to stop (Ctrl-C, say) before anything shows in dir.
	if err := ctx.Err(); err != nil {
		return plan, &Error{What: "interrupted, nothing written", Fix: "run scaffold new again"}
	}
	if !plan.Exists {
		if err := os.Rename(tmp, abs); err != nil {
			return plan, &Error{What: fmt.Sprintf("cannot create %s: %v", dir, cause(err)), Fix: "choose a DIR inside a writable directory"}
		}
		return plan, nil
	}
	if isEmpty(abs) {
		// Move the top-level entries in rather than replacing dir itself,
		// so that dir keeps its identity (it may be the shell's working
		// directory). dir was empty, so undoing is removing what was moved.
		entries, err := os.ReadDir(tmp)
		if err != nil {
			return plan, err
		}
		for i, e := range entries {
			if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(abs, e.Name())); err != nil {
				for _, moved := range entries[:i] {
					os.RemoveAll(filepath.Join(abs, moved.Name()))
				}
				return plan, &Error{What: fmt.Sprintf("cannot write into %s: %v", dir, cause(err)), Fix: "check its permissions"}
			}
		}
		return plan, nil
	}
	for _, p := range sortedKeys(all, nil) {
		target := filepath.Join(abs, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return plan, &Error{What: fmt.Sprintf("cannot create the directory of %s: %v", target, cause(err)), Fix: "fix its permissions"}
		}
		if err := os.Rename(filepath.Join(tmp, filepath.FromSlash(p)), target); err != nil {
			return plan, &Error{What: fmt.Sprintf("cannot replace %s: %v", target, cause(err)), Fix: "fix its permissions; files before it in the list are replaced already"}
		}
	}
	return plan, nil
}

// mkdirAll makes dir and its missing parents and returns the topmost
// directory it created ("" if none), so a failure can remove them again.
func mkdirAll(dir string) (string, error) {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if len(missing) == 0 {
		return "", nil
	}
	top := missing[len(missing)-1]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		os.RemoveAll(top)
		return "", err
	}
	return top, nil
}

func isEmpty(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && !slices.ContainsFunc(entries, func(e fs.DirEntry) bool { return e.Name() != ".git" })
}

// IsEmpty reports whether dir is missing, or a directory with nothing in it
// but perhaps .git.
func IsEmpty(dir string) bool {
	_, err := os.Stat(dir)
	return err != nil || isEmpty(dir)
}

func sortedKeys(a, b map[string][]byte) []string {
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

// cause drops the operation and path that os errors repeat ("open x: "), as
// messages here name the path themselves.
func cause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return strings.TrimSpace(err.Error())
}
