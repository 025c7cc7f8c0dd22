// Command server runs the shop service.
//
//	server              serve HTTP (the default)
//	server healthcheck  exit 0 when the local instance is ready (for Docker's
//	                    HEALTHCHECK, which then needs no shell or curl)
//	server migrate      apply database migrations and exit
//	server jobs         print the queue's jobs by state and the latest failed ones
//	server version      print the version, VCS revision and Go version
//	server help         print the commands and the environment variables
//
// Settings come from environment variables; see the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"text/tabwriter"
	"time"

	"example.com/acme/shop/config"
	"example.com/acme/shop/httpapi"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(exitCode(err))
	}
}

// usageError is a command line that names no command: exit status 2, as
// for flag errors.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// commands are what `server help` lists, in that order. Those with a run
// func need the configuration; help and version answer without it.
var commands = []struct {
	name, summary string
	run           func(context.Context, config.Config, *slog.Logger) error
}{
	{"serve", "serve HTTP (the default)", serve},
	{"healthcheck", "exit 0 when the instance on this host answers /readyz with 200", healthcheck},
	{"migrate", "apply pending database migrations and exit", migrate},
	{"jobs", "print the queue's jobs by state and the latest failed ones", jobs},
	{"version", "print the version, VCS revision and Go version", nil},
	{"help", "print this help (also -h, --help)", nil},
}

// run is the whole program. It returns when ctx is cancelled (SIGTERM) and
// the server has drained, so tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	command := "serve"
	if len(args) > 1 {
		command = args[1]
	}
	// help and version answer before the configuration is read: they must
	// work where it is not set (DATABASE_URL, say).
	switch command {
	case "help", "-h", "-help", "--help":
		return usage(stdout, args[0])
	case "version", "--version":
		return printVersion(stdout)
	}
	var runCommand func(context.Context, config.Config, *slog.Logger) error
	for _, c := range commands {
		if c.name == command {
			runCommand = c.run
		}
	}
	if runCommand == nil {
		return usageError{fmt.Sprintf("unknown command %q: run %q for the commands", command, filepath.Base(args[0])+" --help")}
	}

	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var handler slog.Handler = slog.NewJSONHandler(stdout, opts)
	if cfg.LogFormat == "text" {
		handler = slog.NewTextHandler(stdout, opts)
	}
	log := slog.New(handler).With("instance_id", cfg.InstanceID)
	return runCommand(ctx, cfg, log)
}

// usage prints the commands and the environment variables with their
// defaults, from config.Vars: the list Load itself reads.
func usage(w io.Writer, program string) error {
	name := filepath.Base(program)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Usage: %s [command]\n\nCommands:\n", name)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "\nEnvironment variables (README.md, Configuration, says what each does):\n")
	for _, v := range config.Vars() {
		def := v.Default
		switch {
		case v.Required:
			def = "required"
		case def == "":
			def = "empty"
		}
		if v.ClusterDefault != "" {
			def += ", " + v.ClusterDefault + " when CLUSTER_MODE=true"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", v.Name, def)
	}
	return tw.Flush()
}

// printVersion prints what the binary was built from: the version given with
// -ldflags, the module version and VCS revision that `go build` records in
// a git checkout, and the Go version.
func printVersion(w io.Writer) error {
	module, revision, modified := "unknown", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		module = bi.Main.Path + " " + bi.Main.Version
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				revision = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				modified = " (modified)"
			}
		}
	}
	revision += modified
	_, err := fmt.Fprintf(w, "version:  %s\nmodule:   %s\nrevision: %s\ngo:       %s\n", version, module, revision, runtime.Version())
	return err
}

// serve builds the dependencies, serves HTTP until ctx is done, then shuts
// down in the order that loses no request. Each feature's wiring is in
// cmd/server/<feature>.go: it opens its client, adds its routes and
// readiness checks to opts, and returns what releases it. The deferred
// releases run after listenAndServe has drained, in reverse order, so no
// request in flight loses its connection.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	opts := httpapi.Options{
		Logger:       log,
		InstanceID:   cfg.InstanceID,
		Version:      version,
		MaxBodyBytes: cfg.MaxBodyBytes,
	}

	db, err := openDB(ctx, cfg, log, &opts)
	if err != nil {
		return err
	}
	defer db.Close()

	closeCache, err := openCache(cfg, log, &opts, db.notes)
	if err != nil {
		return err
	}
	defer closeCache()

	waitWorker := startWorker(ctx, cfg, log, &opts, db.DB)
	defer waitWorker()

	openLocks(&opts, db)

	waitQueue, err := startQueue(ctx, cfg, log, db)
	if err != nil {
		return err
	}
	defer waitQueue()

	closeEvents, err := openEvents(ctx, cfg, log, &opts, db.notes)
	if err != nil {
		return err
	}
	defer closeEvents()

	closeFiles, err := openFiles(ctx, cfg, log, &opts)
	if err != nil {
		return err
	}
	defer closeFiles()

	srv := httpapi.New(opts)
	return listenAndServe(ctx, cfg, log, srv)
}

func listenAndServe(ctx context.Context, cfg config.Config, log *slog.Logger, srv *httpapi.Server) error {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.Port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "version", version, "cluster_mode", cfg.Cluster)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Readiness goes 503 first and every answer closes its connection, so
	// the load balancer moves new requests elsewhere while this instance
	// still answers the ones on their way. Idle connections stay open for
	// now: a load balancer may be writing a request on one this very
	// moment, and a POST cut off after it was sent cannot be resent.
	// (http.Server.SetKeepAlivesEnabled(false) would close them at once.)
	log.Info("draining", "delay", cfg.DrainDelay.String())
	srv.Drain()
	time.Sleep(cfg.DrainDelay)

	// Then the listener and the idle connections close - by now the load
	// balancer has stopped using them - and in-flight requests finish.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		// Requests still running after SHUTDOWN_TIMEOUT: close their
		// connections, which cancels their contexts, so that closing the
		// database pool (deferred above) does not wait for them forever.
		log.Warn("requests still running after SHUTDOWN_TIMEOUT; closing their connections")
		_ = hs.Close()
		<-served
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// healthcheck asks the instance on this host whether it is ready. It logs
// nothing: its exit status is the answer.
func healthcheck(ctx context.Context, cfg config.Config, _ *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", cfg.Port)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}
