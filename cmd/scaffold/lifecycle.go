package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/scaffoldhq/scaffold/generator"
	"github.com/scaffoldhq/scaffold/lifecycle"
	"github.com/scaffoldhq/scaffold/merge"
)

// The commands that change an existing project: add, remove and update all
// come down to evolve, a three-way merge of what the generator made for the
// recorded answers and version (base), what it makes now for the new
// answers (theirs) and the files on disk (ours).

// modulePath is where `go run` finds an older scaffold to make the base of
// a project it generated.
const modulePath = "github.com/scaffoldhq/scaffold/cmd/scaffold"

func lifecycleFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dir", Aliases: []string{"C"}, Usage: "the project's `DIR` (default: the current directory)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the plan per file, and write nothing", DisableDefaultText: true},
		&cli.BoolFlag{Name: "allow-dirty", Usage: "go on although git has uncommitted changes to files the command would change", DisableDefaultText: true},
		&cli.StringSliceFlag{Name: "restore", Usage: "bring back `PATH`, a generated file you deleted (repeat for more)"},
		baseFromFlag(),
	}
}

func baseFromFlag() cli.Flag {
	return &cli.StringFlag{Name: "base-from", Usage: "for a project made by another scaffold version: that version's scaffold `BINARY`, or a DIR holding its pristine output for the project's answers (default: go run " + modulePath + "@VERSION)"}
}

func answerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "new project `NAME`"},
		&cli.StringFlag{Name: "module", Usage: "new Go module `PATH`"},
		&cli.StringFlag{Name: "features", Usage: "the new comma `LIST` of features, or all, or none"},
		&cli.StringFlag{Name: "lb", Usage: "new load balancer: `haproxy|nginx`"},
		&cli.StringFlag{Name: "replicas", Usage: fmt.Sprintf("new number of app instances, `N` in %d..%d", generator.MinReplicas, generator.MaxReplicas)},
		&cli.StringFlag{Name: "port", Usage: "new HTTP `PORT` of the app"},
	}
}

const lifecycleHelp = `Files are merged three ways: what scaffold made for the recorded answers and
version (.scaffold.yaml), what it makes now, and the files on disk. A file
you did not edit is replaced or deleted; a file you edited and scaffold did
not change is kept; a file both changed is merged line by line, and lines
both changed get <<<<<<< markers (listed at the end, exit 1); a file you
deleted stays deleted; a file scaffold no longer makes is deleted if you did
not edit it, else kept and listed. .env is never touched. In a git work tree,
uncommitted changes to the files it would change make it refuse, unless
--allow-dirty. Nothing is written when it fails or is interrupted.`

func lifecycleCommands(stdout, stderr io.Writer) []*cli.Command {
	return []*cli.Command{
		{
			Name:         "add",
			Usage:        "turn features on in a project",
			ArgsUsage:    "FEATURE...",
			Description:  "Adds features to the project in DIR (see scaffold features).\n\n" + lifecycleHelp + "\n\nExample:\n   scaffold add db cache",
			OnUsageError: usageError,
			Flags:        lifecycleFlags(),
			Action: func(c *cli.Context) error {
				return changeFeatures(c, true, stdout, stderr)
			},
		},
		{
			Name:         "remove",
			Usage:        "turn features off in a project, deleting their files you did not edit",
			ArgsUsage:    "FEATURE...",
			Description:  "Removes features from the project in DIR.\n\n" + lifecycleHelp + "\n\nExample:\n   scaffold remove blob",
			OnUsageError: usageError,
			Flags:        lifecycleFlags(),
			Action: func(c *cli.Context) error {
				return changeFeatures(c, false, stdout, stderr)
			},
		},
		{
			Name:         "update",
			Usage:        "take this scaffold version's output, and changed answers, into a project",
			Description:  "Updates the project in DIR to this scaffold version and to the answers given\nas flags (the others stay as .scaffold.yaml records them).\n\n" + lifecycleHelp + "\n\nExamples:\n   scaffold update                 take this version's templates\n   scaffold update --replicas 5    and 5 instances behind the load balancer",
			OnUsageError: usageError,
			Flags:        append(lifecycleFlags(), answerFlags()...),
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("update takes no arguments, got %s (usage: scaffold update [-C DIR] [flags])", strings.Join(c.Args().Slice(), " "))
				}
				p, err := openProject(c.String("dir"))
				if err != nil {
					return err
				}
				next, err := overrideAnswers(c, p.recorded.Answers)
				if err != nil {
					return err
				}
				return evolve(c.Context, p, next, options(c), stdout, stderr)
			},
		},
		{
			Name:         "check",
			Usage:        "exit 0 when a project is what this scaffold makes for its answers, 1 when an update is available (for CI)",
			Description:  "Checks the project in DIR: it is up to date when scaffold update would change\nnothing but files you edited. Exit 0 when it is, 1 (with the plan, given\n--base-from for another version) when an update is available.",
			OnUsageError: usageError,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "dir", Aliases: []string{"C"}, Usage: "the project's `DIR` (default: the current directory)"},
				baseFromFlag(),
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("check takes no arguments, got %s (usage: scaffold check [-C DIR])", strings.Join(c.Args().Slice(), " "))
				}
				return check(c, stdout)
			},
		},
	}
}

