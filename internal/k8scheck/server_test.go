package k8scheck

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/scaffoldhq/scaffold/generator"
)

// serverInstalled returns the tools with etcd and kube-apiserver, or skips
// the test when those two are missing. Building them takes too long for
// make test (see the README), so they are built by make k8s-server-check,
// which sets K8S_SERVER_CHECK: then a missing one fails the test, as CI
// does for the other tools. make test runs these tests when the two are
// there.
func serverInstalled(t *testing.T) Tools {
	t.Helper()
	tools := installed(t)
	needServer(t, tools.ServerMissing())
	return tools
}

// needServer skips the test, or fails it with K8S_SERVER_CHECK set, when
// missing names a binary.
func needServer(t *testing.T, missing []string) {
	t.Helper()
	if len(missing) > 0 {
		msg := fmt.Sprintf("not installed: %s (`make k8s-server-check` builds them, once, and runs this test)", strings.Join(missing, ", "))
		if os.Getenv("K8S_SERVER_CHECK") != "" {
			t.Fatal(msg + " (K8S_SERVER_CHECK is set: not skipped)")
		}
		t.Skip(msg)
	}
}

// TestServerDryRun applies every overlay that TestManifests renders (both
// overlays of reference-app and of every combination with k8s) to a real
// kube-apiserver of the pinned release, as a server-side apply with
// dryRun=All: the server decodes each object strictly, defaults it, runs
// the API's validation (a selector that does not match the pod template's
// labels, a port out of range, an invalid name) and the admission plugins,
// and stores nothing.
func TestServerDryRun(t *testing.T) {
	tools := serverInstalled(t)
	s := startAPIServer(t, tools)
	ns := s.createNamespace(t, "scaffold-check")
	eachProject(t, func(t *testing.T, dir string, a generator.Answers) {
		for _, overlay := range overlays {
			t.Run(overlay, func(t *testing.T) {
				docs := splitDocs(t, kustomize(t, tools, filepath.Join(dir, "deploy", "k8s", "overlays", overlay)))
				if len(docs) == 0 {
					t.Fatal("kustomize printed no object")
				}
				for _, d := range docs {
					warnings, err := s.apply(ns, d)
					if err != nil {
						t.Error(err)
					}
					for _, w := range warnings {
						t.Errorf("%s: the server warns: %s", d.id(), w)
					}
				}
				t.Logf("%d objects applied (dry run)", len(docs))
			})
		}
	})
}

// TestServerRefuses shows that the server-side dry run can fail, on what
// kubeconform catches too (a removed API version, a field that does not
// exist, a wrong type) and on what it cannot: a selector that does not
// select the pod template's labels. A good manifest beside them passes.
func TestServerRefuses(t *testing.T) {
	tools := serverInstalled(t)
	s := startAPIServer(t, tools)
	ns := s.createNamespace(t, "scaffold-refuses")
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"good", goodDeployment, ""},
		{"selector mismatch", strings.Replace(goodDeployment, "labels: {app: good}", "labels: {app: other}", 1), "`selector` does not match template `labels`"},
		{"unknown field", strings.Replace(goodDeployment, "replicas: 2", "replicas: 2\n  replica: 2", 1), ".spec.replica: field not declared in schema"},
		{"wrong type", strings.Replace(goodDeployment, "replicas: 2", `replicas: "two"`, 1), ".spec.replicas: expected numeric"},
		{"removed API", removedHPA, "the server could not find the requested resource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs := splitDocs(t, []byte(tc.manifest))
			if len(docs) != 1 {
				t.Fatalf("%d objects, want 1", len(docs))
			}
			warnings, err := s.apply(ns, docs[0])
			if tc.want == "" {
				if err != nil || len(warnings) > 0 {
					t.Errorf("a good manifest: %v, warnings %q", err, warnings)
				}
				return
			}
			t.Logf("%v", err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a refusal that mentions %q", err, tc.want)
			}
		})
	}
}

// doc is one object of a manifest: its YAML as written (re-encoded from
// its node, so the server reads the same scalars kubectl would send) and
// the fields that name it.
type doc struct {
	yaml                   []byte
	apiVersion, kind, name string
}

