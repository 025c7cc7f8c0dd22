package k8scheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestServerRollout runs reference-app's prod overlay on a real control
// plane of the pinned release (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler) whose nodes are kwok's: fake nodes whose pods run no
// container, and become ready as soon as they are scheduled. It checks what
// only a running cluster shows:
//   - the Deployment becomes available with the answer's replicas, spread
//     over the three zones' nodes;
//   - the PodDisruptionBudget and the HorizontalPodAutoscaler are live: their
//     controllers count the pods (the autoscaler has no metrics server here,
//     and says so in its conditions instead of scaling);
//   - a rolling update to a new image tag completes, and the recorded history
//     of every pod event (a watch, in the API server's order) never has
//     fewer ready pods than replicas once the first rollout was done (what
//     maxUnavailable: 0 promises), nor more than replicas + 2 pods in all,
//     stopping ones included (what the database's connection budget counts:
//     a stopping pod holds its pool until its process exits).
//
// Each deleted pod goes exactly at the end of its grace period: the worst
// case, a pod whose drain takes all the time it is given. To keep the test
// short the grace period is 6 s (more than the preStop sleep, as the API
// server requires) instead of the generated one, and
// minReadySeconds is cut by as much: what matters is their difference.
//
// TestServerRolloutCatches breaks each promise, and the same checks must
// find it.
func TestServerRollout(t *testing.T) {
	c := startControlPlane(t, clusterInstalled(t))
	dir, a := referenceManifests(t)
	docs := splitDocs(t, kustomize(t, c.tools, filepath.Join(dir, "deploy", "k8s", "overlays", "prod")))
	docs = editDeployment(t, docs, func(d object) { shortGrace(t, d, 6) })
	h := c.rollout(t, "shop", docs, a.Replicas)
	if bad := h.belowReplicas(a.Replicas); bad != "" {
		t.Errorf("maxUnavailable: 0, yet %s", bad)
	}
	if bad := h.aboveInAll(a.Replicas + 2); bad != "" {
		t.Errorf("minReadySeconds longer than the grace period, yet %s", bad)
	}
	t.Logf("history: %d pod events; at most %d pods not stopping (replicas %d, maxSurge 1) and %d pods in all, stopping ones included",
		len(h.events), h.maxServing, a.Replicas, h.maxExisting)
}

func TestServerRolloutCatches(t *testing.T) {
	c := startControlPlane(t, clusterInstalled(t))
	dir, a := referenceManifests(t)
	docs := splitDocs(t, kustomize(t, c.tools, filepath.Join(dir, "deploy", "k8s", "overlays", "prod")))
	t.Run("maxUnavailable 1", func(t *testing.T) {
		// One pod at a time is stopped before its replacement is ready.
		broken := editDeployment(t, docs, func(d object) {
			shortGrace(t, d, 6)
			delete(d["spec"].(object), "minReadySeconds") // not needed here: faster
			ru, _ := get(d, "spec", "strategy", "rollingUpdate").(object)
			if ru == nil {
				t.Fatal("the Deployment has no rollingUpdate")
			}
			ru["maxSurge"], ru["maxUnavailable"] = 0, 1
		})
		h := c.rollout(t, "unavailable", broken, a.Replicas)
		bad := h.belowReplicas(a.Replicas)
		if bad == "" {
			t.Fatalf("the history (%d events) never has fewer than %d ready pods: the check cannot fail", len(h.events), a.Replicas)
		}
		t.Logf("caught, as it must be: %s", bad)
	})
	t.Run("no minReadySeconds", func(t *testing.T) {
		// Each old pod is stopped as soon as its replacement is ready, and
		// lingers 10 s: the rollout is over before the first is gone.
		broken := editDeployment(t, docs, func(d object) {
			shortGrace(t, d, 10)
			delete(d["spec"].(object), "minReadySeconds")
		})
		h := c.rollout(t, "stopping", broken, a.Replicas)
		bad := h.aboveInAll(a.Replicas + 2)
		if bad == "" {
			t.Fatalf("the history (%d events) never has more than %d pods: the check cannot fail", len(h.events), a.Replicas+2)
		}
		t.Logf("caught, as it must be: %s", bad)
	})
}

