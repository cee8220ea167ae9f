package downgrade

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// crlfLines joins lines with CRLF, ending the last one too.
func crlfLines(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n"
}

var convertTests = []struct {
	name string
	in   string
	want string // exact output; "" to check only the properties
	err  error
	// malformed inputs are ones Go's MIME readers cannot read, so the
	// round trip cannot be checked.
	malformed bool
}{
	{
		name: "plain 8-bit text without MIME headers becomes quoted-printable utf-8 text",
		in:   crlfLines("From: a@example.com", "Subject: hi", "", "Grüße, ", "=Jürgen"),
		want: crlfLines("From: a@example.com", "Subject: hi", "MIME-Version: 1.0",
			"Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "",
			"Gr=C3=BC=C3=9Fe,=20", "=3DJ=C3=BCrgen"),
	},
	{
		name: "8-bit text that is not UTF-8 is labelled unknown-8bit",
		in:   crlfLines("Subject: hi", "", "d\xe9j\xe0 vu"),
		want: crlfLines("Subject: hi", "MIME-Version: 1.0", "Content-Type: text/plain; charset=unknown-8bit",
			"Content-Transfer-Encoding: quoted-printable", "", "d=E9j=E0 vu"),
	},
	{
		name: "a message with a Content-Type but no MIME-Version gets one when its encoding changes",
		in:   crlfLines("Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: 8bit", "", "<p>é</p>"),
		want: crlfLines("Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable",
			"MIME-Version: 1.0", "", "<p>=C3=A9</p>"),
	},
	{
		name: "a 7-bit multipart message is copied byte for byte",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"b\"",
			"Content-Transfer-Encoding: 8bit", "", "preamble", "--b", "", "one", "--b  ",
			"Content-Type: text/plain", "", "two "+strings.Repeat("x", 990), "--b--", "epilogue"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"b\"",
			"Content-Transfer-Encoding: 8bit", "", "preamble", "--b", "", "one", "--b  ",
			"Content-Type: text/plain", "", "two "+strings.Repeat("x", 990), "--b--", "epilogue"),
	},
	{
		name: "multipart/alternative with one 8-bit part re-encodes only that part",
		in: crlfLines("MIME-Version: 1.0", "Subject: alt", "Content-Type: multipart/alternative;", "\tboundary=\"=_alt\"",
			"", "This is MIME.", "--=_alt", "Content-Type: text/plain; charset=us-ascii", "", "plain",
			"--=_alt", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: 8bit", "",
			"<p>café</p>", "--=_alt--", ""),
		want: crlfLines("MIME-Version: 1.0", "Subject: alt", "Content-Type: multipart/alternative;", "\tboundary=\"=_alt\"",
			"", "This is MIME.", "--=_alt", "Content-Type: text/plain; charset=us-ascii", "", "plain",
			"--=_alt", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "",
			"<p>caf=C3=A9</p>", "--=_alt--", ""),
	},
	{
		name: "nested multipart: the inner 8-bit part is re-encoded and both CTEs become 7bit",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=outer", "Content-Transfer-Encoding: 8bit",
			"", "--outer", "Content-Type: multipart/alternative; boundary=inner", "Content-Transfer-Encoding: binary",
			"", "--inner", "Content-Type: text/plain; charset=utf-8", "", "ä", "--inner--",
			"--outer", "Content-Type: text/plain", "", "ascii", "--outer--"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=outer", "Content-Transfer-Encoding: 7bit",
			"", "--outer", "Content-Type: multipart/alternative; boundary=inner", "Content-Transfer-Encoding: 7bit",
			"", "--inner", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable",
			"", "=C3=A4", "--inner--", "--outer", "Content-Type: text/plain", "", "ascii", "--outer--"),
	},
	{
		name: "a message/rfc822 attachment has its inner message converted and is marked 7bit",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b",
			"Content-Type: text/plain", "", "see attached", "--b", "Content-Type: message/rfc822",
			"Content-Transfer-Encoding: 8bit", "", "Subject: inner", "", "naïve", "--b--"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b",
			"Content-Type: text/plain", "", "see attached", "--b", "Content-Type: message/rfc822",
			"Content-Transfer-Encoding: 7bit", "", "Subject: inner", "MIME-Version: 1.0",
			"Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "",
			"na=C3=AFve", "--b--"),
	},
	{
		name: "a binary attachment with CTE binary becomes base64",
		in: "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
			"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
			"\x00\xff\r\x89PNG\n\r\n--b--\r\n",
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b",
			"Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64", "",
			"AP8NiVBORwo=", "", "--b--"),
	},
	{
		name: "a part without Content-Type is text/plain and gets one with its charset",
		in:   crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b", "", "\xe9t\xe9", "--b--"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b",
			"Content-Type: text/plain; charset=unknown-8bit", "Content-Transfer-Encoding: quoted-printable", "",
			"=E9t=E9", "--b--"),
	},
	{
		name: "a part of a multipart/digest without Content-Type is a message",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/digest; boundary=b", "", "--b", "",
			"Subject: one", "", "ü", "--b--"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/digest; boundary=b", "", "--b", "",
			"Subject: one", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: quoted-printable", "", "=C3=BC", "--b--"),
	},
	{
		name: "8-bit preamble and epilogue are dropped",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "Préambule", "--b", "",
			"ok", "--b--", "Épilogue"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b", "",
			"ok", "--b--"),
	},
	{
		name:      "a multipart without its close delimiter gets one",
		malformed: true,
		in: "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" +
			"ok\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfin é\r\n",
		want: "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nok\r\n--b\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"fin =C3=A9\r\n\r\n--b--",
	},
	{
		name:      "a delimiter line that ends the body opens an empty part, then closed",
		malformed: true,
		in:        "Content-Type: multipart/mixed; boundary=b\r\n\r\n\xa4\r\n--b\r\n",
		want:      "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--",
	},
	{
		name:      "a multipart whose boundary never appears is encoded whole as quoted-printable",
		malformed: true,
		in:        crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--c", "", "é", "--c--"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b",
			"Content-Transfer-Encoding: quoted-printable", "", "=2D-c", "", "=C3=A9", "=2D-c--"),
	},
	{
		name: "a Content-Type that does not parse is read as text/plain",
		in:   crlfLines("MIME-Version: 1.0", "Content-Type: ;;;", "", "\x01é"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: ;;;", "Content-Transfer-Encoding: quoted-printable",
			"", "=01=C3=A9"),
	},
	{
		name: "a quoted-printable part with raw 8-bit octets is decoded and encoded again",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: Quoted-Printable", "", "caf=C3=A9 and thé=", "too"),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: Quoted-Printable", "", "caf=C3=A9 and th=C3=A9too"),
	},
	{
		name: "a Content-Transfer-Encoding with odd white space around its token is still read",
		in:   "Content-Transfer-Encoding:\fquoted-printABle \r\n\r\n\xb6 ",
		want: "Content-Transfer-Encoding:\fquoted-printABle \r\n\r\n=B6",
	},
	{
		name:      "a base64 part with 8-bit junk keeps only the base64 alphabet",
		malformed: true,
		in: crlfLines("MIME-Version: 1.0", "Content-Type: image/png", "Content-Transfer-Encoding: base64", "",
			"iVBO\xffRw0K", "Gg=="),
		want: crlfLines("MIME-Version: 1.0", "Content-Type: image/png", "Content-Transfer-Encoding: base64", "",
			"iVBORw0KGg=="),
	},
	{
		name: "lone CR and LF, trailing white space and lines that look like delimiters are encoded",
		in:   "Content-Type: text/plain; charset=utf-8\r\nMIME-Version: 1.0\r\n\r\nä\rb\nc\t\r\n--x\r\nFrom here\r\n-- \r\n",
		want: crlfLines("Content-Type: text/plain; charset=utf-8", "MIME-Version: 1.0",
			"Content-Transfer-Encoding: quoted-printable", "", "=C3=A4=0Db=0Ac=09", "=2D-x", "=46rom here", "=2D-=20"),
	},
	{
		name: "a long 8-bit line is broken with soft line breaks at 76",
		in:   crlfLines("Subject: long", "", strings.Repeat("é", 60)),
		want: crlfLines("Subject: long", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: quoted-printable", "",
			strings.Repeat("=C3=A9", 12)+"=", strings.Repeat("=C3=A9", 12)+"=",
			strings.Repeat("=C3=A9", 12)+"=", strings.Repeat("=C3=A9", 12)+"=", strings.Repeat("=C3=A9", 12)),
	},
	{
		name: "a 7-bit line over 998 octets in an 8-bit message is broken too",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b", "",
			strings.Repeat("a", 1200), "--b", "", "ö", "--b--"),
	},
	{
		name: "an 8-bit header field fails the conversion",
		in:   crlfLines("Subject: Grüße", "", "body é"),
		err:  ErrHeaders8Bit,
	},
	{
		name: "an 8-bit header field in a part fails the conversion",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b",
			"Content-Disposition: attachment; filename=\"résumé.pdf\"", "", "x", "--b--"),
		err: ErrHeaders8Bit,
	},
	{
		name: "an 8-bit header field in an attached message fails the conversion",
		in: crlfLines("MIME-Version: 1.0", "Content-Type: message/rfc822", "", "From: Jörg <j@example.com>",
			"", "hello"),
		err: ErrHeaders8Bit,
	},
	{
		name: "a header line over 998 octets fails the conversion",
		in:   crlfLines("X-Long: "+strings.Repeat("x", 1000), "", "é"),
		err:  ErrHeaderLine,
	},
	{
		name: "a NUL in a header fails the conversion",
		in:   crlfLines("X-Nul: a\x00b", "", "é"),
		err:  ErrHeaderLine,
	},
}

