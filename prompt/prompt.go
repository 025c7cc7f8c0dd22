// Package prompt asks for the answers that flags did not give, on a terminal,
// with survey. Every question re-asks until its answer is valid, using the
// same checks as the generator.
package prompt

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/AlecAivazis/survey/v2"
	"github.com/AlecAivazis/survey/v2/core"
	"github.com/AlecAivazis/survey/v2/terminal"

	"github.com/scaffoldhq/scaffold/generator"
)

// ErrInterrupted is returned when the user presses Ctrl-C at a question.
var ErrInterrupted = errors.New("interrupted")

// ErrEOF is returned when the input ends at a question (Ctrl-D).
var ErrEOF = errors.New("input ended")

// Prompter asks questions on one terminal.
type Prompter struct {
	in   *eotReader
	opts []survey.AskOpt
}

// New returns a Prompter reading in and drawing on out. Passing the streams
// (rather than survey using os.Stdin) is what lets a pseudo-terminal test
// drive it.
func New(in terminal.FileReader, out terminal.FileWriter, errOut io.Writer) *Prompter {
	r := &eotReader{FileReader: in}
	return &Prompter{in: r, opts: []survey.AskOpt{survey.WithStdio(r, out, errOut)}}
}

// eotReader hands survey Ctrl-D as Ctrl-C, and remembers that it did. Survey
// takes Ctrl-D like Enter, which accepts the default; at a shell prompt
// Ctrl-D means "no more input", so here it ends the command without writing.
type eotReader struct {
	terminal.FileReader
	eot bool
}

func (r *eotReader) Read(p []byte) (int, error) {
	n, err := r.FileReader.Read(p)
	for i, b := range p[:n] {
		if b == terminal.KeyEndTransmission {
			p[i], r.eot = terminal.KeyInterrupt, true
		}
	}
	return n, err
}

func (p *Prompter) ask(q survey.Prompt, answer any, check func(string) error) error {
	opts := p.opts
	if check != nil {
		opts = append(opts[:len(opts):len(opts)], survey.WithValidator(func(ans any) error {
			s, _ := ans.(string)
			return askError(check(s))
		}))
	}
	p.in.eot = false
	err := survey.AskOne(q, answer, opts...)
	switch {
	case errors.Is(err, terminal.InterruptErr) && p.in.eot, errors.Is(err, io.EOF):
		return ErrEOF
	case errors.Is(err, terminal.InterruptErr):
		return ErrInterrupted
	}
	return err
}

// askError words a check's error for a prompt: the fix without flag names.
func askError(err error) error {
	var e *generator.Error
	if errors.As(err, &e) && e.AskFix != "" {
		return errors.New(e.What + " (" + e.AskFix + ")")
	}
	return err
}

// Name asks for the project name. def may be empty when DIR gives no valid
// name.
func (p *Prompter) Name(def string) (string, error) {
	var s string
	err := p.ask(&survey.Input{Message: "Project name:", Default: def,
		Help: fmt.Sprintf("Lowercase letters, digits and '-', starting with a letter, at most %d characters; used for the binary, the service and the compose project.", generator.MaxNameLen)},
		&s, generator.CheckName)
	return s, err
}

// Module asks for the Go module path.
func (p *Prompter) Module(def string) (string, error) {
	var s string
	err := p.ask(&survey.Input{Message: "Go module path:", Default: def,
		Help: "The module path in go.mod, as go mod init takes it: where the code will live, e.g. github.com/acme/shop, or a single word like shop for code nobody imports."},
		&s, generator.CheckModule)
	return s, err
}

// Features asks which features to turn on; def are checked to begin with.
// With no features available it asks nothing.
func (p *Prompter) Features(def []string) ([]string, error) {
	if len(generator.Features) == 0 {
		return []string{}, nil
	}
	desc := map[string]string{}
	for _, f := range generator.Features {
		d := f.Description
		if len(f.Needs) > 0 {
			d += " (needs " + strings.Join(f.Needs, ", ") + ")"
		}
		desc[f.Name] = d
	}
	var picked []string
	err := p.ask(multiSelect{&survey.MultiSelect{
		Message:     "Features:",
		Options:     generator.FeatureNames(),
		Default:     def,
		Description: func(value string, _ int) string { return desc[value] },
		Help: "Space turns the feature under the cursor on or off, Enter goes on. Each works on one machine " +
			"without servers, and across instances with its server. A feature that needs another turns it on.",
	}}, &picked, nil)
	return picked, err
}

// multiSelect shows an empty choice as "none" once answered, where survey
// would show nothing after the question.
type multiSelect struct{ *survey.MultiSelect }

func (m multiSelect) Cleanup(config *survey.PromptConfig, val any) error {
	if answers, ok := val.([]core.OptionAnswer); ok && len(answers) == 0 {
		return m.Render(survey.MultiSelectQuestionTemplate, survey.MultiSelectTemplateData{
			MultiSelect: *m.MultiSelect, Answer: "none", ShowAnswer: true, Config: config})
	}
	return m.MultiSelect.Cleanup(config, val)
}

// LB asks for the load balancer.
func (p *Prompter) LB(def string) (string, error) {
	var s string
	err := p.ask(&survey.Select{Message: "Load balancer:", Options: generator.LBs, Default: def,
		Help: "What spreads requests over the instances in docker-compose.yml. haproxy checks each instance's " +
			"/readyz and stops sending to one that is draining; nginx learns only from failed requests."}, &s, nil)
	return s, err
}

// Replicas asks for the number of app instances.
func (p *Prompter) Replicas(def int) (int, error) {
	return p.number(fmt.Sprintf("App instances behind the load balancer (%d..%d):", generator.MinReplicas, generator.MaxReplicas), def,
		fmt.Sprintf("How many copies of the app docker compose starts, and with k8s the fewest pods (the autoscaler runs up to twice as many). "+
			"At most %d: under compose they all run on one machine, each with its own database connections.", generator.MaxReplicas),
		generator.CheckReplicas)
}

// Port asks for the app's HTTP port.
func (p *Prompter) Port(def int) (int, error) {
	return p.number("HTTP port (1..65535):", def,
		"The port each instance listens on for HTTP.", generator.CheckPort)
}

func (p *Prompter) number(msg string, def int, help string, check func(int) error) (int, error) {
	var s string
	err := p.ask(&survey.Input{Message: msg, Default: strconv.Itoa(def), Help: help}, &s, func(s string) error {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		return check(n)
	})
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(s))
}

// Confirm shows summary and asks whether to go on.
func (p *Prompter) Confirm(summary string) (bool, error) {
	ok := true
	err := p.ask(&survey.Confirm{Message: summary + "\nGenerate it?", Default: true,
		Help: "y writes the project; n ends without writing anything."}, &ok, nil)
	return ok, err
}
