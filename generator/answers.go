package generator

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/module"
	"gopkg.in/yaml.v3"
)

// Answers are everything the generator needs to know about a project. They
// are stored in the generated .scaffold.yaml (with the generator version), so
// the same answers make the same project again.
type Answers struct {
	Name     string   `yaml:"name"`
	Module   string   `yaml:"module"`
	Features []string `yaml:"features,flow"`
	LB       string   `yaml:"lb"`
	Replicas int      `yaml:"replicas"`
	Port     int      `yaml:"port"`
}

// Defaults and bounds of the answers. Replicas stop at 20: the compose file
// runs every replica on one machine, and each holds its own database pool.
const (
	// haproxy: it checks /readyz, so it stops sending to an instance that
	// drains or freezes before anything fails; nginx (open source) learns
	// only from failed requests. See the closing note of issue 9 and
	// reference-app/BENCHMARKS.md for the measurements.
	DefaultLB       = "haproxy"
	DefaultReplicas = 3
	DefaultPort     = 8080
	MinReplicas     = 1
	MaxReplicas     = 20
	MaxNameLen      = 63 // a DNS label: the name is also a compose project and host name
)

// LBs are the load balancers the compose file can put in front of the app.
var LBs = []string{"haproxy", "nginx"} // the default first

// AnswersFileName is the name of the answers file in every generated project.
const AnswersFileName = ".scaffold.yaml"

// DefaultModule is the module path taken for name when none is given.
func DefaultModule(name string) string { return "example.com/" + name }

// DefaultFeatures are the features taken when none are given (--yes) and
// checked to begin with on a terminal: compose alone. It is the tool's point
// (instances behind a load balancer, and the test of the whole cluster) at
// the least cost: its tests need only nginx and haproxy, which make test
// installs, where all features need PostgreSQL, Redis and a MinIO built from
// source too. The other features are one --features away.
func DefaultFeatures() []string {
	if _, ok := lookup("compose"); ok {
		return []string{"compose"}
	}
	return []string{}
}

// FeatureNames are the available features in canonical order.
func FeatureNames() []string {
	names := make([]string, len(Features))
	for i, f := range Features {
		names[i] = f.Name
	}
	return names
}

func lookup(name string) (Feature, bool) {
	for _, f := range Features {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// Error is a problem with an answer. Its text is one line: what is wrong,
// naming the value, then the fix in parentheses.
type Error struct {
	Key  string // the answers key ("port") the problem is about
	What string
	Fix  string
	// AskFix is the fix in words for a prompt, which names no flag; empty
	// when Fix names none either.
	AskFix string
}

func (e *Error) Error() string { return e.What + " (" + e.Fix + ")" }

func available() string {
	if len(Features) == 0 {
		return "none"
	}
	return strings.Join(FeatureNames(), ", ") + ", all, none"
}

// ParseFeatures reads a feature list as given to --features: names separated
// by commas, or "all", or "none" (or nothing, which is none), in any case. The result is in
// canonical order, without the features it needs added (see Resolve).
func ParseFeatures(list string) ([]string, error) {
	seen := map[string]bool{}
	var none bool
	for _, f := range strings.Split(list, ",") {
		// Feature names are lowercase; DB means db.
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "":
		case "none":
			none = true
		case "all":
			for _, name := range FeatureNames() {
				seen[name] = true
			}
		default:
			if _, ok := lookup(f); !ok {
				return nil, &Error{Key: "features", What: fmt.Sprintf("unknown feature %q", f), Fix: "available: " + available()}
			}
			seen[f] = true
		}
	}
	if none && len(seen) > 0 {
		return nil, &Error{Key: "features", What: fmt.Sprintf("features %q mix \"none\" with features", list), Fix: "give \"none\" alone, or only feature names"}
	}
	return canonical(seen), nil
}

func canonical(set map[string]bool) []string {
	out := []string{}
	for _, f := range Features {
		if set[f.Name] {
			out = append(out, f.Name)
		}
	}
	return out
}

// Added records a feature that Resolve turned on because another needs it.
type Added struct {
	Feature, NeededBy string
}

// Resolve adds the features that the given ones need, and returns the full
// list in canonical order with what it added.
func Resolve(features []string) ([]string, []Added) {
	set := map[string]bool{}
	for _, f := range features {
		set[f] = true
	}
	var added []Added
	for changed := true; changed; {
		changed = false
		for _, f := range canonical(set) {
			feat, _ := lookup(f)
			for _, need := range feat.Needs {
				if !set[need] {
					set[need] = true
					added = append(added, Added{Feature: need, NeededBy: f})
					changed = true
				}
			}
		}
	}
	return canonical(set), added
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// CheckName reports whether name can be a project name: it becomes the
// binary, the service and the compose project name, so it is kept to
// lowercase letters, digits and '-', starting with a letter.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || len(name) > MaxNameLen || strings.HasSuffix(name, "-") {
		return &Error{Key: "name", What: fmt.Sprintf("invalid name %q", name),
			Fix:    fmt.Sprintf("use lowercase letters, digits and '-', starting with a letter, at most %d characters, e.g. --name my-shop", MaxNameLen),
			AskFix: fmt.Sprintf("use lowercase letters, digits and '-', starting with a letter, at most %d characters, e.g. my-shop", MaxNameLen)}
	}
	return nil
}

