// Command install installs the tools the k8scheck tests use, at the pinned
// versions, into ~/.cache/scaffold (see k8scheck.Install): kustomize,
// kubeconform and the schemas of the pinned Kubernetes release. `make test`
// runs it first; it installs only what is missing and prints nothing when
// everything is there.
package main

import (
	"fmt"
	"os"

	"github.com/scaffoldhq/scaffold/internal/k8scheck"
)

func main() {
	if _, err := k8scheck.Install(os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
		os.Exit(1)
	}
}
