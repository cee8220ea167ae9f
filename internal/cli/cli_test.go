package cli

import (
	"bytes"
	"testing"
)

// TestPrintList: a list command prints JSON (an empty list as [], not
// null) or a table with the header and a row per item.
func TestPrintList(t *testing.T) {
	type item struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	row := func(it item) []string { return []string{it.Name, "x"} }
	for _, tc := range []struct {
		name   string
		items  []item
		asJSON bool
		want   string
	}{
		{"json, none", nil, true, "[]\n"},
		{"json, two", []item{{"a", 1}, {"b", 2}}, true, "[\n  {\n    \"name\": \"a\",\n    \"n\": 1\n  },\n  {\n    \"name\": \"b\",\n    \"n\": 2\n  }\n]\n"},
		{"table, none", nil, false, "NAME  VALUE\n"},
		{"table, two", []item{{"alpha", 1}, {"b", 2}}, false, "NAME   VALUE\nalpha  x\nb      x\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			a := &app{stdout: &out}
			if err := printList(a, tc.asJSON, tc.items, "NAME\tVALUE", row); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("got\n%q\nwant\n%q", out.String(), tc.want)
			}
		})
	}
}
