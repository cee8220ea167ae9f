package httpapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIDescribesRoutes: openapi.json is OpenAPI 3.1 and describes
// exactly the routes served, each with the scope it needs.
func TestOpenAPIDescribesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	var served, described []string
	for _, rt := range routes {
		served = append(served, rt.method+" "+rt.path)
		var op struct {
			Scope string `json:"x-scope"`
		}
		raw, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]
		if !ok {
			continue
		}
		json.Unmarshal(raw, &op)
		if op.Scope != rt.scope {
			t.Errorf("%s %s: described with scope %q, served with %q", rt.method, rt.path, op.Scope, rt.scope)
		}
	}
	served = append(served, "GET /api/v1/openapi.json")
	for path, ops := range doc.Paths {
		for method := range ops {
			described = append(described, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(described)
	if !slices.Equal(served, described) {
		t.Errorf("served:\n%s\ndescribed:\n%s", strings.Join(served, "\n"), strings.Join(described, "\n"))
	}
}