type opts struct {
	dryRun, allowDirty bool
	baseFrom           string
	restore            []string
	verb               string // for messages: "add", "update"...
}

func options(c *cli.Context) opts {
	return opts{dryRun: c.Bool("dry-run"), allowDirty: c.Bool("allow-dirty"), baseFrom: c.String("base-from"), restore: c.StringSlice("restore"), verb: c.Command.Name}
}

// project is a generated project on disk.
type project struct {
	dir      string
	raw      []byte // its .scaffold.yaml
	recorded generator.FileAnswers
}

func openProject(dir string) (project, error) {
	if dir == "" {
		dir = "."
	}
	p := project{dir: dir}
	file := filepath.Join(dir, generator.AnswersFileName)
	raw, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("%s is not a scaffold project: it has no %s (run it inside a project, or pass -C DIR)", dir, generator.AnswersFileName)
	}
	if err != nil {
		return p, fmt.Errorf("cannot read %s: %v (check its permissions)", file, cause(err))
	}
	fa, err := generator.ParseFile(file, raw)
	if err != nil {
		return p, err
	}
	var missing []string
	for _, k := range []string{"name", "module", "features", "lb", "replicas", "port", "generator_version"} {
		if !fa.Set[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("%s lacks %s (scaffold writes every key; restore it from git)", file, strings.Join(missing, ", "))
	}
	if err := fa.Answers.Validate(); err != nil {
		return p, fmt.Errorf("%s: %v", file, err)
	}
	p.raw, p.recorded = raw, fa
	return p, nil
}

func changeFeatures(c *cli.Context, on bool, stdout, stderr io.Writer) error {
	verb := c.Command.Name
	if c.NArg() == 0 {
		return fmt.Errorf("%s needs at least one FEATURE (usage: scaffold %s [flags] FEATURE...; see scaffold features)", verb, verb)
	}
	names, err := generator.ParseFeatures(strings.Join(c.Args().Slice(), ","))
	if err != nil {
		return err
	}
	p, err := openProject(c.String("dir"))
	if err != nil {
		return err
	}
	next := p.recorded.Answers
	next.Features = slices.Clone(next.Features)
	if on {
		for _, f := range names {
			if !next.Has(f) {
				next.Features = append(next.Features, f)
			}
		}
		var added []generator.Added
		next.Features, added = generator.Resolve(next.Features)
		for _, ad := range added {
			fmt.Fprintf(stderr, "scaffold: %s needs %s, so %s is on too\n", ad.NeededBy, ad.Feature, ad.Feature)
		}
	} else {
		next.Features = slices.DeleteFunc(next.Features, func(f string) bool { return slices.Contains(names, f) })
		// A feature still on that needs a removed one: say which to remove too.
		if resolved, added := generator.Resolve(next.Features); len(added) > 0 {
			_ = resolved
			return fmt.Errorf("cannot remove %s: %s needs it (remove %s too)", added[0].Feature, added[0].NeededBy, added[0].NeededBy)
		}
	}
	return evolve(c.Context, p, next, options(c), stdout, stderr)
}

