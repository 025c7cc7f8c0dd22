package k8scheck

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
)

// InstallServer builds what of etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok is missing from Paths, at the pinned versions, from
// the Go module proxy. etcd and the Kubernetes commands do not build
// with `go install module@version` (their go.mod files have replace
// directives), so each is built in a wrapper module made in a temporary
// directory: one that requires the module, names the command as a tool and
// is tidied; for the Kubernetes commands it also repeats k8s.io/kubernetes's replace
// directives, which point its staging modules (k8s.io/api, k8s.io/client-go,
// ...) at its own tree, as the published versions of those modules
// (v0.MINOR.PATCH). The binary is built into a temporary file beside its
// final path and renamed there: an interrupted build never leaves a partial
// binary where Paths says (a leftover .partial file is removed by the next
// install). Progress goes to log; with everything in place it prints nothing.
//
// The first build is long: on 2 cores shared with other jobs kube-apiserver
// took 34 minutes (20 minutes of CPU time), etcd 3.5 (5.5 with an empty Go
// build cache); see the README.
// That is why make k8s-server-check, not make test, runs this.
func InstallServer(log io.Writer) (Tools, error) {
	t, err := Paths()
	if err != nil {
		return t, err
	}
	if _, err := os.Stat(t.Etcd); err != nil {
		goMod := wrapperGoMod("scaffold.invalid/etcd", "go.etcd.io/etcd/server/v3", EtcdVersion, "", nil)
		if err := buildWrapped(log, t.Etcd, goMod, "go.etcd.io/etcd/server/v3", ""); err != nil {
			return t, err
		}
	}
	for _, c := range []struct{ bin, pkg string }{
		{t.KubeAPIServer, "k8s.io/kubernetes/cmd/kube-apiserver"},
		{t.KubeControllerManager, "k8s.io/kubernetes/cmd/kube-controller-manager"},
		{t.KubeScheduler, "k8s.io/kubernetes/cmd/kube-scheduler"},
	} {
		if _, err := os.Stat(c.bin); err == nil {
			continue
		}
		replaces, godebug, err := kubernetesReplaces()
		if err != nil {
			return t, err
		}
		goMod := wrapperGoMod("scaffold.invalid/"+filepath.Base(c.bin), "k8s.io/kubernetes", KubernetesVersion, godebug, replaces)
		// Without the version the binary calls itself v0.0.0-master, which
		// clients (kubectl version) cannot parse and which decides the
		// server's emulated version.
		major, minor, _ := strings.Cut(strings.TrimPrefix(KubernetesVersion, "v"), ".")
		minor, _, _ = strings.Cut(minor, ".")
		ldflags := fmt.Sprintf("-X k8s.io/component-base/version.gitVersion=%s -X k8s.io/component-base/version.gitMajor=%s -X k8s.io/component-base/version.gitMinor=%s",
			KubernetesVersion, major, minor)
		if err := buildWrapped(log, c.bin, goMod, c.pkg, ldflags); err != nil {
			return t, err
		}
	}
	// kwok's go.mod has no replace directive: go install builds it. Its
	// controller does nothing without stages (the rules by which it moves
	// nodes and pods from one state to the next); kwokctl writes its default
	// ones into the controller's config, and so does this, from the same
	// module, into the file ClusterMissing looks for.
	if _, err := os.Stat(t.KwokStages); err != nil {
		if err := writeKwokStages(t.KwokStages); err != nil {
			return t, err
		}
	}
	if _, err := os.Stat(t.Kwok); err != nil {
		pkg := "sigs.k8s.io/kwok/cmd/kwok@" + KwokVersion
		fmt.Fprintf(log, "k8scheck: go install %s\n", pkg)
		if err := goCommand(filepath.Dir(t.Kwok), "install", pkg); err != nil {
			return t, err
		}
	}
	return t, nil
}

// kwokStages are kwokctl's default stages for a cluster whose nodes renew
// leases (nodes become ready and keep a lease; pods become ready at once and
// those of a Job finish), except how a deleted pod goes: kwokctl's removes
// it at once, the "general" one at a random moment within its grace period,
// as a real pod whose process takes time to drain and exit. A rollout then
// shows what it does with pods that are stopping.
var kwokStages = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/general/pod-delete.yaml",
}

// writeKwokStages writes kwokStages, from the kwok module at KwokVersion,
// into one file of YAML documents.
func writeKwokStages(file string) error {
	dir, err := downloadModule("sigs.k8s.io/kwok@" + KwokVersion)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, name := range kwokStages {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("kwok's stages: %w", err)
		}
		fmt.Fprintf(&b, "---\n# %s of sigs.k8s.io/kwok@%s\n%s", name, KwokVersion, data)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(b.String()), 0o644)
}

// kubernetesReplaces reads the go.mod of k8s.io/kubernetes at
// KubernetesVersion and returns its replace directives for its staging
// modules (./staging/src/k8s.io/NAME), each turned into NAME at the
// published version v0.MINOR.PATCH, and its godebug default.
func kubernetesReplaces() (replaces []string, godebug string, err error) {
	dir, err := downloadModule("k8s.io/kubernetes@" + KubernetesVersion)
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, "", err
	}
	f, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		return nil, "", fmt.Errorf("k8s.io/kubernetes@%s: %w", KubernetesVersion, err)
	}
	staging := "v0" + strings.TrimPrefix(KubernetesVersion, "v1")
	for _, r := range f.Replace {
		if strings.HasPrefix(r.New.Path, "./staging/") {
			replaces = append(replaces, r.Old.Path+" => "+r.Old.Path+" "+staging)
		}
	}
	if len(replaces) == 0 {
		return nil, "", fmt.Errorf("k8s.io/kubernetes@%s: no replace directive for a staging module in its go.mod", KubernetesVersion)
	}
	for _, d := range f.Godebug {
		if d.Key == "default" {
			godebug = d.Value
		}
	}
	return replaces, godebug, nil
}

// wrapperGoMod is the go.mod of a module that builds the tool in module
// (a command of it) at version.
func wrapperGoMod(name, module, version, godebug string, replaces []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "module %s\n\ngo 1.26.0\n\n", name)
	if godebug != "" {
		fmt.Fprintf(&b, "godebug default=%s\n\n", godebug)
	}
	fmt.Fprintf(&b, "require %s %s\n", module, version)
	if len(replaces) > 0 {
		b.WriteString("\nreplace (\n")
		for _, r := range replaces {
			fmt.Fprintf(&b, "\t%s\n", r)
		}
		b.WriteString(")\n")
	}
	return b.String()
}

// buildWrapped builds the command pkg in a temporary module with goMod
// (plus a tool directive for pkg, then tidied) into bin: first into a
// temporary file in bin's directory, then renamed.
func buildWrapped(log io.Writer, bin, goMod, pkg, ldflags string) error {
	start := time.Now()
	name := filepath.Base(bin)
	dir := filepath.Dir(bin)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stale, _ := filepath.Glob(filepath.Join(dir, "."+name+"-*.partial"))
	for _, p := range stale {
		os.Remove(p)
	}
	work, err := os.MkdirTemp("", "scaffold-"+name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(goMod+"\ntool "+pkg+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(log, "k8scheck: building %s from %s (once; kube-apiserver takes many minutes)\n", bin, pkg)
	if err := goIn(work, "mod", "tidy"); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+"-*.partial")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // nothing left once renamed
	args := []string{"build", "-o", tmp.Name()}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	if err := goIn(work, append(args, pkg)...); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return err
	}
	fmt.Fprintf(log, "k8scheck: built %s in %s\n", bin, time.Since(start).Round(time.Second))
	return nil
}
