package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/AlecAivazis/survey/v2/terminal"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/scaffoldhq/scaffold/generator"
	"github.com/scaffoldhq/scaffold/prompt"
	"github.com/scaffoldhq/scaffold/writer"
)

// run is the whole command: args as in os.Args, the environment through
// getenv, and the three standard streams. Prompts appear only when stdin is
// a terminal. The error it returns is one line, without the "scaffold: "
// prefix, which main adds.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	// --version prints what the version command prints. VersionPrinter is a
	// package variable of cli; run is never called concurrently (see
	// pty_test.go).
	cli.VersionPrinter = func(*cli.Context) { printVersion(stdout) }
	if len(args) > 2 && (args[1] == "help" || args[1] == "h") && !slices.Contains(commandNames, args[2]) {
		// cli would print nothing and exit 0.
		return fmt.Errorf("no help for unknown command %q (commands: %s; see scaffold --help)", args[2], strings.Join(commandNames, ", "))
	}
	if len(args) > 1 {
		flags := map[string][]cli.Flag{"new": newFlags(), "add": lifecycleFlags(), "remove": lifecycleFlags(),
			"update": append(lifecycleFlags(), answerFlags()...), "check": lifecycleFlags()}[args[1]]
		if flags != nil {
			args = append(args[:2:2], flagsFirst(args[2:], flags)...)
		}
	}
	app := &cli.App{
		Name:        "scaffold",
		Usage:       "generate a Go web service ready to run as several instances behind a load balancer",
		Version:     generator.Version,
		Description: examples,
		Writer:      stdout,
		ErrWriter:   stderr,
		Reader:      stdin,
		// Errors are printed by main, once, as one line; the cli package
		// must not print them or exit.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
		Commands: append([]*cli.Command{
			newCommand(getenv, stdin, stdout, stderr)},
			append(lifecycleCommands(stdout, stderr), []*cli.Command{{
				Name:  "features",
				Usage: "list the features, what each adds and what each needs",
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("features takes no arguments, got %s (usage: scaffold features)", strings.Join(c.Args().Slice(), " "))
					}
					return listFeatures(stdout)
				},
			},
				{
					Name:  "version",
					Usage: "print the generator version",
					Action: func(c *cli.Context) error {
						if c.NArg() > 0 {
							return fmt.Errorf("version takes no arguments, got %s (usage: scaffold version)", strings.Join(c.Args().Slice(), " "))
						}
						printVersion(stdout)
						return nil
					},
				},
			}...)...),
		CommandNotFound: func(c *cli.Context, name string) {
			// Reported by the Action below as an error.
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unknown command %q (commands: %s; see scaffold --help)", c.Args().First(), strings.Join(commandNames, ", "))
			}
			return cli.ShowAppHelp(c)
		},
	}
	return app.RunContext(ctx, args)
}

var commandNames = []string{"new", "add", "remove", "update", "check", "features", "version", "help"}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "scaffold %s (%s)\n", generator.Version, runtime.Version())
}

const examples = `Examples:
   scaffold new shop                          ask for each answer on a terminal
   scaffold new --yes shop                    take the defaults (compose: 3 instances behind haproxy)
   scaffold new --yes --features all --module github.com/acme/shop --git shop
   scaffold new --answers shop/.scaffold.yaml again    make the same project again
   scaffold features                          what each feature adds and needs`

// flagMessage matches the flag package's messages, which name a flag with
// one dash.
var flagMessage = regexp.MustCompile(`^(flag provided but not defined|flag needs an argument|invalid value "(.*)" for flag|invalid boolean flag [^:]*|bad flag syntax): -+([^ :]*)(.*)$`)

// usageError rewrites the flag package's errors in this command's words,
// naming flags with two dashes (one for a one-letter flag).
func usageError(c *cli.Context, err error, isSubcommand bool) error {
	help := "scaffold --help"
	if c.Command != nil && c.Command.Name != "" && c.Command.Name != c.App.Name {
		help = "scaffold " + c.Command.Name + " --help"
	}
	msg := err.Error()
	if m := flagMessage.FindStringSubmatch(msg); m != nil {
		flag := "--" + m[3]
		if len(m[3]) == 1 {
			flag = "-" + m[3]
		}
		switch {
		case strings.HasPrefix(m[1], "flag provided"):
			msg = "unknown flag " + flag
		case strings.HasPrefix(m[1], "flag needs"):
			msg = flag + " needs a value"
		case strings.HasPrefix(m[1], "invalid value"):
			msg = fmt.Sprintf("invalid value %q for %s", m[2], flag)
		default:
			msg = m[1] + ": " + flag + m[4]
		}
	}
	return fmt.Errorf("%s (see %s)", msg, help)
}