// overrideAnswers applies the answer flags given to update to a, with the
// checks of new.
func overrideAnswers(c *cli.Context, a generator.Answers) (generator.Answers, error) {
	a.Features = slices.Clone(a.Features)
	if c.IsSet("name") {
		a.Name = c.String("name")
		if err := generator.CheckName(a.Name); err != nil {
			return a, err
		}
	}
	if c.IsSet("module") {
		a.Module = c.String("module")
		if err := generator.CheckModule(a.Module); err != nil {
			return a, err
		}
	}
	if c.IsSet("features") {
		f, err := generator.ParseFeatures(c.String("features"))
		if err != nil {
			return a, err
		}
		a.Features, _ = generator.Resolve(f)
	}
	if c.IsSet("lb") {
		a.LB = c.String("lb")
		if err := generator.CheckLB(a.LB); err != nil {
			return a, err
		}
	}
	for _, n := range []struct {
		key   string
		to    *int
		check func(int) error
	}{{"replicas", &a.Replicas, generator.CheckReplicas}, {"port", &a.Port, generator.CheckPort}} {
		if !c.IsSet(n.key) {
			continue
		}
		v := c.String(n.key)
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return a, fmt.Errorf("--%s %q is not a whole number (%s)", n.key, v, numberFix[n.key])
		}
		if err := n.check(i); err != nil {
			return a, err
		}
		*n.to = i
	}
	return a, a.Validate()
}

// plan computes the changes that take the project p to what this scaffold
// makes for the answers next. Secrets (.env) are never part of it, except
// that one the new answers need and the project lacks is added.
func plan(ctx context.Context, p project, next generator.Answers, baseFrom string, restore []string) ([]lifecycle.Change, error) {
	base, err := baseFiles(ctx, p, baseFrom)
	if err != nil {
		return nil, err
	}
	theirs, err := generator.Generate(next)
	if err != nil {
		return nil, err
	}
	oldSecrets, err := generator.Secrets(p.recorded.Answers, rand.Reader)
	if err != nil {
		return nil, err
	}
	newSecrets, err := generator.Secrets(next, rand.Reader)
	if err != nil {
		return nil, err
	}
	for s := range oldSecrets {
		delete(base, s)
		delete(theirs, s)
	}
	for s := range newSecrets {
		delete(base, s)
		delete(theirs, s)
	}
	var paths []string
	for q := range base {
		paths = append(paths, q)
	}
	for q := range theirs {
		paths = append(paths, q)
	}
	for q := range newSecrets {
		paths = append(paths, q)
	}
	ours, err := lifecycle.ReadFiles(p.dir, paths)
	if err != nil {
		return nil, err
	}
	labels := merge.Labels{Ours: "yours", Base: "base (scaffold " + p.recorded.GeneratorVersion + ")", Theirs: "scaffold " + generator.Version}
	changes := lifecycle.Plan(base, theirs, ours, labels, func(q string) bool { return q == generator.AnswersFileName })
	// A file the user deleted stays deleted, unless they ask for it back.
	for _, r := range restore {
		q := filepath.ToSlash(filepath.Clean(r))
		t, ok := theirs[q]
		switch _, exists := ours[q]; {
		case !ok:
			return nil, fmt.Errorf("--restore %s: scaffold does not make that file for these answers (scaffold new --dry-run lists what it makes)", r)
		case exists:
			return nil, fmt.Errorf("--restore %s: the file is there (--restore brings back a generated file you deleted)", r)
		}
		changes = slices.DeleteFunc(changes, func(c lifecycle.Change) bool { return c.Path == q })
		added, _ := merge.Stat(nil, t)
		changes = append(changes, lifecycle.Change{Path: q, Action: lifecycle.Add, Content: t, Added: added})
	}
	slices.SortFunc(changes, func(a, b lifecycle.Change) int { return strings.Compare(a.Path, b.Path) })
	for _, s := range slices.Sorted(maps.Keys(newSecrets)) {
		if _, ok := ours[s]; !ok {
			added, _ := merge.Stat(nil, newSecrets[s])
			changes = append(changes, lifecycle.Change{Path: s, Action: lifecycle.Add, Content: newSecrets[s], Added: added})
		}
	}
	return changes, nil
}