func (d doc) id() string { return d.apiVersion + " " + d.kind + " " + d.name }

func splitDocs(t *testing.T, manifests []byte) []doc {
	t.Helper()
	var docs []doc
	dec := yaml.NewDecoder(bytes.NewReader(manifests))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("manifest: %v", err)
		}
		var o object
		if err := n.Decode(&o); err != nil {
			t.Fatalf("manifest: %v", err)
		}
		if o == nil {
			continue
		}
		b, err := yaml.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, doc{b, str(o, "apiVersion"), str(o, "kind"), str(o, "metadata", "name")})
	}
}

// apiServer is a kube-apiserver started by startAPIServer, and what was
// learnt from its discovery documents.
type apiServer struct {
	url, token string
	client     *http.Client
	dir        string // its data, certificates and logs
	keyFile    string // the service accounts' signing key

	mu        sync.Mutex
	discovery map[string]discovered // by apiVersion
}

type discovered struct {
	resources []struct {
		Name, Kind string
		Namespaced bool
	}
	err error
}

// startAPIServer starts etcd and kube-apiserver on free loopback ports with
// their data in a temporary directory, waits until the API server is
// ready, and stops both (by PID) when the test ends, pass or fail; on a
// failure the test's log shows the end of each one's log.
//
// Clients authenticate with a token of the group system:masters; the
// authorizer is RBAC (with AlwaysAllow, kube-apiserver refuses to start
// while anonymous requests are on). The service account flags are required;
// the key is made here. No controller runs: a dry run needs none.
func startAPIServer(t *testing.T, tools Tools) *apiServer {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 3)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	etcd := startProcess(t, tools.Etcd, filepath.Join(dir, "etcd.log"),
		"--name=check", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=check="+peerURL,
		"--unsafe-no-fsync") // a throwaway store: no need to wait for the disk

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "service-account.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	rand.Read(secret)
	token := hex.EncodeToString(secret)
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+`,scaffold-check,scaffold-check,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &apiServer{
		url:   fmt.Sprintf("https://127.0.0.1:%d", ports[2]),
		token: token,
		client: &http.Client{
			Timeout: 30 * time.Second,
			// The server's certificate is the self-signed one it makes at
			// start, for a server this test started on loopback.
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		},
		discovery: map[string]discovered{},
		dir:       dir,
		keyFile:   keyFile,
	}
	apiserver := startProcess(t, tools.KubeAPIServer, filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[2]),
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none", // no Endpoints for a loopback address (refused by validation)
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+tokenFile, "--anonymous-auth=false",
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+keyFile, "--service-account-signing-key-file="+keyFile,
		"--service-cluster-ip-range=10.96.0.0/16",
	)
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		code, body, _, err := s.do("GET", "/readyz", "", nil)
		if err == nil && code == http.StatusOK {
			return s
		}
		last = fmt.Sprintf("%d %s %v", code, body, err)
		select {
		case <-apiserver.exited:
			t.Fatalf("kube-apiserver exited before it was ready: %v (its log is below)", apiserver.err)
		case <-etcd.exited:
			t.Fatalf("etcd exited before kube-apiserver was ready: %v (its log is below)", etcd.err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 90 s; /readyz: %s", last)
		}
	}
}

// do sends a request with the token and returns the status, the body and
// the server's warnings (Warning headers).
func (s *apiServer) do(method, path, contentType string, body []byte) (int, []byte, []string, error) {
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var warnings []string
	for _, w := range resp.Header.Values("Warning") {
		// RFC 7234: 299 - "text"; keep the text.
		if _, text, ok := strings.Cut(w, ` - "`); ok {
			w = strings.TrimSuffix(text, `"`)
		}
		warnings = append(warnings, w)
	}
	return resp.StatusCode, b, warnings, err
}

// statusError is the server's refusal: its Status message when the body is
// one, the body otherwise.
func statusError(method, path string, code int, body []byte) error {
	var st struct{ Kind, Reason, Message string }
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		return fmt.Errorf("%s %s: %d %s: %s", method, path, code, st.Reason, st.Message)
	}
	return fmt.Errorf("%s %s: %d: %s", method, path, code, bytes.TrimSpace(body))
}