// flagsFirst moves the flags in args (what follows "scaffold new") before the
// arguments, so that "scaffold new shop --yes" works as most Go commands do;
// the flag package stops at the first argument. A flag's value stays with
// it, and "--" still ends the flags.
func flagsFirst(args []string, flags []cli.Flag) []string {
	takesValue := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var fl, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(append(fl, "--"), append(rest, args[i+1:]...)...)
		case len(a) > 1 && a[0] == '-':
			fl = append(fl, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
				i++
				fl = append(fl, args[i])
			}
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) > 0 {
		fl = append(fl, "--") // what remains are arguments, even "-x" after --
	}
	return append(fl, rest...)
}

const newDescription = `Writes a new Go web service into DIR, asking on a terminal for what the flags
do not give. DIR must be new or empty unless --force is given; the project is
written to a temporary directory beside DIR and renamed into place, so no
half-written project is left behind.

The load balancer and the replicas are asked for (and required without a
terminal) only when compose is on; otherwise they take their defaults.
With --yes, what is not given takes its default: name from DIR, module
example.com/NAME, --features compose, --lb haproxy, --replicas 3, --port 8080.
That is the web service run as 3 instances behind haproxy with docker compose,
and a test of the whole cluster; its tests need nginx and haproxy (make test
installs them). --features all adds PostgreSQL, Redis and MinIO, which its
tests need too (MinIO is built from source). Flags may come before or after
DIR; -- ends them.

Examples:
   scaffold new shop                  ask on a terminal for each answer
   scaffold new --yes shop            the defaults, without a question
   scaffold new shop --yes --features db,cache --module github.com/acme/shop --git
   scaffold new --answers shop/.scaffold.yaml again   the same project again`

func newCommand(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:         "new",
		Usage:        "generate a project into DIR",
		ArgsUsage:    "DIR",
		Description:  newDescription,
		OnUsageError: usageError,
		Flags:        newFlags(),
		Action: func(c *cli.Context) error {
			return newProject(c, getenv, stdin, stdout, stderr)
		},
	}
}

func newFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "project `NAME`: binary, service and compose project (default: the last element of DIR)"},
		&cli.StringFlag{Name: "module", Usage: "Go module `PATH`, accepted when go mod init accepts it, e.g. shop or github.com/acme/shop (default with --yes: example.com/NAME)"},
		&cli.StringFlag{Name: "features", Usage: "comma `LIST` of features (see scaffold features), or all, or none (default with --yes: compose)"},
		&cli.StringFlag{Name: "lb", Usage: "load balancer in the compose file: `haproxy|nginx`; asked only when compose is on (default with --yes or without compose: " + generator.DefaultLB + ")"},
		&cli.StringFlag{Name: "replicas", Usage: fmt.Sprintf("app instances behind the load balancer, `N` in %d..%d; asked only when compose is on (default with --yes or without compose: %d)", generator.MinReplicas, generator.MaxReplicas, generator.DefaultReplicas)},
		&cli.StringFlag{Name: "port", Usage: fmt.Sprintf("HTTP `PORT` of the app, 1..65535 (default with --yes: %d)", generator.DefaultPort)},
		&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "never prompt: what is not given takes its default", DisableDefaultText: true},
		&cli.StringFlag{Name: "answers", Usage: "read answers from `FILE` (the format of a generated .scaffold.yaml); flags override it"},
		&cli.BoolFlag{Name: "dry-run", Usage: "print the files that would be written, and write nothing", DisableDefaultText: true},
		&cli.BoolFlag{Name: "git", Usage: "after writing, git init DIR and make a first commit of the project (DIR must not be inside a git work tree)", DisableDefaultText: true},
		&cli.BoolFlag{Name: "force", Usage: "write into a non-empty DIR: a project already there is updated as scaffold update does; elsewhere, files that exist and differ make it refuse", DisableDefaultText: true},
		&cli.BoolFlag{Name: "allow-dirty", Usage: "with --force: go on although git has uncommitted changes to files it would change", DisableDefaultText: true},
		baseFromFlag(),
	}
}