// evolve plans and applies the change of project p to the answers next.
func evolve(ctx context.Context, p project, next generator.Answers, o opts, stdout, stderr io.Writer) error {
	changes, err := plan(ctx, p, next, o.baseFrom, o.restore)
	if err != nil {
		return err
	}
	err = carryOut(ctx, p.dir, changes, o, stdout)
	var ce *conflictError
	if !o.dryRun && (err == nil || errors.As(err, &ce)) {
		// .env is never touched: say when its example gained or lost keys.
		for _, c := range changes {
			if c.Path == ".env.example" && c.Writes() {
				if _, statErr := os.Stat(filepath.Join(p.dir, ".env")); statErr == nil {
					fmt.Fprintf(stderr, "scaffold: note: .env.example changed and .env is never touched: copy the new keys into .env, with your own values (see git diff .env.example)\n")
				}
			}
		}
	}
	return err
}

// carryOut prints the plan, refuses a dirty git tree, applies the changes
// (unless a dry run) and reports conflicts as the error.
func carryOut(ctx context.Context, dir string, changes []lifecycle.Change, o opts, stdout io.Writer) error {
	if !o.allowDirty {
		if err := dirtyCheck(ctx, dir, changes); err != nil {
			return err
		}
	}
	printPlan(stdout, changes)
	count := map[lifecycle.Action]int{}
	var conflicts []string
	for _, c := range changes {
		count[c.Action]++
		if c.Action == lifecycle.Conflict {
			conflicts = append(conflicts, c.Path)
		}
	}
	var parts []string
	for _, a := range []lifecycle.Action{lifecycle.Add, lifecycle.Replace, lifecycle.Merge, lifecycle.Conflict, lifecycle.Delete, lifecycle.Keep} {
		if count[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[a], a))
		}
	}
	summary := strings.Join(parts, ", ")
	if summary == "" {
		summary = "nothing to change"
	}
	if o.dryRun {
		fmt.Fprintf(stdout, "%s: %s; dry run, nothing written\n", dir, summary)
		return nil
	}
	if err := lifecycle.Apply(ctx, dir, changes, generator.FileMode); err != nil {
		if errors.Is(err, lifecycle.ErrInterrupted) {
			return errInterrupted
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: %s; now as scaffold %s makes it\n", dir, summary, generator.Version)
	if len(conflicts) > 0 {
		// The markers are the result, so the rest (.scaffold.yaml included)
		// is written; the exit code says it needs a hand.
		noun := plural(len(conflicts), "file") + " have"
		if len(conflicts) == 1 {
			noun = "1 file has"
		}
		return &conflictError{fmt.Sprintf("%s conflicts: %s (resolve the <<<<<<< markers, then commit; .scaffold.yaml already records the new answers and version)", noun, strings.Join(conflicts, ", "))}
	}
	return nil
}

// conflictError is the result of a command that wrote conflict markers:
// not a failure (everything is written), but exit 1 all the same.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

func printPlan(w io.Writer, changes []lifecycle.Change) {
	for _, c := range changes {
		var detail string
		switch c.Action {
		case lifecycle.Keep:
			detail = " (" + c.Note + ")"
		case lifecycle.Conflict:
			detail = fmt.Sprintf(" (+%d -%d, %d conflicting)", c.Added, c.Deleted, c.Conflicts)
		default:
			detail = fmt.Sprintf(" (+%d -%d)", c.Added, c.Deleted)
		}
		fmt.Fprintf(w, "%-8s %s%s\n", c.Action, c.Path, detail)
	}
}

// baseFiles returns what the generator made for the project's recorded
// answers at the recorded version. For this version it generates them in
// memory; for another it takes the --base-from binary or directory, or runs
// that version through the go command.
func baseFiles(ctx context.Context, p project, baseFrom string) (map[string][]byte, error) {
	want := p.recorded.GeneratorVersion
	if baseFrom == "" && want == generator.Version {
		return generator.Generate(p.recorded.Answers)
	}
	var base map[string][]byte
	var err error
	if fi, statErr := os.Stat(baseFrom); baseFrom != "" && statErr == nil && fi.IsDir() {
		base, err = readBaseTree(baseFrom)
		delete(base, ".git")
		for q := range base {
			if strings.HasPrefix(q, ".git/") {
				delete(base, q)
			}
		}
	} else {
		base, err = runOld(ctx, p, baseFrom)
	}
	if err != nil {
		return nil, err
	}
	fa, perr := generator.ParseFile("base", base[generator.AnswersFileName])
	if perr != nil || fa.GeneratorVersion != want {
		return nil, fmt.Errorf("the base from %s was not made by scaffold %s, which made %s (pass --base-from with scaffold %s or its output for these answers)", firstOf(baseFrom, "go run"), want, p.dir, want)
	}
	return base, nil
}

// runOld runs scaffold at the project's recorded version with its recorded
// answers into a temporary directory and reads what it wrote: the binary
// baseFrom, or `go run` of that version, which the go command fetches (or
// finds in its module cache).
func runOld(ctx context.Context, p project, baseFrom string) (map[string][]byte, error) {
	tmp, err := os.MkdirTemp("", "scaffold-base-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	answers := filepath.Join(tmp, "answers.yaml")
	if err := os.WriteFile(answers, p.raw, 0o644); err != nil {
		return nil, err
	}
	v := p.recorded.GeneratorVersion
	// The command runs in tmp: a relative --base-from is made absolute, a
	// bare name is looked up in PATH.
	if strings.ContainsRune(baseFrom, filepath.Separator) {
		baseFrom, _ = filepath.Abs(baseFrom)
	} else if baseFrom != "" {
		if p, err := exec.LookPath(baseFrom); err == nil {
			baseFrom = p
		}
	}
	cmdline := []string{baseFrom}
	fix := "check --base-from"
	if baseFrom == "" {
		cmdline = []string{"go", "run", modulePath + "@v" + strings.TrimPrefix(v, "v")}
		fix = fmt.Sprintf("without network, pass --base-from with a scaffold %s binary or its output for these answers", v)
	}
	cmdline = append(cmdline, "new", "--yes", "--answers", answers, filepath.Join(tmp, "out"))
	cmd := exec.CommandContext(ctx, cmdline[0], cmdline[1:]...)
	cmd.Dir = tmp
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errOut.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return nil, fmt.Errorf("making the base with scaffold %s failed: %s: %v %s (%s)", v, strings.Join(cmdline[:min(3, len(cmdline))], " "), err, msg, fix)
	}
	return readBaseTree(filepath.Join(tmp, "out"))
}

func readBaseTree(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(dir, q)
		files[filepath.ToSlash(rel)], err = os.ReadFile(q)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read the base: %v", err)
	}
	return files, nil
}