func TestConvert(t *testing.T) {
	for _, tt := range convertTests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := convert(t, []byte(tt.in))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Convert error = %v, want %v", err, tt.err)
				}
				if _, ok := Permanent(err); !ok {
					t.Errorf("Permanent(%v) is not ok", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			checkOutput(t, out)
			if tt.want != "" && string(out) != tt.want {
				t.Errorf("Convert output:\n%q\nwant:\n%q", out, tt.want)
			}
			checkRoundTrip(t, []byte(tt.in), out)
		})
	}
}

func TestConvertReadsBackWithGo(t *testing.T) {
	// Every table input that Go's readers read must have at least one
	// leaf, so that TestConvert's round trip is not vacuous.
	for _, tt := range convertTests {
		if tt.err != nil || tt.malformed {
			continue
		}
		if leaves, err := refDecode([]byte(tt.in)); err != nil || len(leaves) == 0 {
			t.Errorf("%s: Go reads the input as %v, %v", tt.name, leaves, err)
		}
	}
}

func TestConvertErrorsSayWhere(t *testing.T) {
	in := crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b", "",
		"x", "--b", "Content-Type: message/rfc822", "", "Subject: ok", "To: Zoë <z@example.com>", "", "é", "--b--")
	_, err := convert(t, []byte(in))
	if want := "downgrade: message in part 2 header: line 2: a header field has 8-bit octets"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestConvertPassesOnReadAndWriteErrors(t *testing.T) {
	boom := errors.New("boom")
	err := Convert(io.Discard, iotest.ErrReader(boom))
	if !errors.Is(err, boom) {
		t.Errorf("read error = %v, want it to wrap %v", err, boom)
	}
	if _, ok := Permanent(err); ok {
		t.Errorf("Permanent(%v) is ok, want not", err)
	}
	err = Convert(failWriter{boom}, strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if !errors.Is(err, boom) {
		t.Errorf("write error = %v, want it to wrap %v", err, boom)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestNeeded(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"an ASCII message needs nothing", "Subject: x\r\n\r\nhello\r\n", false},
		{"an empty message needs nothing", "", false},
		{"a long ASCII line is not 8-bit", "Subject: x\r\n\r\n" + strings.Repeat("a", 2000) + "\r\n", false},
		{"an 8-bit body needs conversion", "Subject: x\r\n\r\nh\xe9\r\n", true},
		{"an 8-bit header needs it too", "Subject: \xc3\xa9\r\n\r\nhello\r\n", true},
		{"a NUL needs it", "Subject: x\r\n\r\na\x00b\r\n", true},
		{"an 8-bit octet far into a large message is found", strings.Repeat("a", 100<<10) + "\x80", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Needed(iotest.OneByteReader(strings.NewReader(tt.in)))
			if err != nil || got != tt.want {
				t.Errorf("Needed = %v, %v; want %v", got, err, tt.want)
			}
			if got, _ := Needed(strings.NewReader(tt.in)); got != tt.want {
				t.Errorf("Needed with whole reads = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := Needed(iotest.ErrReader(io.ErrUnexpectedEOF)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Needed read error = %v", err)
	}
}

func TestMessagesThatNeedNothingComeOutUnchanged(t *testing.T) {
	for _, tt := range convertTests {
		if needed, _ := Needed(strings.NewReader(tt.in)); needed || !is7bit([]byte(tt.in)) {
			continue
		}
		out, err := convert(t, []byte(tt.in))
		if err != nil || !bytes.Equal(out, []byte(tt.in)) {
			t.Errorf("%s: Convert changed a 7bit message (err %v)", tt.name, err)
		}
	}
}

func TestQuotedPrintableDecodesLikeGo(t *testing.T) {
	for _, in := range []string{
		"", "a", "a=\r\nb", "a= \r\nb", "a=\nb", "a \r\nb\t\r\n", "=41=4a=4A", "=4", "=X1", "a=", "==\r\n",
		"a\nb\r\n", "\xff=FF", "x=\r\n", "soft=  \t\r\nbreak",
	} {
		want, err := refDecodeQP(in)
		if err != nil {
			continue
		}
		var got []byte
		decodeQP([]byte(in), func(p []byte) { got = append(got, p...) })
		if string(got) != want {
			t.Errorf("decodeQP(%q) = %q, Go gives %q", in, got, want)
		}
	}
}

func refDecodeQP(s string) (string, error) {
	leaves, err := refDecode([]byte("Content-Transfer-Encoding: quoted-printable\r\n\r\n" + s))
	if err != nil {
		return "", err
	}
	return leaves[0].Body, nil
}

func TestPermanent(t *testing.T) {
	for _, err := range []error{ErrHeaders8Bit, ErrHeaderLine} {
		d, ok := Permanent(errors.Join(errors.New("context"), err))
		if !ok || !strings.HasPrefix(d, "5.6.3 ") {
			t.Errorf("Permanent(%v) = %q, %v", err, d, ok)
		}
	}
	if _, ok := Permanent(io.ErrUnexpectedEOF); ok {
		t.Error("Permanent(io.ErrUnexpectedEOF) is ok")
	}
}

func BenchmarkConvert(b *testing.B) {
	text := strings.Repeat("Grüße aus Köln, "+strings.Repeat("x", 60)+"\r\n", 20000)
	bin := string(bytes.Repeat([]byte{0, 1, 2, 0xff, '\r', '\n', 'a'}, 300000))
	msg := []byte(crlfLines("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", "", "--b",
		"Content-Type: text/plain; charset=utf-8", "", text, "--b", "Content-Type: application/octet-stream", "",
		bin, "--b--"))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := Convert(io.Discard, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}