func newProject(c *cli.Context, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch {
	case c.NArg() == 0:
		return errors.New("new needs a DIR to write the project into (usage: scaffold new [flags] DIR)")
	case c.NArg() > 1:
		return fmt.Errorf("new takes one DIR, got %s (usage: scaffold new [flags] DIR)", strings.Join(c.Args().Slice(), " "))
	}
	dir := c.Args().First()
	force := c.Bool("force")

	// DIR is checked before the first question, so that nobody answers them
	// all only to learn that DIR cannot be used. Write checks it again.
	if _, err := writer.Check(dir, nil, nil, force); err != nil {
		return err
	}
	if c.Bool("git") {
		if err := gitCheck(c.Context, dir); err != nil {
			return err
		}
	}

	a, err := collectAnswers(c, dir, stdin, stdout, stderr)
	if err != nil {
		return err
	}
	files, err := generator.Generate(a)
	if err != nil {
		return err
	}
	secrets, err := generator.Secrets(a, rand.Reader)
	if err != nil {
		return err
	}
	if force && !writer.IsEmpty(dir) {
		if err := forceInto(c, dir, a, files, secrets, stdout, stderr); err != nil {
			return err
		}
		if !c.Bool("dry-run") {
			printNext(stdout, dir, a)
		}
		return nil
	}
	if c.Bool("dry-run") {
		plan, err := writer.Check(dir, files, secrets, force)
		if err != nil {
			return err
		}
		printTree(stdout, dir, files, secrets, plan)
		return nil
	}
	plan, err := writer.Write(c.Context, dir, files, secrets, force, generator.FileMode)
	if err != nil {
		return err
	}
	for _, p := range plan.Replaced {
		fmt.Fprintf(stdout, "replaced %s\n", filepath.Join(dir, p))
	}
	for _, p := range plan.Kept {
		fmt.Fprintf(stdout, "kept     %s (it holds secrets)\n", filepath.Join(dir, p))
	}
	wrote := fmt.Sprintf("wrote %s: %d files", dir, len(files)+len(secrets)-len(plan.Kept))
	if c.Bool("git") {
		if err := gitInit(c.Context, dir, getenv, stderr); err != nil {
			return fmt.Errorf("%s, but %v", wrote, err)
		}
		wrote += ", in a new git repository with a first commit"
	}
	fmt.Fprintln(stdout, wrote)
	printNext(stdout, dir, a)
	return nil
}

// usesReplicas reports whether the replicas answer changes the project: the
// compose file runs that many instances, the Kubernetes manifests that many
// pods at least.
func usesReplicas(a generator.Answers) bool {
	return a.Has("compose") || a.Has("k8s")
}

// printNext prints the two commands that matter for the project, as the
// header of its Makefile names them: start it, and test it.
func printNext(w io.Writer, dir string, a generator.Answers) {
	cd := ""
	if filepath.Clean(dir) != "." {
		cd = "cd " + shellQuote(dir) + " && "
	}
	start, what := "make run", "one instance on this machine"
	if a.Has("db") {
		what += " (DATABASE_URL must name a PostgreSQL database)"
	}
	if a.Has("compose") {
		start, what = "make up", fmt.Sprintf("%d instances behind %s, with docker compose", a.Replicas, a.LB)
	}
	test := "runs every test; they need no server"
	if a.Has("db") || a.Has("blob") || a.Has("compose") {
		test = "installs the servers the tests need, then runs every test"
	}
	width := max(len(cd+start), len("make test"))
	fmt.Fprintf(w, "next:\n  %-*s  # %s\n  %-*s  # %s\n", width, cd+start, what, width, "make test", test)
}

func printTree(w io.Writer, dir string, files, secrets map[string][]byte, plan writer.Plan) {
	var paths []string
	total := 0
	for p, b := range files {
		paths = append(paths, p)
		total += len(b)
	}
	for p, b := range secrets {
		paths = append(paths, p)
		total += len(b)
	}
	slices.Sort(paths)
	for _, p := range paths {
		size := len(files[p])
		note := ""
		if b, ok := secrets[p]; ok {
			size, note = len(b), " (random, made when written)"
		}
		switch {
		case slices.Contains(plan.Replaced, p):
			note += " (replaces the existing file)"
		case slices.Contains(plan.Kept, p):
			note += " (exists; kept)"
		}
		fmt.Fprintf(w, "%8d  %s%s\n", size, p, note)
	}
	fmt.Fprintf(w, "%d files, %d bytes in %s; dry run, nothing written\n", len(paths), total, dir)
}