// editDeployment returns docs with the Deployment changed by edit.
func editDeployment(t *testing.T, docs []doc, edit func(object)) []doc {
	t.Helper()
	out := slices.Clone(docs)
	for i, d := range out {
		if d.kind != "Deployment" {
			continue
		}
		var o object
		if err := yaml.Unmarshal(d.yaml, &o); err != nil {
			t.Fatal(err)
		}
		edit(o)
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		out[i].yaml = b
		return out
	}
	t.Fatal("the overlay has no Deployment")
	return nil
}

// shortGrace sets the pods' grace period to seconds and cuts
// minReadySeconds by as much as the grace period was cut (never below 0),
// and has kwok remove each deleted pod at the end of its grace period
// (its delay annotation: a delay past the deadline is the deadline).
func shortGrace(t *testing.T, d object, seconds int) {
	t.Helper()
	podSpec, _ := get(d, "spec", "template", "spec").(object)
	grace, _ := podSpec["terminationGracePeriodSeconds"].(int)
	if grace < seconds {
		t.Fatalf("terminationGracePeriodSeconds %d, want at least %d", grace, seconds)
	}
	podSpec["terminationGracePeriodSeconds"] = seconds
	spec := d["spec"].(object)
	if minReady, ok := spec["minReadySeconds"].(int); ok {
		spec["minReadySeconds"] = max(0, minReady-(grace-seconds))
	}
	meta, _ := get(d, "spec", "template", "metadata").(object)
	annotations, _ := meta["annotations"].(object)
	if annotations == nil {
		annotations = object{}
		meta["annotations"] = annotations
	}
	annotations["pod-delete.stage.kwok.x-k8s.io/delay"] = "1h"
}

// clusterInstalled is serverInstalled for the whole control plane and kwok;
// the rollouts are skipped with -short.
func clusterInstalled(t *testing.T) Tools {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: a rollout takes about a minute")
	}
	tools := installed(t)
	needServer(t, tools.ClusterMissing())
	return tools
}

// controlPlane is an API server with its controllers and scheduler, and
// kwok's controller playing three nodes, one in each zone.
type controlPlane struct {
	*apiServer
	tools Tools
}

// startControlPlane starts the API server (startAPIServer), then the
// controller manager, the scheduler and kwok against it, each with a
// kubeconfig holding the API server's token, then makes three fake nodes
// and waits until kwok has made them ready. Everything stops with the test.
func startControlPlane(t *testing.T, tools Tools) *controlPlane {
	t.Helper()
	s := startAPIServer(t, tools)
	kubeconfig := filepath.Join(s.dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: check
    cluster: {server: %q, insecure-skip-tls-verify: true}
users:
  - name: check
    user: {token: %q}
contexts:
  - name: check
    context: {cluster: check, user: check}
current-context: check
`, s.url, s.token)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 2)
	common := []string{"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1", "--leader-elect=false"}
	startProcess(t, tools.KubeControllerManager, filepath.Join(s.dir, "kube-controller-manager.log"), append(common,
		fmt.Sprintf("--secure-port=%d", ports[0]), "--cert-dir="+filepath.Join(s.dir, "kcm-certs"),
		"--service-account-private-key-file="+s.keyFile,
		// The nodes are kwok's, and this test is about rollouts, not lost
		// nodes: a node that misses a heartbeat on a busy machine is not
		// marked unready (which would make its pods unready too).
		"--node-monitor-grace-period=10m")...)
	startProcess(t, tools.KubeScheduler, filepath.Join(s.dir, "kube-scheduler.log"), append(common,
		fmt.Sprintf("--secure-port=%d", ports[1]), "--cert-dir="+filepath.Join(s.dir, "scheduler-certs"))...)
	startProcess(t, tools.Kwok, filepath.Join(s.dir, "kwok.log"),
		"--kubeconfig="+kubeconfig, "--config="+tools.KwokStages, "--manage-all-nodes=true",
		"--node-lease-duration-seconds=40") // each node renews its Lease, as a kubelet does

	c := &controlPlane{apiServer: s, tools: tools}
	for i, zone := range []string{"a", "b", "c"} {
		name := fmt.Sprintf("node-%d", i)
		node := fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %s
  annotations: {kwok.x-k8s.io/node: fake}
  labels:
    kubernetes.io/hostname: %s
    topology.kubernetes.io/zone: zone-%s
    type: kwok
status:
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
`, name, name, zone)
		c.mustApply(t, "", node)
	}
	c.waitFor(t, "three ready nodes", 60*time.Second, func() (bool, string) {
		var list struct{ Items []object }
		if err := c.get("/api/v1/nodes", &list); err != nil {
			return false, err.Error()
		}
		ready := 0
		var taints []any
		for _, n := range list.Items {
			if condition(n, "Ready") == "True" {
				ready++
			}
			taints = append(taints, asList(get(n, "spec", "taints"))...)
		}
		return ready == 3 && len(taints) == 0, fmt.Sprintf("%d of %d nodes ready; taints %v", ready, len(list.Items), taints)
	})
	return c
}

