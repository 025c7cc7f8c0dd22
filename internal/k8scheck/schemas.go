package k8scheck

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SchemaLocation is kubeconform's -schema-location for a directory that
// ConvertSchemas wrote: kubeconform fills in the lowercased kind and
// "-<first label of the group>-<version>" ("-v1" for the core group).
func SchemaLocation(dir string) string {
	return filepath.Join(dir, "{{.ResourceKind}}{{.KindSuffix}}.json")
}

// ConvertSchemas writes one JSON schema per kind of a Kubernetes OpenAPI v2
// document (api/openapi-spec/swagger.json) into dir, named as
// SchemaLocation says (deployment-apps-v1.json, service-v1.json). Each is
// standalone, every $ref inlined, and strict: an object with properties
// allows no others, so an unknown or misspelt field fails. This is what
// kubeconform's own "-standalone-strict" schemas are, made here because
// their download site is out of reach.
//
// Two types are written as the API server reads them rather than as the
// document declares them: IntOrString (declared a string with format
// int-or-string) takes a string or an integer, and Quantity (declared a
// string) a string or a number. A recursive definition (only
// apiextensions' JSONSchemaProps has one) accepts anything where it recurs.
func ConvertSchemas(swagger []byte, dir string) error {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(swagger, &doc); err != nil {
		return fmt.Errorf("reading the OpenAPI document: %w", err)
	}
	if len(doc.Definitions) == 0 {
		return fmt.Errorf("the OpenAPI document has no definitions")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := converter{defs: doc.Definitions, done: map[string]any{}}
	written := 0
	for _, name := range slices.Sorted(maps.Keys(doc.Definitions)) {
		def := doc.Definitions[name]
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) == 0 {
			continue // a part of other kinds, not a kind of its own
		}
		schema, err := json.Marshal(c.definition(name, nil))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			group, _ := gvk["group"].(string)
			version, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			if version == "" || kind == "" {
				return fmt.Errorf("%s: a group-version-kind without version or kind: %v", name, gvk)
			}
			if err := os.WriteFile(filepath.Join(dir, SchemaFile(group, version, kind)), schema, 0o644); err != nil {
				return err
			}
			written++
		}
	}
	if written == 0 {
		return fmt.Errorf("the OpenAPI document defines no kind (no x-kubernetes-group-version-kind)")
	}
	return nil
}

// SchemaFile is the file name kubeconform looks for: see SchemaLocation.
func SchemaFile(group, version, kind string) string {
	suffix := "-" + strings.ToLower(version)
	if group != "" {
		first, _, _ := strings.Cut(group, ".")
		suffix = "-" + strings.ToLower(first) + suffix
	}
	return strings.ToLower(kind) + suffix + ".json"
}

type converter struct {
	defs map[string]map[string]any
	done map[string]any // converted definitions, shared by every kind that uses them
}

// definition converts the named definition; stack holds the definitions
// being converted around it, to cut recursion.
func (c *converter) definition(name string, stack []string) any {
	if s, ok := c.done[name]; ok {
		return s
	}
	if slices.Contains(stack, name) {
		return map[string]any{} // recursion: anything
	}
	var s any
	switch name {
	case "io.k8s.apimachinery.pkg.api.resource.Quantity":
		s = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	default:
		def, ok := c.defs[name]
		if !ok {
			s = map[string]any{} // a dangling $ref: the document's fault, not the manifest's
			break
		}
		s = c.node(def, append(stack, name))
	}
	c.done[name] = s
	return s
}

func (c *converter) node(n any, stack []string) any {
	switch n := n.(type) {
	case []any:
		out := make([]any, len(n))
		for i, v := range n {
			out[i] = c.node(v, stack)
		}
		return out
	case map[string]any:
		if ref, ok := n["$ref"].(string); ok {
			return c.definition(strings.TrimPrefix(ref, "#/definitions/"), stack)
		}
		if n["format"] == "int-or-string" {
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
		}
		out := map[string]any{}
		for k, v := range n {
			switch {
			case k == "description" || strings.HasPrefix(k, "x-kubernetes-"):
				// Documentation and hints for clients: no constraint.
			case k == "properties":
				// Property names are not keywords: convert each value only.
				props := map[string]any{}
				for name, p := range v.(map[string]any) {
					props[name] = c.node(p, stack)
				}
				out[k] = props
			default:
				out[k] = c.node(v, stack)
			}
		}
		if _, ok := out["properties"]; ok {
			if _, set := out["additionalProperties"]; !set {
				out["additionalProperties"] = false
			}
		}
		return out
	default:
		return n
	}
}