// isTerminal reports whether r is a terminal that survey can prompt on.
func isTerminal(r io.Reader) bool {
	f, ok := r.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// collectAnswers merges, in rising order of precedence, defaults, the
// answers file and the flags; then asks for what is still missing (on a
// terminal) or takes defaults (--yes), and checks the result.
func collectAnswers(c *cli.Context, dir string, stdin io.Reader, stdout, stderr io.Writer) (generator.Answers, error) {
	var a generator.Answers
	given := map[string]bool{}

	if file := c.String("answers"); c.IsSet("answers") {
		data, err := os.ReadFile(file)
		if err != nil {
			return a, fmt.Errorf("cannot read answers file %s: %v (check the path)", file, cause(err))
		}
		fa, err := generator.ParseFile(file, data)
		if err != nil {
			return a, err
		}
		a = fa.Answers
		for k := range fa.Set {
			given[k] = true
		}
		if fa.GeneratorVersion != "" && fa.GeneratorVersion != generator.Version {
			fmt.Fprintf(stderr, "scaffold: note: %s was written by scaffold %s and this is %s, so the output may differ\n", file, fa.GeneratorVersion, generator.Version)
		}
	}

	// Flags override the file. Each given value is checked now, before any
	// prompt, so a typo fails fast.
	if c.IsSet("name") {
		a.Name, given["name"] = c.String("name"), true
	}
	if c.IsSet("module") {
		a.Module, given["module"] = c.String("module"), true
	}
	if c.IsSet("features") {
		f, err := generator.ParseFeatures(c.String("features"))
		if err != nil {
			return a, err
		}
		a.Features, given["features"] = f, true
	}
	if c.IsSet("lb") {
		a.LB, given["lb"] = c.String("lb"), true
	}
	// The numbers are string flags, parsed here: the flag package would say
	// "parse error" with a one-dash flag name, and an int flag shows
	// "(default: 0)" in the help.
	for _, n := range []struct {
		key string
		to  *int
	}{{"replicas", &a.Replicas}, {"port", &a.Port}} {
		if !c.IsSet(n.key) {
			continue
		}
		v := c.String(n.key)
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return a, fmt.Errorf("--%s %q is not a whole number (%s)", n.key, v, numberFix[n.key])
		}
		*n.to, given[n.key] = i, true
	}
	checks := []struct {
		key   string
		check func() error
	}{
		{"name", func() error { return generator.CheckName(a.Name) }},
		{"module", func() error { return generator.CheckModule(a.Module) }},
		{"lb", func() error { return generator.CheckLB(a.LB) }},
		{"replicas", func() error { return generator.CheckReplicas(a.Replicas) }},
		{"port", func() error { return generator.CheckPort(a.Port) }},
	}
	for _, ch := range checks {
		if given[ch.key] {
			if err := ch.check(); err != nil {
				return a, err
			}
		}
	}

	// The name DIR gives, made valid; interactively it is the pre-filled
	// answer, so it must be valid itself, or empty when none can be made.
	dirBase := dirName(dir)
	defaultName, nameOK := generator.DeriveName(dirBase)
	if !nameOK {
		defaultName = ""
	}
	yes := c.Bool("yes")
	interactive := false
	var p *prompt.Prompter
	if !yes && isTerminal(stdin) {
		in, inOK := stdin.(terminal.FileReader)
		out, outOK := stdout.(terminal.FileWriter)
		if inOK && outOK {
			interactive = true
			p = prompt.New(in, out, stderr)
		}
	}

	if given["features"] {
		// Resolved now, so that whether compose is on is known before
		// deciding what to ask or require.
		a.Features, _ = generator.Resolve(a.Features)
	}
	if !yes && !interactive {
		// The name has a default that comes from DIR, which is given; the
		// other answers are asked for, so without a terminal they must be
		// given. The load balancer matters only to the compose file, and
		// the replicas only to it and the Kubernetes manifests, so they are
		// required only when a feature that uses them is known to be on.
		var missing []string
		for _, k := range []string{"module", "features", "lb", "replicas", "port"} {
			if k == "lb" && !(given["features"] && a.Has("compose")) {
				continue
			}
			if k == "replicas" && !(given["features"] && usesReplicas(a)) {
				continue
			}
			if !given[k] {
				missing = append(missing, "--"+k)
			}
		}
		if len(missing) > 0 {
			verb := "is"
			if len(missing) > 1 {
				verb = "are"
			}
			return a, fmt.Errorf("%s %s required when stdin is not a terminal (pass %s, or --yes to take defaults)",
				joinAnd(missing), verb, map[bool]string{true: "it", false: "them"}[len(missing) == 1])
		}
	}

	var err error
	ask := func(key string, fn func() error) {
		if err == nil && !given[key] && interactive {
			err = fn()
		}
	}
	ask("name", func() (e error) { a.Name, e = p.Name(defaultName); return })
	if !given["name"] && !interactive {
		if !nameOK {
			return a, fmt.Errorf("cannot make a project name from DIR %s (pass --name with lowercase letters, digits and '-', starting with a letter)", shellQuote(dir))
		}
		a.Name = defaultName
		if a.Name != dirBase {
			fmt.Fprintf(stderr, "scaffold: project name %q (from DIR %s; pass --name to choose another)\n", a.Name, shellQuote(dir))
		}
	}
	ask("module", func() (e error) { a.Module, e = p.Module(generator.DefaultModule(a.Name)); return })
	ask("features", func() (e error) { a.Features, e = p.Features(generator.DefaultFeatures()); return })
	if err == nil {
		// Say what the features chosen so far need before asking further.
		var added []generator.Added
		a.Features, added = generator.Resolve(a.Features)
		for _, ad := range added {
			fmt.Fprintf(stderr, "scaffold: %s needs %s, so %s is on too\n", ad.NeededBy, ad.Feature, ad.Feature)
		}
	}
	// Without compose the load balancer, and without compose or k8s the
	// replicas, change nothing in the project: they are not asked and take
	// their defaults below (they are still recorded in .scaffold.yaml).
	if a.Has("compose") {
		ask("lb", func() (e error) { a.LB, e = p.LB(generator.DefaultLB); return })
	}
	if usesReplicas(a) {
		ask("replicas", func() (e error) { a.Replicas, e = p.Replicas(generator.DefaultReplicas); return })
	}
	ask("port", func() (e error) { a.Port, e = p.Port(generator.DefaultPort); return })
	if err != nil {
		return a, promptError(err)
	}

	// Defaults for what is still missing (--yes).
	if !given["module"] && !interactive {
		a.Module = generator.DefaultModule(a.Name)
	}
	if !given["features"] && !interactive {
		a.Features, _ = generator.Resolve(generator.DefaultFeatures())
	}
	if !given["lb"] && (!interactive || !a.Has("compose")) {
		a.LB = generator.DefaultLB
	}
	if !given["replicas"] && (!interactive || !usesReplicas(a)) {
		a.Replicas = generator.DefaultReplicas
	}
	if !given["port"] && !interactive {
		a.Port = generator.DefaultPort
	}
	if a.Features == nil {
		a.Features = []string{}
	}
	if err := a.Validate(); err != nil {
		return a, err
	}

	if interactive {
		ok, err := p.Confirm(summary(dir, a))
		if err != nil {
			return a, promptError(err)
		}
		if !ok {
			return a, errors.New("not confirmed, nothing written (run scaffold new again to change the answers)")
		}
	}
	return a, nil
}