// DeriveName makes a project name from s, the last element of DIR, the way
// create-vite makes a package name from a directory: lowercase, each run of
// characters other than a-z and 0-9 becomes one '-', no '-' at either end,
// at most MaxNameLen characters. ok is false when what is left is not a
// valid name (nothing, or no letter first); the caller then needs --name.
func DeriveName(s string) (name string, ok bool) {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	name = b.String()
	if len(name) > MaxNameLen {
		name = strings.TrimRight(name[:MaxNameLen], "-")
	}
	return name, CheckName(name) == nil
}

// CheckModule reports whether path is a module path that `go mod init`
// accepts: the same checks, from the same library (module.CheckImportPath,
// the two reserved paths, then the major version suffix). A single word like "shop" is accepted, as
// go mod init accepts it. A pasted URL or git address gets its own message
// with the path it probably meant.
func CheckModule(path string) error {
	if scheme, meant, ok := urlLike(path); ok {
		fix := "drop the " + scheme
		if CheckModule(meant) == nil {
			fix += ": use " + meant
		}
		return &Error{Key: "module", What: fmt.Sprintf("module path %q is a URL, not a module path", path), Fix: fix}
	}
	err := module.CheckImportPath(path)
	if err != nil {
		reason := err.Error()
		if e, ok := err.(*module.InvalidPathError); ok {
			reason = e.Err.Error()
		}
		return &Error{Key: "module", What: fmt.Sprintf("invalid module path %q: %s", path, reason),
			Fix: "use a path like example.com/acme/shop"}
	}
	if path == "go" || path == "toolchain" {
		return &Error{Key: "module", What: fmt.Sprintf("invalid module path %q: module path is reserved", path),
			Fix: "use a path like example.com/acme/shop"}
	}
	if _, _, ok := module.SplitPathVersion(path); !ok {
		// The go command's words for the same refusal.
		return &Error{Key: "module", What: fmt.Sprintf("invalid module path %q: major version suffixes must be in the form of /vN and are only allowed for v2 or later", path),
			Fix: "drop the suffix, or use /v2 or later"}
	}
	return nil
}

var (
	schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)
	scpRE    = regexp.MustCompile(`^([A-Za-z0-9._-]+@)([A-Za-z0-9.-]+):(.*)$`) // git@github.com:acme/shop.git
)

// urlLike recognizes a URL or an scp-like git address given as a module
// path, and returns the prefix to drop and the module path it names.
func urlLike(s string) (scheme, meant string, ok bool) {
	if m := schemeRE.FindString(s); m != "" {
		rest := s[len(m):]
		if i := strings.Index(rest, "@"); i >= 0 && i < strings.IndexAny(rest+"/", "/") {
			rest = rest[i+1:] // ssh://git@host/...: the user is not part of the path
		}
		return m, strings.TrimSuffix(strings.TrimSuffix(rest, "/"), ".git"), true
	}
	if m := scpRE.FindStringSubmatch(s); m != nil {
		return m[1], m[2] + "/" + strings.TrimSuffix(strings.TrimSuffix(m[3], "/"), ".git"), true
	}
	return "", "", false
}

// CheckLB reports whether lb is a known load balancer.
func CheckLB(lb string) error {
	if !slices.Contains(LBs, lb) {
		return &Error{Key: "lb", What: fmt.Sprintf("unknown load balancer %q", lb), Fix: "use --lb " + strings.Join(LBs, " or --lb "),
			AskFix: "choose " + strings.Join(LBs, " or ")}
	}
	return nil
}

// CheckReplicas reports whether n is a sensible number of app instances.
func CheckReplicas(n int) error {
	if n < MinReplicas || n > MaxReplicas {
		return &Error{Key: "replicas", What: fmt.Sprintf("replicas %d is out of range", n),
			Fix:    fmt.Sprintf("use --replicas between %d and %d", MinReplicas, MaxReplicas),
			AskFix: fmt.Sprintf("use a number between %d and %d", MinReplicas, MaxReplicas)}
	}
	return nil
}

