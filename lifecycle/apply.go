package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

var errNotDir = syscall.ENOTDIR

// ErrInterrupted is returned by Apply when ctx ended: every file is as it
// was.
var ErrInterrupted = errors.New("interrupted, nothing changed")

// step is one file of Apply under way.
type step struct {
	target string // absolute path
	tmp    string // the new content beside the target, "" for a delete
	backup string // a hard link to the old file beside it, "" when there was none
	done   bool   // the target has been renamed or removed
}

// Apply carries out changes in dir all at once or not at all. First, every
// new content is written into a temporary file beside its target and every
// file about to be replaced or deleted gets a hard link beside it (its
// backup); a full disk or any other failure there leaves dir as it was.
// Then the temporary files are renamed over their targets and deleted files
// removed, which needs no space; a failure there, or ctx ending meanwhile
// (Ctrl-C), puts the backups back. Only then are the backups removed. A
// kill -9 during the renames, which take milliseconds, can still leave a
// mix, with the backups (.NAME.scaffold-old-*) beside the files.
//
// mode gives the permission of a new file; a replaced file keeps its own.
func Apply(ctx context.Context, dir string, changes []Change, mode func(string) fs.FileMode) (err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("cannot find %s: %v", dir, err)
	}
	var steps []*step
	var madeDirs []string // directories made for new files, parents first
	defer func() {
		if err == nil {
			return
		}
		// Undo in reverse: put back what was renamed or removed, then
		// remove the temporary files, the backups and the new directories.
		for i := len(steps) - 1; i >= 0; i-- {
			s := steps[i]
			if s.done {
				if s.backup != "" {
					os.Rename(s.backup, s.target)
				} else {
					os.Remove(s.target)
				}
			}
			if s.tmp != "" {
				os.Remove(s.tmp)
			}
			if s.backup != "" {
				os.Remove(s.backup)
			}
		}
		for i := len(madeDirs) - 1; i >= 0; i-- {
			os.Remove(madeDirs[i]) // only when empty again
		}
	}()

	// Prepare: nothing visible changes.
	for _, c := range changes {
		if !c.Writes() {
			continue
		}
		target := filepath.Join(abs, filepath.FromSlash(c.Path))
		s := &step{target: target}
		steps = append(steps, s)
		old, statErr := os.Lstat(target)
		exists := statErr == nil
		if exists {
			s.backup, err = tempName(target, "old")
			if err == nil {
				os.Remove(s.backup)
				err = os.Link(target, s.backup)
			}
			if err != nil {
				s.backup = ""
				return fmt.Errorf("cannot keep a copy of %s while changing it: %v (check the disk and its permissions)", c.Path, cause(err))
			}
		}
		if c.Action == Delete {
			continue
		}
		made, err := mkdirs(filepath.Dir(target))
		madeDirs = append(madeDirs, made...)
		if err != nil {
			return fmt.Errorf("cannot make the directory of %s: %v (check the disk and its permissions)", c.Path, cause(err))
		}
		perm := mode(c.Path)
		if exists {
			perm = old.Mode().Perm()
		}
		if s.tmp, err = writeTemp(target, c.Content, perm); err != nil {
			return fmt.Errorf("cannot write %s: %v (check the disk and try again; nothing was changed)", c.Path, cause(err))
		}
	}
	if ctx.Err() != nil {
		return ErrInterrupted
	}

	// Commit: renames and removes only.
	for _, s := range steps {
		if s.tmp != "" {
			err = os.Rename(s.tmp, s.target)
			if err == nil {
				s.tmp = ""
			}
		} else {
			err = os.Remove(s.target)
		}
		if err != nil {
			return fmt.Errorf("cannot change %s: %v (fix its permissions; nothing was changed)", s.target, cause(err))
		}
		s.done = true
	}
	// A Ctrl-C during the renames undoes them too, so that an interrupted
	// command has changed nothing.
	if ctx.Err() != nil {
		return ErrInterrupted
	}

	for _, s := range steps {
		if s.backup != "" {
			os.Remove(s.backup)
		}
		if s.tmp == "" && s.backup != "" && !exists(s.target) {
			removeEmptyDirs(filepath.Dir(s.target), abs)
		}
	}
	return nil
}

// tempName returns an unused name beside target, hidden and recognisable.
func tempName(target, kind string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".scaffold-"+kind+"-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	f.Close()
	return name, nil
}

func writeTemp(target string, content []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".scaffold-new-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// mkdirs makes dir and its missing parents and returns those it made,
// parents first.
func mkdirs(dir string) ([]string, error) {
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			break
		}
		missing = append([]string{p}, missing...)
	}
	var made []string
	for _, p := range missing {
		if err := os.Mkdir(p, 0o755); err != nil {
			return made, err
		}
		made = append(made, p)
	}
	return made, nil
}

// removeEmptyDirs removes dir and its parents up to (not including) root
// while they are empty: a removed feature leaves no empty directories.
func removeEmptyDirs(dir, root string) {
	for dir != root && strings.HasPrefix(dir, root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

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
