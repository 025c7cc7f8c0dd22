// Command install installs the tools the k8scheck tests use, at the pinned
// versions, into ~/.cache/scaffold (see k8scheck.Install): kustomize,
// kubeconform and the schemas of the pinned Kubernetes release, and with
// -server also etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// and kwok, built from the Go module proxy (see
// k8scheck.InstallServer). `make test` runs it first, `make
// k8s-server-check` with -server; it installs only what is missing and
// prints nothing when everything is there.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/scaffoldhq/scaffold/internal/k8scheck"
)

func main() {
	server := flag.Bool("server", false, "also build etcd, the Kubernetes control plane and kwok (once; many minutes)")
	flag.Parse()
	if _, err := k8scheck.Install(os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
		os.Exit(1)
	}
	if *server {
		if _, err := k8scheck.InstallServer(os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "k8scheck: %v\n", err)
			os.Exit(1)
		}
	}
}
