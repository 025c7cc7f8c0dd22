// Package k8scheck checks the Kubernetes manifests of the k8s feature: every
// overlay of every combination with k8s (and of reference-app) is rendered by
// the real kustomize and validated strictly by kubeconform against JSON
// schemas made from the OpenAPI document of a pinned Kubernetes release. The
// tests are in k8scheck_test.go; this file pins the tools and installs them,
// `go run ./internal/k8scheck/install` (which `make test` runs first).
//
// What this catches: a removed or misspelt API version or kind (no schema
// for it), a field of the wrong type, a field that does not exist, a missing
// required field. What it does not: anything only the API server checks (a
// selector that does not match the pod labels, the API's validation rules,
// admission). For that, server_test.go applies every overlay with a
// server-side dry run to a real kube-apiserver (and etcd) of the pinned
// release, which InstallServer builds from the Go module proxy.
package k8scheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The pinned versions. kustomize v5.8.3 needs Go 1.27; v5.8.2 builds with
// the Go of these machines. The schemas come from the api/openapi-spec of the
// k8s.io/kubernetes module, which the Go module proxy serves (GitHub, where
// kubeconform downloads its schemas from by default, is not reachable).
const (
	KustomizeVersion   = "v5.8.2"
	KubeconformVersion = "v0.8.0"
	KubernetesVersion  = "v1.37.2"
	EtcdVersion        = "v3.7.3"
	KwokVersion        = "v0.8.0"
)

// Tools are the paths of the installed tools and schemas.
type Tools struct {
	Kustomize   string // the binary
	Kubeconform string // the binary
	Schemas     string // a directory of <kind>-<group>-<version>.json

	// The API server and its store, for the server-side dry run; built by
	// InstallServer, not Install.
	Etcd          string // the binary
	KubeAPIServer string // the binary, of KubernetesVersion

	// The rest of a control plane, for the rollout on fake nodes: the
	// controllers and the scheduler of KubernetesVersion, and kwok's
	// controller, which plays the nodes and the pods' lifecycle.
	KubeControllerManager string
	KubeScheduler         string
	Kwok                  string
	KwokStages            string // the controller's config: its stages
}

// Paths are where Install puts the tools: under the user's cache directory
// (~/.cache/scaffold on Linux), each with its version in the path, so a new
// version never reuses an old build.
func Paths() (Tools, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return Tools{}, fmt.Errorf("finding the cache directory: %w", err)
	}
	base := filepath.Join(cache, "scaffold")
	return Tools{
		Kustomize:   filepath.Join(base, "kustomize", KustomizeVersion, "kustomize"),
		Kubeconform: filepath.Join(base, "kubeconform", KubeconformVersion, "kubeconform"),
		Schemas:     filepath.Join(base, "k8s-schemas", KubernetesVersion),

		Etcd:          filepath.Join(base, "etcd", EtcdVersion, "etcd"),
		KubeAPIServer: filepath.Join(base, "kube-apiserver", KubernetesVersion, "kube-apiserver"),

		KubeControllerManager: filepath.Join(base, "kube-controller-manager", KubernetesVersion, "kube-controller-manager"),
		KubeScheduler:         filepath.Join(base, "kube-scheduler", KubernetesVersion, "kube-scheduler"),
		Kwok:                  filepath.Join(base, "kwok", KwokVersion, "kwok"),
		KwokStages:            filepath.Join(base, "kwok", KwokVersion, "stages.yaml"),
	}, nil
}

// Missing lists what Install installs and is not there, for a message.
func (t Tools) Missing() []string {
	missing := missingBinaries(t.Kustomize, t.Kubeconform)
	if _, err := os.Stat(filepath.Join(t.Schemas, completeMarker)); err != nil {
		missing = append(missing, t.Schemas)
	}
	return missing
}

// ServerMissing lists what InstallServer installs and is not there.
func (t Tools) ServerMissing() []string {
	return missingBinaries(t.Etcd, t.KubeAPIServer)
}

// ClusterMissing lists what InstallServer installs for the rollout and is
// not there: the API server and etcd, and the rest of the control plane.
func (t Tools) ClusterMissing() []string {
	missing := missingBinaries(t.Etcd, t.KubeAPIServer, t.KubeControllerManager, t.KubeScheduler, t.Kwok)
	if _, err := os.Stat(t.KwokStages); err != nil {
		missing = append(missing, t.KwokStages)
	}
	return missing
}

func missingBinaries(paths ...string) []string {
	var missing []string
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	return missing
}

// completeMarker is written last into the schema directory: a conversion
// cut short leaves no marker and is done again.
const completeMarker = ".complete"

// Install installs what of Paths is missing: kustomize and kubeconform with
// `go install` (GOBIN in the cache), and the schemas converted from the
// swagger.json of k8s.io/kubernetes, downloaded with `go mod download`.
// Progress goes to log; with everything in place it prints nothing.
func Install(log io.Writer) (Tools, error) {
	t, err := Paths()
	if err != nil {
		return t, err
	}
	for _, tool := range []struct{ bin, pkg string }{
		{t.Kustomize, "sigs.k8s.io/kustomize/kustomize/v5@" + KustomizeVersion},
		{t.Kubeconform, "github.com/yannh/kubeconform/cmd/kubeconform@" + KubeconformVersion},
	} {
		if _, err := os.Stat(tool.bin); err == nil {
			continue
		}
		fmt.Fprintf(log, "k8scheck: go install %s\n", tool.pkg)
		if err := goCommand(filepath.Dir(tool.bin), "install", tool.pkg); err != nil {
			return t, err
		}
	}
	if _, err := os.Stat(filepath.Join(t.Schemas, completeMarker)); err == nil {
		return t, nil
	}
	fmt.Fprintf(log, "k8scheck: go mod download k8s.io/kubernetes@%s, then converting its OpenAPI schemas into %s\n", KubernetesVersion, t.Schemas)
	dir, err := downloadModule("k8s.io/kubernetes@" + KubernetesVersion)
	if err != nil {
		return t, err
	}
	swagger, err := os.ReadFile(filepath.Join(dir, "api", "openapi-spec", "swagger.json"))
	if err != nil {
		return t, fmt.Errorf("reading the OpenAPI document of k8s.io/kubernetes: %w", err)
	}
	if err := os.RemoveAll(t.Schemas); err != nil {
		return t, err
	}
	if err := ConvertSchemas(swagger, t.Schemas); err != nil {
		return t, fmt.Errorf("converting the schemas of k8s.io/kubernetes@%s: %w", KubernetesVersion, err)
	}
	return t, os.WriteFile(filepath.Join(t.Schemas, completeMarker), nil, 0o644)
}

// goCommand runs `go ARGS` with GOBIN=gobin, outside any module (the tools'
// own go.mod decides their dependencies, not scaffold's).
func goCommand(gobin string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// goIn runs `go ARGS` in dir (a module of its own), showing nothing unless it
// fails.
func goIn(dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

// downloadModule puts module@version into the module cache (once) and
// returns its directory there.
func downloadModule(modVersion string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &info); jsonErr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("go mod download %s: %w\n%s", modVersion, err, exit.Stderr)
		}
		return "", fmt.Errorf("go mod download %s: %w", modVersion, err)
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no directory in %s", modVersion, out)
	}
	return info.Dir, nil
}