// CheckPort reports whether n is a usable TCP port.
func CheckPort(n int) error {
	if n < 1 || n > 65535 {
		return &Error{Key: "port", What: fmt.Sprintf("port %d is out of range", n), Fix: "use --port between 1 and 65535",
			AskFix: "use a number between 1 and 65535"}
	}
	return nil
}

// Validate checks complete answers: every value valid, features known, in
// canonical order and with what they need.
func (a Answers) Validate() error {
	if err := CheckName(a.Name); err != nil {
		return err
	}
	if err := CheckModule(a.Module); err != nil {
		return err
	}
	parsed, err := ParseFeatures(strings.Join(a.Features, ","))
	if err != nil {
		return err
	}
	if resolved, added := Resolve(parsed); len(added) > 0 || !slices.Equal(resolved, a.Features) {
		return &Error{Key: "features", What: fmt.Sprintf("features %v are not resolved", a.Features), Fix: fmt.Sprintf("use %v", resolved)}
	}
	if err := CheckLB(a.LB); err != nil {
		return err
	}
	if err := CheckReplicas(a.Replicas); err != nil {
		return err
	}
	return CheckPort(a.Port)
}

// Has reports whether feature f is on.
func (a Answers) Has(f string) bool { return slices.Contains(a.Features, f) }

type answersFile struct {
	Answers          `yaml:",inline"`
	GeneratorVersion string `yaml:"generator_version"`
}

const answersHeader = "# Answers scaffold made this project from. `scaffold new --answers .scaffold.yaml DIR`\n# makes the same project again.\n"

// MarshalFile returns the .scaffold.yaml content for a.
func (a Answers) MarshalFile() []byte {
	if a.Features == nil {
		a.Features = []string{}
	}
	var buf bytes.Buffer
	buf.WriteString(answersHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(answersFile{Answers: a, GeneratorVersion: Version}); err != nil {
		panic(err) // a struct of strings and ints always encodes
	}
	enc.Close()
	return buf.Bytes()
}

// FileAnswers are answers read from an answers file. A file may leave keys
// out; Set says which it gave.
type FileAnswers struct {
	Answers
	Set              map[string]bool // yaml keys present in the file
	GeneratorVersion string
}

var fileKeys = []string{"name", "module", "features", "lb", "replicas", "port", "generator_version"}

// ParseFile reads an answers file (in the format of .scaffold.yaml). name is
// the file's name as the user gave it, for messages. Values are not
// validated here, except that features must be known.
func ParseFile(name string, data []byte) (FileAnswers, error) {
	fa := FileAnswers{Set: map[string]bool{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fa, fileError(name, "is not valid YAML: "+strings.TrimPrefix(oneLine(err.Error()), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return fa, fileError(name, "is empty")
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fa, fileError(name, fmt.Sprintf("line %d: is not a mapping of keys to answers", m.Line))
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if !slices.Contains(fileKeys, k.Value) {
			return fa, &Error{Key: k.Value, What: fmt.Sprintf("unknown key %q in answers file %s (line %d)", k.Value, name, k.Line),
				Fix: "known keys: " + strings.Join(fileKeys, ", ")}
		}
		if fa.Set[k.Value] {
			return fa, fileError(name, fmt.Sprintf("line %d: key %q is given twice", k.Line, k.Value))
		}
		fa.Set[k.Value] = true
		var err error
		switch k.Value {
		case "name":
			fa.Name, err = scalar(v)
		case "module":
			fa.Module, err = scalar(v)
		case "lb":
			fa.LB, err = scalar(v)
		case "generator_version":
			fa.GeneratorVersion, err = scalar(v)
		case "replicas":
			fa.Replicas, err = number(v)
		case "port":
			fa.Port, err = number(v)
		case "features":
			fa.Features, err = featureList(v)
		}
		if err != nil {
			if e, ok := err.(*Error); ok {
				e.What += fmt.Sprintf(" in answers file %s (line %d)", name, v.Line)
				return fa, e
			}
			return fa, fileError(name, fmt.Sprintf("line %d: %s %v", v.Line, k.Value, err))
		}
	}
	return fa, nil
}

func fileError(name, what string) error {
	return &Error{What: fmt.Sprintf("answers file %s %s", name, what), Fix: "fix the file; a generated .scaffold.yaml shows the format"}
}

func scalar(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("must be a single value")
	}
	return v.Value, nil
}

func number(v *yaml.Node) (int, error) {
	s, err := scalar(v)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("must be a whole number, not %q", s)
	}
	return n, nil
}

// featureList accepts a YAML list of names or a single string like --features.
func featureList(v *yaml.Node) ([]string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		return ParseFeatures(v.Value)
	case yaml.SequenceNode:
		var names []string
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("must be a list of feature names")
			}
			names = append(names, item.Value)
		}
		return ParseFeatures(strings.Join(names, ","))
	}
	return nil, fmt.Errorf("must be a list of feature names")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
