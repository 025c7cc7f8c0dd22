package k8scheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A small OpenAPI document in the shape of Kubernetes's: a kind with a $ref,
// an IntOrString, a Quantity, a map of labels and a recursive definition.
const miniSwagger = `{"definitions": {
  "io.k8s.api.apps.v1.Widget": {
    "description": "a kind",
    "type": "object",
    "properties": {
      "apiVersion": {"type": "string"},
      "kind": {"type": "string"},
      "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.WidgetSpec"}
    },
    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Widget", "version": "v1"}]
  },
  "io.k8s.api.apps.v1.WidgetSpec": {
    "type": "object",
    "required": ["replicas"],
    "properties": {
      "replicas": {"type": "integer", "format": "int32"},
      "maxUnavailable": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
      "cpu": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
      "labels": {"type": "object", "additionalProperties": {"type": "string"}},
      "description": {"type": "string"},
      "tree": {"$ref": "#/definitions/io.k8s.api.apps.v1.Tree"}
    }
  },
  "io.k8s.api.apps.v1.Tree": {
    "type": "object",
    "properties": {"children": {"type": "array", "items": {"$ref": "#/definitions/io.k8s.api.apps.v1.Tree"}}}
  },
  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
  "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
  "io.k8s.api.core.v1.Gadget": {
    "type": "object",
    "properties": {"kind": {"type": "string"}},
    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Gadget", "version": "v1"}]
  },
  "io.k8s.api.networking.v1.Gate": {
    "type": "object",
    "properties": {"kind": {"type": "string"}},
    "x-kubernetes-group-version-kind": [{"group": "networking.k8s.io", "kind": "Gate", "version": "v1"}]
  }
}}`

func TestConvertSchemas(t *testing.T) {
	dir := t.TempDir()
	if err := ConvertSchemas([]byte(miniSwagger), dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// The names kubeconform asks for: kind, first label of the group, version.
	if want := []string{"gadget-v1.json", "gate-networking-v1.json", "widget-apps-v1.json"}; !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "widget-apps-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"additionalProperties":false`,                                        // strict
		`"required":["replicas"]`,                                             // the $ref is inlined
		`"maxUnavailable":{"oneOf":[{"type":"string"},{"type":"integer"}]}`,   // IntOrString
		`"cpu":{"oneOf":[{"type":"string"},{"type":"number"}]}`,               // Quantity
		`"labels":{"additionalProperties":{"type":"string"},"type":"object"}`, // a map stays a map
		`"description":{"type":"string"}`,                                     // a property named description stays
		`"children":{"items":{},"type":"array"}`,                              // recursion cut
	} {
		if !strings.Contains(s, want) {
			t.Errorf("widget-apps-v1.json lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "$ref") || strings.Contains(s, "a kind") || strings.Contains(s, "x-kubernetes") {
		t.Errorf("widget-apps-v1.json keeps a $ref, a description or an x-kubernetes- key:\n%s", s)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Errorf("not JSON: %v", err)
	}

	if err := ConvertSchemas([]byte(`{"definitions": {}}`), t.TempDir()); err == nil {
		t.Error("an empty document converted without an error")
	}
	if err := ConvertSchemas([]byte(`{"definitions": {"a": {"type": "object"}}}`), t.TempDir()); err == nil {
		t.Error("a document without kinds converted without an error")
	}
}

// TestCatches shows that the validation can fail, on the mistakes that
// generators of Kubernetes manifests make: an API version Kubernetes
// removed (autoscaling/v2beta2, gone in 1.26, which go-zero's goctl still
// writes), a value of the wrong type, a field that does not exist. A good
// manifest beside them passes.
func TestCatches(t *testing.T) {
	tools := installed(t)
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"good", goodDeployment, ""},
		{"removed API", removedHPA, "could not find schema for HorizontalPodAutoscaler"},
		{"wrong type", strings.Replace(goodDeployment, "replicas: 2", `replicas: "two"`, 1), "at '/spec/replicas': got string, want integer"},
		{"unknown field", strings.Replace(goodDeployment, "replicas: 2", "replicas: 2\n  replica: 2", 1), "additional properties 'replica' not allowed"},
		{"unknown field deep", strings.Replace(goodDeployment, "image: good:1", "image: good:1\n          imagePullPolicyy: Always", 1), "additional properties 'imagePullPolicyy' not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results, err := kubeconform(tools, []byte(tc.manifest))
			if err != nil {
				t.Fatal(err)
			}
			if len(results) != 1 {
				t.Fatalf("%d results, want 1: %+v", len(results), results)
			}
			r := results[0]
			if tc.want == "" {
				if r.Status != "statusValid" {
					t.Errorf("a good manifest is %s: %s", r.Status, r.Msg)
				}
				return
			}
			t.Logf("%s: %s", r.Status, r.Msg)
			if r.Status == "statusValid" || !strings.Contains(r.Msg, tc.want) {
				t.Errorf("got %s %q, want a failure that mentions %q", r.Status, r.Msg, tc.want)
			}
		})
	}
}

// The manifests both checks are shown failing on: a good Deployment (whose
// variants TestCatches and TestServerRefuses make), and an API version
// Kubernetes removed (autoscaling/v2beta2, gone in 1.26).
const goodDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: good
spec:
  replicas: 2
  selector:
    matchLabels: {app: good}
  strategy:
    rollingUpdate: {maxUnavailable: 0, maxSurge: "25%"}
  template:
    metadata:
      labels: {app: good}
    spec:
      containers:
        - name: app
          image: good:1
          resources:
            limits: {cpu: 1, memory: 128Mi}
`

const removedHPA = `apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata:
  name: old
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: good}
  minReplicas: 1
  maxReplicas: 3
`