// numberFix says what the number flags take, for a value that is not a number.
var numberFix = map[string]string{
	"replicas": fmt.Sprintf("use --replicas between %d and %d", generator.MinReplicas, generator.MaxReplicas),
	"port":     "use --port between 1 and 65535",
}

// errInterrupted is the error of a run ended by Ctrl-C; main exits 130 on it.
var errInterrupted = errors.New("interrupted, nothing written (run scaffold new again to start over)")

// promptError is the one-line error for a prompt that did not get an answer.
func promptError(err error) error {
	switch {
	case errors.Is(err, prompt.ErrInterrupted):
		return errInterrupted
	case errors.Is(err, prompt.ErrEOF):
		return errors.New("input ended (Ctrl-D), nothing written (run scaffold new again to start over)")
	}
	return fmt.Errorf("prompt: %v", err)
}

func summary(dir string, a generator.Answers) string {
	features := strings.Join(a.Features, ", ")
	if features == "" {
		features = "none"
	}
	return fmt.Sprintf("%s in %s\n  module:   %s\n  features: %s\n  lb:       %s, %d replicas\n  port:     %d",
		a.Name, dir, a.Module, features, a.LB, a.Replicas, a.Port)
}

// dirName is the default project name: the last element of DIR.
func dirName(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return filepath.Base(dir)
}

// shellQuote quotes s for a POSIX shell when it needs it, so that a printed
// command can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:@%+=,-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func joinAnd(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func cause(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func listFeatures(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "base\t%s\talways on\n", generator.Base.Description)
	for _, f := range generator.Features {
		needs := ""
		if len(f.Needs) > 0 {
			needs = "needs " + strings.Join(f.Needs, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, f.Description, needs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(generator.Features) == 0 {
		fmt.Fprintln(w, "\nNo optional features are available in this version; --features takes none.")
	} else {
		fmt.Fprintln(w, "\nscaffold new --features LIST takes a comma list of these, or all, or none.")
	}
	return nil
}