// rollout applies docs (an overlay's objects) into a new namespace, with
// the Secret the prod overlay expects, waits for the Deployment to be
// available with its replicas and for the disruption budget and the
// autoscaler to be live, then changes the image's tag, applies the
// Deployment again and waits for the rollout to complete. It returns the
// history of the app's pods, recorded from before the first apply.
func (c *controlPlane) rollout(t *testing.T, ns string, docs []doc, replicas int) *history {
	t.Helper()
	c.createNamespace(t, ns)
	// Pods are refused until the namespace's default service account exists:
	// the controller manager makes it.
	c.waitFor(t, "the default service account", 30*time.Second, func() (bool, string) {
		err := c.get("/api/v1/namespaces/"+ns+"/serviceaccounts/default", nil)
		return err == nil, fmt.Sprint(err)
	})
	// What the prod overlay's comment tells the user to create first.
	c.mustApply(t, ns, `apiVersion: v1
kind: Secret
metadata: {name: shop-secrets}
stringData:
  DATABASE_URL: postgres://shop:secret@db.example.com:5432/shop
  REDIS_URL: redis://redis.example.com:6379/0
  S3_ACCESS_KEY: shop
  S3_SECRET_KEY: secret
`)
	var deployment doc
	for _, d := range docs {
		if d.kind == "Deployment" {
			deployment = d
		}
	}
	if deployment.name == "" {
		t.Fatal("the overlay has no Deployment")
	}
	selector := "app.kubernetes.io/name=" + deployment.name + ",app.kubernetes.io/component=app"
	h := c.watchPods(t, ns, selector)

	for _, d := range docs {
		warnings, err := c.applyForReal(ns, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range warnings {
			t.Errorf("%s: the server warns: %s", d.id(), w)
		}
	}
	path := "/apis/apps/v1/namespaces/" + ns + "/deployments/" + deployment.name
	c.waitRolledOut(t, path, replicas, "")

	// Spread over the zones' nodes: ScheduleAnyway is a preference the
	// scheduler weighs with others, but on three empty nodes nothing
	// outweighs it, and a skew over 1 means it was not applied.
	var pods struct{ Items []object }
	if err := c.get("/api/v1/namespaces/"+ns+"/pods?labelSelector="+selector, &pods); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]int{}
	for _, p := range pods.Items {
		nodes[str(p, "spec", "nodeName")]++
	}
	t.Logf("%s: pods per node %v", ns, nodes)
	least, most := replicas, 0
	for _, n := range []string{"node-0", "node-1", "node-2"} {
		least, most = min(least, nodes[n]), max(most, nodes[n])
	}
	if most-least > 1 {
		t.Errorf("%s: pods per node %v: not spread (maxSkew 1)", ns, nodes)
	}

	c.waitFor(t, "the PodDisruptionBudget counting the pods", 30*time.Second, func() (bool, string) {
		var pdb object
		if err := c.get("/apis/policy/v1/namespaces/"+ns+"/poddisruptionbudgets/"+deployment.name, &pdb); err != nil {
			return false, err.Error()
		}
		healthy, _ := get(pdb, "status", "currentHealthy").(float64)
		allowed, _ := get(pdb, "status", "disruptionsAllowed").(float64)
		return int(healthy) == replicas && allowed == 1, fmt.Sprintf("status %v", get(pdb, "status"))
	})
	c.waitFor(t, "the HorizontalPodAutoscaler read by its controller", 60*time.Second, func() (bool, string) {
		var hpa object
		if err := c.get("/apis/autoscaling/v2/namespaces/"+ns+"/horizontalpodautoscalers/"+deployment.name, &hpa); err != nil {
			return false, err.Error()
		}
		current, _ := get(hpa, "status", "currentReplicas").(float64)
		return int(current) == replicas && condition(hpa, "AbleToScale") == "True", fmt.Sprintf("status %v", get(hpa, "status"))
	})

	// The next release: the same Deployment with a new tag, as `kustomize
	// edit set image` and a new apply give.
	var parsed object
	if err := yaml.Unmarshal(deployment.yaml, &parsed); err != nil {
		t.Fatal(err)
	}
	image := str(firstContainer(parsed), "image")
	name, tag, ok := strings.Cut(image, ":")
	if !ok {
		t.Fatalf("the Deployment's image %q has no tag", image)
	}
	next := name + ":" + tag + "-next"
	updated := deployment
	updated.yaml = bytes.Replace(deployment.yaml, []byte("image: "+image), []byte("image: "+next), 1)
	if bytes.Equal(updated.yaml, deployment.yaml) {
		t.Fatalf("no line image: %s in the Deployment", image)
	}
	if _, err := c.applyForReal(ns, updated); err != nil {
		t.Fatal(err)
	}
	c.waitRolledOut(t, path, replicas, next)
	// The watch may lag behind the API server: the history is complete only
	// once it has seen the pods as a list shows them now.
	c.waitFor(t, "the watch to catch up", 30*time.Second, func() (bool, string) {
		var now struct{ Items []object }
		if err := c.get("/api/v1/namespaces/"+ns+"/pods?labelSelector="+selector, &now); err != nil {
			return false, err.Error()
		}
		return h.matches(now.Items), fmt.Sprintf("%d pods listed", len(now.Items))
	})
	h.stop()
	return h
}

