package arc

import (
	"bytes"
	"strings"

	"mailroom/internal/message"
)

// field is one header field as it stands in the message: its name (lower
// case) and the whole field, folding and line end included.
type field struct {
	name string
	raw  string
}

// splitHeader returns the header section's fields and where the body
// starts (message.Fields).
func splitHeader(msg []byte) ([]field, int) {
	fs, body := message.Fields(msg)
	out := make([]field, len(fs))
	for i, f := range fs {
		out[i] = field{name: f.Name, raw: string(f.Raw)}
	}
	return out, body
}

// relaxedHeader canonicalizes a field (RFC 6376 3.4.2): the name in lower
// case, the value unfolded, runs of whitespace made one space, none
// around the colon or at the end; CRLF after it.
func relaxedHeader(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(value)
	return strings.ToLower(strings.TrimSpace(name)) + ":" + strings.Join(strings.FieldsFunc(value, isWSP), " ") + "\r\n"
}

func isWSP(r rune) bool { return r == ' ' || r == '\t' }

// relaxedBody canonicalizes a body (RFC 6376 3.4.4): whitespace at line
// ends removed, runs of it made one space, empty lines at the end
// removed, CRLF line ends.
func relaxedBody(body []byte) []byte {
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	var out bytes.Buffer
	empty := 0
	for i, l := range lines {
		if i == len(lines)-1 && l == "" {
			break // what follows the last line end
		}
		l = strings.TrimRight(strings.Join(strings.FieldsFunc(l, isWSP), " "), " ")
		if hasLeadingWSP(lines[i]) && l != "" {
			l = " " + l
		}
		if l == "" {
			empty++
			continue
		}
		for ; empty > 0; empty-- {
			out.WriteString("\r\n")
		}
		out.WriteString(l + "\r\n")
	}
	return out.Bytes()
}

func hasLeadingWSP(l string) bool { return l != "" && (l[0] == ' ' || l[0] == '\t') }

// tags parses a tag list ("a=b; c=d") into a map; an error-free parse of
// what is there, whitespace removed from values as DKIM does for b= and
// bh=.
func tags(v string) map[string]string {
	out := map[string]string{}
	for _, t := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return out
}

// withoutB returns a signature field with its b= tag's value removed
// (RFC 6376 3.7), as signed and as verified.
func withoutB(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	parts := strings.Split(value, ";")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && strings.TrimSpace(k) == "b" {
			eq := strings.Index(p, "=")
			parts[i] = p[:eq+1]
		}
	}
	return name + ":" + strings.Join(parts, ";")
}
