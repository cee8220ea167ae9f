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

func TestPrintable(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain text and accents stay", "Grüße, café", "Grüße, café"},
		{"an escape sequence is defused", "hi\x1b]0;owned\x07\x1b[2J", "hi\ufffd]0;owned\ufffd\ufffd[2J"},
		{"a C1 control is replaced", "a\u009bb", "a\ufffdb"},
		{"a bidi override is replaced", "invoice\u202egnp.exe", "invoice\ufffdgnp.exe"},
		{"tabs and newlines cannot break the table", "a\tb\nc", "a\ufffdb\ufffdc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := printable(c.in); got != c.want {
				t.Errorf("printable(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}