// createNamespace creates a namespace for real: namespaced objects need one
// that exists, even in a dry run.
func (s *apiServer) createNamespace(t *testing.T, name string) string {
	t.Helper()
	body := fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, name)
	code, resp, _, err := s.do("POST", "/api/v1/namespaces", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusCreated {
		t.Fatal(statusError("POST", "/api/v1/namespaces", code, resp))
	}
	return name
}

// resource finds the path of kind's collection in apiVersion from the
// server's discovery document for that group and version (asked once).
// An API version the server does not serve is the server's 404.
func (s *apiServer) resource(apiVersion, kind, namespace string) (string, error) {
	prefix := "/apis/" + apiVersion
	if apiVersion == "v1" {
		prefix = "/api/v1"
	}
	s.mu.Lock()
	d, ok := s.discovery[apiVersion]
	s.mu.Unlock()
	if !ok {
		code, body, _, err := s.do("GET", prefix, "", nil)
		switch {
		case err != nil:
			d.err = err
		case code != http.StatusOK:
			d.err = statusError("GET", prefix, code, body)
		default:
			var list struct {
				Resources []struct {
					Name, Kind string
					Namespaced bool
				}
			}
			if err := json.Unmarshal(body, &list); err != nil {
				d.err = fmt.Errorf("GET %s: %v", prefix, err)
			}
			d.resources = list.Resources
		}
		s.mu.Lock()
		s.discovery[apiVersion] = d
		s.mu.Unlock()
	}
	if d.err != nil {
		return "", fmt.Errorf("%s is not served: %w", apiVersion, d.err)
	}
	for _, r := range d.resources {
		if r.Kind == kind && !strings.Contains(r.Name, "/") { // not a subresource
			if r.Namespaced {
				return prefix + "/namespaces/" + namespace + "/" + r.Name, nil
			}
			return prefix + "/" + r.Name, nil
		}
	}
	return "", fmt.Errorf("%s has no kind %s (GET %s)", apiVersion, kind, prefix)
}

// apply sends d as a server-side apply with dryRun=All (nothing is stored)
// and strict field validation, as `kubectl apply --server-side
// --dry-run=server` does, into namespace when its kind is namespaced.
func (s *apiServer) apply(namespace string, d doc) ([]string, error) {
	return s.serverSideApply(namespace, d, "&dryRun=All")
}

// applyForReal is apply without the dry run: the object is stored, and the
// controllers act on it.
func (s *apiServer) applyForReal(namespace string, d doc) ([]string, error) {
	return s.serverSideApply(namespace, d, "")
}

func (s *apiServer) serverSideApply(namespace string, d doc, dryRun string) ([]string, error) {
	if d.apiVersion == "" || d.kind == "" || d.name == "" {
		return nil, fmt.Errorf("an object without apiVersion, kind or name:\n%s", d.yaml)
	}
	collection, err := s.resource(d.apiVersion, d.kind, namespace)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.id(), err)
	}
	path := collection + "/" + d.name + "?fieldManager=scaffold&fieldValidation=Strict" + dryRun
	code, body, warnings, err := s.do("PATCH", path, "application/apply-patch+yaml", d.yaml)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.id(), err)
	}
	if code != http.StatusOK && code != http.StatusCreated {
		return warnings, fmt.Errorf("%s: %w", d.id(), statusError("PATCH", path, code, body))
	}
	return warnings, nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var listeners []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range listeners {
		l.Close()
	}
	return ports
}

// process is a server the test started.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when it has exited; err is then set
	err    error
}

// startProcess starts bin with args, its output into logFile. When the test
// ends it is stopped by its PID (SIGTERM, SIGKILL 10 s later) and, if the
// test failed, the end of its log is printed. With Pdeathsig it also dies
// with a test binary that crashed.
func startProcess(t *testing.T, bin, logFile string, args ...string) *process {
	t.Helper()
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = sysProcAttr()
	if err := spawn(p.cmd); err != nil {
		log.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		log.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("the end of %s (%s):\n%s", filepath.Base(bin), logFile, tail(logFile, 6<<10))
		}
	})
	return p
}

// tail is the last size bytes of a file, from a line start.
func tail(file string, size int64) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > size {
		b = b[int64(len(b))-size:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
