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
	"github.com/AlecAivazis/survey/v2/terminal"

	"github.com/scaffoldhq/scaffold/generator"
)

// ErrInterrupted is returned when the user presses Ctrl-C at a question.
var ErrInterrupted = errors.New("interrupted")

// Prompter asks questions on one terminal.
type Prompter struct {
	opts []survey.AskOpt
}

// New returns a Prompter reading in and drawing on out. Passing the streams
// (rather than survey using os.Stdin) is what lets a pseudo-terminal test
// drive it.
func New(in terminal.FileReader, out terminal.FileWriter, errOut io.Writer) *Prompter {
	return &Prompter{opts: []survey.AskOpt{survey.WithStdio(in, out, errOut)}}
}

func (p *Prompter) ask(q survey.Prompt, answer any, check func(string) error) error {
	opts := p.opts
	if check != nil {
		opts = append(opts[:len(opts):len(opts)], survey.WithValidator(func(ans any) error {
			s, _ := ans.(string)
			return check(s)
		}))
	}
	err := survey.AskOne(q, answer, opts...)
	if errors.Is(err, terminal.InterruptErr) {
		return ErrInterrupted
	}
	return err
}

// Name asks for the project name.
func (p *Prompter) Name(def string) (string, error) {
	var s string
	err := p.ask(&survey.Input{Message: "Project name:", Default: def,
		Help: "Lowercase letters, digits and '-'; used for the binary, the service and the compose project."},
		&s, generator.CheckName)
	return s, err
}

// Module asks for the Go module path.
func (p *Prompter) Module(def string) (string, error) {
	var s string
	err := p.ask(&survey.Input{Message: "Go module path:", Default: def,
		Help: "Where the code will live, as in go.mod, e.g. github.com/acme/shop."},
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
	err := p.ask(&survey.MultiSelect{
		Message:     "Features:",
		Options:     generator.FeatureNames(),
		Default:     def,
		Description: func(value string, _ int) string { return desc[value] },
	}, &picked, nil)
	return picked, err
}

// LB asks for the load balancer.
func (p *Prompter) LB(def string) (string, error) {
	var s string
	err := p.ask(&survey.Select{Message: "Load balancer:", Options: generator.LBs, Default: def}, &s, nil)
	return s, err
}

// Replicas asks for the number of app instances.
func (p *Prompter) Replicas(def int) (int, error) {
	return p.number("App instances behind the load balancer:", def, generator.CheckReplicas)
}

// Port asks for the app's HTTP port.
func (p *Prompter) Port(def int) (int, error) {
	return p.number("HTTP port:", def, generator.CheckPort)
}

func (p *Prompter) number(msg string, def int, check func(int) error) (int, error) {
	var s string
	err := p.ask(&survey.Input{Message: msg, Default: strconv.Itoa(def)}, &s, func(s string) error {
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
	err := p.ask(&survey.Confirm{Message: summary + "\nGenerate it?", Default: true}, &ok, nil)
	return ok, err
}