// waitRolledOut waits until the Deployment has seen its last change and runs
// replicas pods of it, all updated and available (kubectl rollout status),
// and, when image is set, no pod that is not stopping has another image.
func (c *controlPlane) waitRolledOut(t *testing.T, path string, replicas int, image string) {
	t.Helper()
	c.waitFor(t, "the rollout of "+path, 120*time.Second, func() (bool, string) {
		var d object
		if err := c.get(path, &d); err != nil {
			return false, err.Error()
		}
		n := func(keys ...string) int { f, _ := get(d, keys...).(float64); return int(f) }
		done := n("status", "observedGeneration") >= n("metadata", "generation") &&
			n("status", "replicas") == replicas && n("status", "updatedReplicas") == replicas &&
			n("status", "availableReplicas") == replicas
		if done && image != "" {
			if got := str(firstContainer(d), "image"); got != image {
				return false, "image " + got
			}
		}
		return done, fmt.Sprintf("status %v", get(d, "status"))
	})
}

// firstContainer is the first container of a Deployment's pod template.
func firstContainer(deployment object) object {
	containers, _ := get(deployment, "spec", "template", "spec", "containers").([]any)
	if len(containers) == 0 {
		return nil
	}
	c, _ := containers[0].(object)
	return c
}

// condition is the status of the condition of type typ in o's
// status.conditions, "" when it has none.
func condition(o object, typ string) string {
	conditions, _ := get(o, "status", "conditions").([]any)
	for _, c := range conditions {
		if str(c, "type") == typ {
			return str(c, "status")
		}
	}
	return ""
}

// history is what a watch of the app's pods saw, in the API server's order:
// after each event, how many pods were ready and not stopping, how many were
// not stopping, and how many existed.
type history struct {
	mu          sync.Mutex
	events      []step
	pods        map[string]podState
	maxServing  int
	maxExisting int
	err         error
	cancel      context.CancelFunc
	done        chan struct{}
}

type podState struct{ ready, stopping bool }

type step struct {
	what                     string // "MODIFIED shop-abc (ready, stopping)"
	ready, serving, existing int
}

