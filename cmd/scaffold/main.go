// Command scaffold generates a Go web service that is ready to run as several
// instances behind a load balancer. See the README at the repository root.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
)

func main() {
	os.Exit(main1())
}

// main1 is main without the exit, so that tests can run the command in
// process (see testscript in main_test.go).
func main1() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "scaffold: "+strings.Join(strings.Fields(err.Error()), " "))
	// 130 (128 + SIGINT) is what shells and other tools exit with after
	// Ctrl-C, at a prompt or while writing.
	if errors.Is(err, errInterrupted) || errors.Is(err, context.Canceled) {
		return 130
	}
	return 1
}
