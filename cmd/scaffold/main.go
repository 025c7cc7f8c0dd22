// Command scaffold generates a Go web service that is ready to run as several
// instances behind a load balancer. See the README at the repository root.
package main

import (
	"context"
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
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scaffold: "+strings.Join(strings.Fields(err.Error()), " "))
		return 1
	}
	return 0
}