// watchPods starts a watch of the pods selector selects in ns, from an
// empty list's resourceVersion, so that it sees every pod from its creation.
func (c *controlPlane) watchPods(t *testing.T, ns, selector string) *history {
	t.Helper()
	var list struct {
		Metadata struct{ ResourceVersion string }
		Items    []object
	}
	base := "/api/v1/namespaces/" + ns + "/pods?labelSelector=" + selector
	if err := c.get(base, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) > 0 {
		t.Fatalf("%d pods in %s before anything was applied", len(list.Items), ns)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &history{pods: map[string]podState{}, cancel: cancel, done: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, "GET", c.url+base+"&watch=1&resourceVersion="+list.Metadata.ResourceVersion, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	client := &http.Client{Transport: c.client.Transport} // no timeout: it streams until stopped
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: %s", resp.Status)
	}
	t.Cleanup(h.stop)
	go func() {
		defer close(h.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var ev struct {
				Type   string
				Object object
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				h.fail(fmt.Errorf("watch: %v: %s", err, sc.Bytes()))
				return
			}
			if ev.Type == "ERROR" {
				h.fail(fmt.Errorf("watch: %v", ev.Object))
				return
			}
			h.record(ev.Type, ev.Object)
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			h.fail(fmt.Errorf("watch ended: %v", err))
		}
	}()
	return h
}

func (h *history) record(typ string, pod object) {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := str(pod, "metadata", "name")
	st := podState{ready: condition(pod, "Ready") == "True", stopping: get(pod, "metadata", "deletionTimestamp") != nil}
	if typ == "DELETED" {
		delete(h.pods, name)
	} else {
		h.pods[name] = st
	}
	s := step{what: fmt.Sprintf("%s %s (ready %v, stopping %v)", typ, name, st.ready, st.stopping), existing: len(h.pods)}
	for _, p := range h.pods {
		if !p.stopping {
			s.serving++
			if p.ready {
				s.ready++
			}
		}
	}
	h.events = append(h.events, s)
	h.maxServing = max(h.maxServing, s.serving)
	h.maxExisting = max(h.maxExisting, s.existing)
}

func (h *history) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
	}
}

// matches reports whether the pods the watch has seen so far are those of
// list, in the same states: the history has caught up with the list.
func (h *history) matches(list []object) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(list) != len(h.pods) {
		return false
	}
	for _, p := range list {
		st, ok := h.pods[str(p, "metadata", "name")]
		if !ok || st != (podState{ready: condition(p, "Ready") == "True", stopping: get(p, "metadata", "deletionTimestamp") != nil}) {
			return false
		}
	}
	return true
}

func (h *history) stop() {
	h.cancel()
	<-h.done
}

// belowReplicas describes the first event with fewer than replicas ready
// pods after the first rollout (the first event with replicas ready), and
// the events before it; "" when there is none. A watch that failed is
// reported too: a history with a gap proves nothing.
func (h *history) belowReplicas(replicas int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return h.err.Error()
	}
	first := slices.IndexFunc(h.events, func(e step) bool { return e.ready >= replicas })
	if first < 0 {
		return "the first rollout never completed"
	}
	for i := first; i < len(h.events); i++ {
		if e := h.events[i]; e.ready < replicas {
			return fmt.Sprintf("%d ready pods of %d after event %d of %d:%s", e.ready, replicas, i+1, len(h.events), h.around(i))
		}
	}
	return ""
}

// aboveInAll describes the first event after which more than limit pods
// existed, stopping ones included, and the events before it; "" when there
// is none.
func (h *history) aboveInAll(limit int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return h.err.Error()
	}
	for i, e := range h.events {
		if e.existing > limit {
			return fmt.Sprintf("%d pods in all (%d not stopping) after event %d of %d:%s", e.existing, e.serving, i+1, len(h.events), h.around(i))
		}
	}
	return ""
}

// around lists the events up to i, the four before it included.
func (h *history) around(i int) string {
	var b strings.Builder
	for j := max(0, i-4); j <= i; j++ {
		e := h.events[j]
		fmt.Fprintf(&b, "\n  %d: %s -> ready %d, serving %d, existing %d", j+1, e.what, e.ready, e.serving, e.existing)
	}
	return b.String()
}

// get reads path into v (nil: only the status matters).
func (c *controlPlane) get(path string, v any) error {
	code, body, _, err := c.do("GET", path, "", nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return statusError("GET", path, code, body)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// mustApply stores one object given as YAML.
func (c *controlPlane) mustApply(t *testing.T, ns, manifest string) {
	t.Helper()
	docs := splitDocs(t, []byte(manifest))
	if len(docs) != 1 {
		t.Fatalf("%d objects, want 1", len(docs))
	}
	if _, err := c.applyForReal(ns, docs[0]); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 200 ms until it holds, or fails the test after
// limit with cond's last word on why not.
func (c *controlPlane) waitFor(t *testing.T, what string, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %s", limit, what, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