// dirtyCheck refuses when dir is in a git work tree with uncommitted
// changes (untracked files included) to a file the changes would touch:
// those edits could not be told apart from the command's afterwards.
func dirtyCheck(ctx context.Context, dir string, changes []lifecycle.Change) error {
	var paths []string
	for _, c := range changes {
		if c.Writes() {
			paths = append(paths, ":(literal)"+c.Path)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	if _, err := exec.LookPath("git"); err != nil {
		return nil
	}
	if err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--is-inside-work-tree").Run(); err != nil {
		return nil // not in a work tree: nothing to compare with
	}
	args := append([]string{"-C", dir, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--"}, paths...)
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil {
		return fmt.Errorf("git status in %s failed: %v (pass --allow-dirty to go on without it)", dir, err)
	}
	var dirty []string
	fields := strings.Split(string(out), "\x00")
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if len(f) < 4 {
			continue
		}
		dirty = append(dirty, f[3:])
		if f[0] == 'R' || f[0] == 'C' {
			i++ // the source of a rename follows
		}
	}
	if len(dirty) == 0 {
		return nil
	}
	if len(dirty) > 10 {
		dirty = append(dirty[:10], fmt.Sprintf("and %d more", len(dirty)-10))
	}
	return fmt.Errorf("uncommitted changes to files scaffold would change: %s (commit or stash them, or pass --allow-dirty)", strings.Join(dirty, ", "))
}

// check is scaffold check: exit 0 when up to date, an error (exit 1) when
// an update is available.
func check(c *cli.Context, stdout io.Writer) error {
	p, err := openProject(c.String("dir"))
	if err != nil {
		return err
	}
	v := p.recorded.GeneratorVersion
	if v != generator.Version && !c.IsSet("base-from") {
		// The version alone says an update is available (at least
		// .scaffold.yaml changes); the plan would need the old generator.
		return fmt.Errorf("update available: %s was made by scaffold %s, this is %s (run scaffold update; --base-from shows the plan offline)", p.dir, v, generator.Version)
	}
	changes, err := plan(c.Context, p, p.recorded.Answers, c.String("base-from"), nil)
	if err != nil {
		return err
	}
	n := 0
	for _, ch := range changes {
		if ch.Writes() {
			n++
		}
	}
	printPlan(stdout, changes)
	if n > 0 {
		return fmt.Errorf("update available: scaffold %s would change %s in %s (run scaffold update)", generator.Version, plural(n, "file"), p.dir)
	}
	fmt.Fprintf(stdout, "%s is up to date with scaffold %s\n", p.dir, generator.Version)
	return nil
}

// forceInto is new --force into a non-empty DIR. A project already there
// (it has a .scaffold.yaml) is updated to the new answers as update does,
// with its recorded answers as the base. Anything else has no base: a file
// that exists and differs from what scaffold writes might be the user's
// work, so it refuses and names them, rather than guessing.
func forceInto(c *cli.Context, dir string, a generator.Answers, files, secrets map[string][]byte, stdout, stderr io.Writer) error {
	o := opts{dryRun: c.Bool("dry-run"), allowDirty: c.Bool("allow-dirty"), baseFrom: c.String("base-from"), verb: "new"}
	if _, err := os.Stat(filepath.Join(dir, generator.AnswersFileName)); err == nil {
		p, err := openProject(dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "scaffold: %s holds a project made by scaffold %s: updating it to these answers (as scaffold update does)\n", dir, p.recorded.GeneratorVersion)
		return evolve(c.Context, p, a, o, stdout, stderr)
	}
	var paths []string
	for q := range files {
		paths = append(paths, q)
	}
	for q := range secrets {
		paths = append(paths, q)
	}
	ours, err := lifecycle.ReadFiles(dir, paths)
	if err != nil {
		return err
	}
	var differ []string
	for _, q := range slices.Sorted(maps.Keys(files)) {
		if b, ok := ours[q]; ok && !bytes.Equal(b, files[q]) {
			differ = append(differ, q)
		}
	}
	if len(differ) > 0 {
		return fmt.Errorf("%s in %s %s and %s from what scaffold writes: %s (with no .scaffold.yaml there is no telling your edits from an older output: move them away, or commit and merge by hand)",
			plural(len(differ), "file"), dir, map[bool]string{true: "exists", false: "exist"}[len(differ) == 1], map[bool]string{true: "differs", false: "differ"}[len(differ) == 1], strings.Join(differ, ", "))
	}
	// Nothing to merge: every file is new or the same.
	changes := lifecycle.Plan(map[string][]byte{}, files, ours, merge.Labels{}, func(string) bool { return false })
	for _, q := range slices.Sorted(maps.Keys(secrets)) {
		if _, ok := ours[q]; !ok {
			added, _ := merge.Stat(nil, secrets[q])
			changes = append(changes, lifecycle.Change{Path: q, Action: lifecycle.Add, Content: secrets[q], Added: added})
		}
	}
	return carryOut(c.Context, dir, changes, o, stdout)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
