package downgrade

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// Run the fuzz target with, for example:
//
//	go test -run='^$' -fuzz='^FuzzConvert$' -fuzztime=60s ./internal/downgrade

// gen makes random MIME messages that Go's readers can read: nested
// multiparts and message/rfc822 parts, with leaves of 8-bit text, binary,
// quoted-printable (some with raw 8-bit octets) and base64. Boundaries have
// a ':', which content never has, so no content line is a delimiter.
type gen struct {
	r *rand.Rand
	n int // boundaries made
}

func newGen(seed uint64) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (g *gen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

// content returns random octets: words, white space, line breaks (some
// lone CR or LF), UTF-8 and other 8-bit octets, NULs and QP or MIME
// look-alikes; now and then a line far over 998 octets.
func (g *gen) content(binary bool) string {
	if binary {
		b := make([]byte, g.r.IntN(200))
		for i := range b {
			b[i] = byte(g.r.UintN(256))
		}
		return string(b)
	}
	var b strings.Builder
	for range g.r.IntN(40) {
		switch g.r.IntN(12) {
		case 0:
			b.WriteString(strings.Repeat(g.pick("x", "é", "a b"), 300+g.r.IntN(600)))
		case 1, 2:
			b.WriteString("\r\n")
		case 3:
			b.WriteString(g.pick("\n", "\r", "\x00", "\xe9", "\xff", "\x80", "\x1b"))
		case 4:
			b.WriteString(g.pick(" ", "\t", "  \r\n", "\t\r\n", " "))
		case 5:
			b.WriteString(g.pick("=", "=41", "=\r\n", "--", "\r\n--", "\r\nFrom me", "\r\n.\r\n", "-"))
		case 6, 7:
			b.WriteString(g.pick("é", "ß", "€", "😀", "Grüße", "日本語"))
		default:
			b.WriteString(g.pick("hello", "world", "mail", "x", "The quick brown fox"))
		}
	}
	return b.String()
}

// message returns a message: a header block, then an entity's fields and
// body.
func (g *gen) message(depth int) string {
	h := "From: a@example.com\r\nSubject: test\r\n"
	if g.r.IntN(4) > 0 {
		h += "MIME-Version: 1.0\r\n"
	}
	return h + g.entity(depth, false)
}

// entity returns the fields of a random entity, the empty line and its body.
// In a digest, where the default type is message/rfc822, it always has a
// Content-Type.
func (g *gen) entity(depth int, digest bool) string {
	kind := g.r.IntN(10)
	if depth >= 3 {
		kind %= 6
	}
	switch kind {
	case 0, 1:
		ct := g.pick("", "Content-Type: text/plain; charset=utf-8\r\n", "Content-Type: text/html\r\n", "Content-Type: text/plain; format=flowed\r\n")
		if ct == "" && digest {
			ct = "Content-Type: text/plain\r\n"
		}
		return ct + g.cte("", "7bit", "8bit", "binary") + "\r\n" + g.content(false)
	case 2:
		return "Content-Type: application/octet-stream\r\n" + g.cte("", "8bit", "binary") + "\r\n" + g.content(true)
	case 3:
		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		w.Write([]byte(g.content(g.r.IntN(2) == 0)))
		w.Close()
		// Some senders put raw 8-bit octets in quoted-printable; Go's
		// reader takes them as they are. (Its writer escapes with
		// upper-case hex, so a lower-case letter is a literal.)
		s := qp.String()
		if g.r.IntN(2) == 0 {
			s = strings.ReplaceAll(s, "o", "\xc3\xb6")
		}
		return "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + s
	case 4:
		enc := base64.StdEncoding.EncodeToString([]byte(g.content(true)))
		var b strings.Builder
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		return "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b.String()
	case 5:
		return "Content-Type: text/plain\r\n\r\n" + strings.ReplaceAll(g.pick("plain ascii", "two\r\nlines\r\n", ""), ":", "")
	case 6, 7, 8:
		return g.multipart(depth)
	}
	return "Content-Type: message/rfc822\r\n" + g.cte("", "7bit", "8bit") + "\r\n" + g.message(depth+1)
}

func (g *gen) cte(values ...string) string {
	if v := g.pick(values...); v != "" {
		return "Content-Transfer-Encoding: " + v + "\r\n"
	}
	return ""
}

func (g *gen) multipart(depth int) string {
	g.n++
	b := fmt.Sprintf("b:%d", g.n)
	sub := g.pick("mixed", "alternative", "digest")
	var s strings.Builder
	fmt.Fprintf(&s, "Content-Type: multipart/%s; boundary=%q\r\n%s\r\n", sub, b, g.cte("", "7bit", "8bit", "binary"))
	if g.r.IntN(2) == 0 {
		s.WriteString(g.preamble() + "\r\n")
	}
	for range 1 + g.r.IntN(3) {
		s.WriteString("--" + b + g.pick("", " ", "\t ") + "\r\n")
		if sub == "digest" && g.r.IntN(2) == 0 {
			s.WriteString("\r\n" + g.message(depth+1))
		} else {
			s.WriteString(g.entity(depth+1, sub == "digest"))
		}
		s.WriteString("\r\n")
	}
	s.WriteString("--" + b + "--")
	if g.r.IntN(2) == 0 {
		s.WriteString("\r\n" + g.preamble())
	}
	return s.String()
}

// preamble returns content without the long lines that Go's multipart
// reader cannot skip (it fails on lines over 4096 octets there).
func (g *gen) preamble() string {
	for {
		c := g.content(false)
		if !strings.Contains(c, strings.Repeat("x", 300)) && !strings.Contains(c, strings.Repeat("é", 300)) &&
			!strings.Contains(c, strings.Repeat("a b", 300)) {
			return c
		}
	}
}

func TestRoundTripProperty(t *testing.T) {
	g := newGen(1)
	for i := range 2000 {
		in := []byte(g.message(0))
		if _, err := refDecode(in); err != nil {
			t.Fatalf("message %d: the generator made one Go cannot read: %v\n%q", i, err, clip(in))
		}
		out, err := convert(t, in)
		if err != nil {
			t.Fatalf("message %d: Convert: %v\n%q", i, err, clip(in))
		}
		checkOutput(t, out)
		checkRoundTrip(t, in, out)
		again, err := convert(t, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("message %d: converting the output again changed it (err %v)", i, err)
		}
	}
}

func FuzzConvert(f *testing.F) {
	for _, tt := range convertTests {
		f.Add([]byte(tt.in))
	}
	g := newGen(2)
	for range 30 {
		f.Add([]byte(g.message(0)))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := convert(t, in)
		if err != nil {
			if !errors.Is(err, ErrHeaders8Bit) && !errors.Is(err, ErrHeaderLine) {
				t.Fatalf("Convert error = %v, not a header error", err)
			}
			return
		}
		checkOutput(t, out)
		if is7bit(in) && !bytes.Equal(in, out) {
			t.Fatalf("Convert changed 7bit input\n%q\nto\n%q", in, out)
		}
		// Go's readers take a lone LF for a line ending; MIME does not.
		if !hasLoneCRLF(in) {
			checkRoundTrip(t, in, out)
		}
	})
}
