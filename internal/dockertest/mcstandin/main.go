// Command mcstandin stands in for MinIO's mc client inside the local stand-in
// of the quay.io/minio/minio image (see scripts/docker-engine.sh). The
// generated docker-compose.yml checks MinIO's health with `mc ready local`;
// the real mc is a large build, and the healthcheck needs only this one
// command, so this program does what it does: ask the server's anonymous
// cluster health endpoint and exit 0 when it answers 200.
//
// It is a stand-in: it proves that the compose file's healthcheck command has
// the shape the image expects and that MinIO answers inside the container,
// not that the upstream mc behaves the same in every case.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"
)

// aliases are the ones the upstream image configures: "local" is the server
// in the same container.
var aliases = map[string]string{
	"local": "http://localhost:9000",
}

func main() {
	if len(os.Args) != 3 || os.Args[1] != "ready" {
		fmt.Fprintln(os.Stderr, "mc (stand-in): only `mc ready ALIAS` is implemented")
		os.Exit(2)
	}
	base, ok := aliases[os.Args[2]]
	if !ok {
		fmt.Fprintf(os.Stderr, "mc (stand-in): unknown alias %q (known: local)\n", os.Args[2])
		os.Exit(2)
	}
	if err := ready(base); err != nil {
		fmt.Fprintln(os.Stderr, "mc (stand-in):", err)
		os.Exit(1)
	}
	fmt.Printf("The cluster '%s' is ready\n", os.Args[2])
}

// ready asks /minio/health/cluster, which answers 200 without credentials
// when the server has write quorum.
func ready(base string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/minio/health/cluster", nil)
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking %s: %w", base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/minio/health/cluster answered %s", base, resp.Status)
	}
	return nil
}
