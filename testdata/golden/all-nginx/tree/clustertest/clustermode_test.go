package clustertest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"example.com/acme/shop/testsupport"
)

// Hazard: a single-node default in a cluster. Each of these settings has a
// default that works on one machine only (or none at all); an instance
// started in cluster mode without it must stop at once with a message that
// names the variable, instead of serving with state of its own.
func TestClusterModeRefusesSingleNodeDefaults(t *testing.T) {
	p, err := loadCompose()
	if err != nil {
		t.Fatal(err)
	}
	compose := p.Services[p.Apps[0]].Environment
	if compose["CLUSTER_MODE"] != "true" {
		t.Fatalf("docker-compose.yml: %s has CLUSTER_MODE=%q, want \"true\"", p.Apps[0], compose["CLUSTER_MODE"])
	}
	bin := appBinary(t)

	for _, name := range []string{
		"DATABASE_URL", // db: no single-node default at all
		"REDIS_URL",    // cache: the in-memory cache is per instance
		"S3_ENDPOINT",  // blob: a local directory is per instance
	} {
		t.Run("without "+name, func(t *testing.T) {
			// The compose environment as it is (its host names do not
			// resolve here, which does not matter: the config is refused
			// before anything connects), minus one setting.
			var env []string
			for k, v := range compose {
				switch k {
				case name:
				case "PORT":
					env = append(env, "PORT="+strconv.Itoa(testsupport.FreePort(t)))
				default:
					env = append(env, k+"="+v)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = env
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			switch {
			case ctx.Err() != nil:
				t.Fatalf("the instance was still running after 20s without %s; output:\n%s", name, out.String())
			case !errors.As(err, &exit):
				t.Fatalf("run: %v", err)
			}
			if !bytes.Contains(out.Bytes(), []byte(name)) {
				t.Errorf("exit code %d, but the output does not name %s:\n%s", exit.ExitCode(), name, out.String())
			}
			t.Logf("exit %d: %s", exit.ExitCode(), bytes.TrimSpace(out.Bytes()))
		})
	}
}
