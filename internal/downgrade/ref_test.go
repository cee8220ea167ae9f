package downgrade

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mailroom/internal/message"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
)

// The tests judge Convert by reading its input and output with Go's own
// MIME readers (net/mail, mime/multipart, mime/quotedprintable,
// encoding/base64): both must give the same leaves, byte for byte.

// refLeaf is one leaf of a message as Go's readers see it.
type refLeaf struct {
	Type string // media type, lower case
	Body string // decoded
}

func (l refLeaf) String() string { return fmt.Sprintf("%s %q", l.Type, l.Body) }

// errRefTooDeep stops the reference reader where Convert stops walking.
var errRefTooDeep = errors.New("nested too deep")

// refDecode returns the leaves of msg in order, or an error if Go's readers
// cannot read it.
func refDecode(msg []byte) ([]refLeaf, error) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	var out []refLeaf
	err = refWalk(textproto.MIMEHeader(m.Header), m.Body, false, 0, &out)
	return out, err
}

func refWalk(h textproto.MIMEHeader, body io.Reader, digest bool, depth int, out *[]refLeaf) error {
	for k := range h {
		// "Name :" is the same field as "Name:" to RFC 5322 (4.5, obsolete syntax) and
		// to Convert, but not to net/textproto (go.dev/issue/34540).
		if strings.ContainsAny(k, " \t") {
			return fmt.Errorf("white space in field name %q", k)
		}
	}
	mt, params := "text/plain", map[string]string(nil)
	if digest {
		mt = "message/rfc822"
	}
	if v := h.Values("Content-Type"); len(v) > 0 {
		t, p, err := mime.ParseMediaType(v[0])
		mt, params = "text/plain", nil // RFC 2045 5.2: one that does not parse
		if t != "" && (err == nil || err == mime.ErrInvalidMediaParameter) {
			mt, params = t, p
		}
	}
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	encoded := cte == "quoted-printable" || cte == "base64"
	container := !encoded && (strings.HasPrefix(mt, "multipart/") || mt == "message/rfc822")
	if container && depth >= maxDepth {
		return errRefTooDeep
	}
	switch {
	case container && mt == "message/rfc822":
		m, err := mail.ReadMessage(body)
		if err != nil {
			return err
		}
		return refWalk(textproto.MIMEHeader(m.Header), m.Body, false, depth+1, out)
	case container:
		b, ok := message.Boundary(params["boundary"])
		if !ok {
			return fmt.Errorf("no usable boundary in %v", params)
		}
		// Go's reader ends without an error when a part's header runs
		// into the end of the body, so count the delimiter lines too.
		data, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		open, closed := countDelims(data, b)
		if !closed {
			return errors.New("no close delimiter")
		}
		mr := multipart.NewReader(bytes.NewReader(data), b)
		for n := 0; ; n++ {
			p, err := mr.NextRawPart()
			if err == io.EOF && n != open {
				return fmt.Errorf("Go's reader read %d parts of %d", n, open)
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := refWalk(p.Header, p, mt == "multipart/digest", depth+1, out); err != nil {
				return err
			}
		}
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	switch cte {
	case "quoted-printable":
		data, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(data)))
	case "base64":
		data, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(data)))
	}
	if err != nil {
		return err
	}
	*out = append(*out, refLeaf{Type: mt, Body: string(data)})
	return nil
}

// countDelims counts the lines of body that are "--" boundary and white
// space up to the first that is "--" boundary "--" and white space, and
// reports whether there is such a close delimiter line.
func countDelims(body []byte, boundary string) (open int, closed bool) {
	for _, line := range strings.Split(string(body), "\r\n") {
		switch strings.TrimRight(line, " \t") {
		case "--" + boundary + "--":
			return open, true
		case "--" + boundary:
			open++
		}
	}
	return open, false
}

// checkOutput fails the test unless out is 7bit data: no octet >= 0x80 or
// NUL, CR and LF only as CRLF, lines of at most 998 octets.
func checkOutput(t testing.TB, out []byte) {
	t.Helper()
	line, col := 1, 0
	for i, c := range out {
		switch {
		case c >= 0x80 || c == 0:
			t.Fatalf("output line %d has octet %#02x:\n%s", line, c, clip(out))
		case c == '\r' && (i+1 == len(out) || out[i+1] != '\n'):
			t.Fatalf("output line %d has a lone CR:\n%s", line, clip(out))
		case c == '\n' && (i == 0 || out[i-1] != '\r'):
			t.Fatalf("output line %d has a lone LF:\n%s", line, clip(out))
		case c == '\n':
			line, col = line+1, 0
		case c != '\r':
			if col++; col > 998 {
				t.Fatalf("output line %d is over 998 octets:\n%s", line, clip(out))
			}
		}
	}
}

// checkRoundTrip fails the test unless Go's readers, if they can read in,
// read out too and find the same leaves.
func checkRoundTrip(t testing.TB, in, out []byte) {
	t.Helper()
	want, err := refDecode(in)
	if err != nil {
		return
	}
	got, err := refDecode(out)
	if err != nil {
		t.Fatalf("output does not read back: %v\ninput:\n%q\noutput:\n%q", err, clip(in), clip(out))
	}
	if len(got) != len(want) {
		t.Fatalf("output has %d leaves, input %d\ninput:\n%q\noutput:\n%q", len(got), len(want), clip(in), clip(out))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("leaf %d reads back as\n%v\nnot\n%v\ninput:\n%q\noutput:\n%q", i, got[i], want[i], clip(in), clip(out))
		}
	}
}

// hasLoneCRLF reports whether b has a CR or LF outside CRLF; Go's readers
// take a lone LF for a line ending where MIME does not.
func hasLoneCRLF(b []byte) bool {
	return bytes.Count(b, []byte("\r")) != bytes.Count(b, crlf) || bytes.Count(b, []byte("\n")) != bytes.Count(b, crlf)
}

func clip(b []byte) []byte {
	if len(b) > 4000 {
		return append(b[:4000:4000], "…"...)
	}
	return b
}

func convert(t testing.TB, in []byte) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	err := Convert(&out, bytes.NewReader(in))
	return out.Bytes(), err
}
