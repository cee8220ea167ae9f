package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Run a target with, for example:
//
//	go test -run='^$' -fuzz='^FuzzReadData$' -fuzztime=20s ./internal/smtp

var commandSeeds = []string{
	// Real commands.
	"EHLO client.example.com\r\n",
	"HELO client\r\n",
	"MAIL FROM:<alice@example.com> SIZE=1000 BODY=8BITMIME\r\n",
	"MAIL FROM:<> RET=HDRS ENVID=QQ314159\r\n",
	"RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+40example.org\r\n",
	"RCPT TO:<Postmaster>\r\n",
	"DATA\r\n",
	"BDAT 1000 LAST\r\n",
	"RSET\r\n",
	"NOOP\r\n",
	"QUIT\r\n",
	"STARTTLS\r\n",
	"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	"VRFY alice\r\n",
	// Hostile ones.
	"", "\r\n", "\n", "\r", "NOOP\n", "NOOP\r", "NOOP\n\r", "NOOP\r\r\n",
	"MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n",
	"MAIL FROM:<a@b>\nRCPT TO:<c@d>\r\n",
	"NOOP\r\nNOOP\r\n",
	" NOOP\r\n", "NOOP\tx\r\n", "NO\x00OP\r\n", "NÖOP\r\n",
	strings.Repeat("A", 11) + "\r\n",
	"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n",
	"GET / HTTP/1.1\r\n",
	"MAIL FROM:<" + strings.Repeat("a", 300) + "@example.com>\r\n",
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		if err != nil {
			if !errors.Is(err, ErrBareLineEnding) && !errors.Is(err, ErrEmptyCommand) && !errors.Is(err, ErrBadCommand) {
				t.Fatalf("ParseCommand(%q) error = %v, not one of the command errors", line, err)
			}
			return
		}
		if !bytes.HasSuffix(line, crlf) {
			t.Fatalf("ParseCommand(%q) accepted a line not ending in CRLF", line)
		}
		body := line[:len(line)-2]
		if bytes.ContainsAny(body, "\r\n") {
			t.Fatalf("ParseCommand(%q) accepted a CR or LF inside the line", line)
		}
		if n := len(cmd.Verb); n < 1 || n > 10 {
			t.Fatalf("ParseCommand(%q) verb %q has %d characters", line, cmd.Verb, n)
		}
		for _, c := range []byte(cmd.Verb) {
			if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				t.Fatalf("ParseCommand(%q) verb %q is not upper-case letters and digits", line, cmd.Verb)
			}
		}
		verb, arg, _ := bytes.Cut(body, []byte(" "))
		if cmd.Verb != strings.ToUpper(string(verb)) || cmd.Arg != string(arg) {
			t.Fatalf("ParseCommand(%q) = %+v, which is not the line split at its first space", line, cmd)
		}
	})
}

var pathSeeds = []string{
	"<user@example.com>", "<User@EXAMPLE.Com> SIZE=100", "<>", "<> BODY=8BITMIME",
	"<@a.example,@b.example:u@c.example>", `<@a.example:"x:y"@c.example>`,
	`<"a@b"@example.com>`, `<"john smith"@example.com>`, `<"a\"b\\c"@example.com>`, `<"a>b"@example.com>`,
	"<a%b@local.example>", "<b!a@local.example>",
	"<u@[192.0.2.1]>", "<u@[IPv6:2001:db8::1]>", "<u@[ipv6:2001:DB8:0:0:0:0:0:1]>", "<u@[IPv6:::ffff:192.0.2.1]>",
	"<u@bücher.example>", "<jörg@münchen.de>", "<用户@例子.广告>",
	// Hostile ones.
	"", "<", ">", "<>>", "<<>>", "<@>", "<@:>", "<:>", `<"">`, `<"\`, `<"a\`, `<"a"`, "<a@b>x", "<a@b>\t",
	"<u@[IPv6:fe80::1%eth0]>", "<u@[IPv6:fe80::1%\x00]>", "<u@[IPv6:fe80::1%a>b]>", "<u@[]>", "<u@[",
	"<u@example.com.>", "<u@example。>", "<u@xn--.example>", "<u@-.example>", "<\xff@example.com>",
	"<\"\x00\"@example.com>", "<a@b@c>", "<@a,@b,@c:d@e>",
	"<" + strings.Repeat("a", 65) + "@example.com>",
	"<u@" + strings.Repeat("a.", 130) + "example>",
	`<"` + strings.Repeat(`\"`, 40) + `"@example.com>`,
}

func FuzzParsePath(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, allowNull bool) {
		a, rest, err := ParsePath(s, allowNull)
		if err != nil {
			var r *Reply
			if !errors.As(err, &r) || r.Code != 501 {
				t.Fatalf("ParsePath(%q) error = %v, want a 501 reply", s, err)
			}
			return
		}
		if !strings.HasSuffix(s, rest) || strings.HasPrefix(rest, " ") {
			t.Fatalf("ParsePath(%q) rest = %q", s, rest)
		}
		if a.IsNull() {
			if !allowNull || !strings.HasPrefix(s, "<>") {
				t.Fatalf("ParsePath(%q, %v) gave the null path", s, allowNull)
			}
			return
		}
		if a.Local == "" || len(a.Local) > 64 {
			t.Fatalf("ParsePath(%q) local part %q has %d octets", s, a.Local, len(a.Local))
		}
		if a.Domain == "" || !IsASCII(a.Domain) || strings.ToLower(a.Domain) != a.Domain && !strings.HasPrefix(a.Domain, "[IPv6:") {
			t.Fatalf("ParsePath(%q) domain %q is not lower-case ASCII", s, a.Domain)
		}
		if a.UTF8() != !IsASCII(a.Local) {
			t.Fatalf("ParsePath(%q) UTF8() = %v for local part %q", s, a.UTF8(), a.Local)
		}
		str := a.String()
		for i := 0; i < len(str); i++ {
			if str[i] < 0x20 || str[i] == 0x7f {
				t.Fatalf("ParsePath(%q) = %q holds control character %q", s, str, str[i])
			}
		}
		b, err := ParseMailbox(str)
		if err != nil {
			t.Fatalf("ParsePath(%q) = %q, which ParseMailbox refuses: %v", s, str, err)
		}
		if b != a {
			t.Fatalf("ParsePath(%q) = %#v, String() = %q re-parses as %#v", s, a, str, b)
		}
		c, _, err := ParsePath("<"+str+">", false)
		if err != nil && !errors.Is(err, ErrPathTooLong) { // A-labels can be longer than U-labels
			t.Fatalf("ParsePath(<%s>) error = %v", str, err)
		}
		if err == nil && c != a {
			t.Fatalf("ParsePath(<%s>) = %#v, want %#v", str, c, a)
		}
	})
}

// encodeMailParams writes p back in canonical form.
func encodeMailParams(p MailParams) string {
	var out []string
	if p.Size != 0 {
		out = append(out, "SIZE="+strconv.FormatInt(p.Size, 10))
	}
	if p.Body != "" {
		out = append(out, "BODY="+p.Body)
	}
	if p.SMTPUTF8 {
		out = append(out, "SMTPUTF8")
	}
	if p.Ret != "" {
		out = append(out, "RET="+p.Ret)
	}
	if p.EnvID != "" {
		out = append(out, "ENVID="+EncodeXtext(p.EnvID))
	}
	if p.Auth != "" {
		out = append(out, "AUTH="+EncodeXtext(p.Auth))
	}
	return strings.Join(out, " ")
}

// encodeRcptParams writes p back in canonical form.
func encodeRcptParams(p RcptParams) string {
	var out []string
	if p.Notify != nil {
		out = append(out, "NOTIFY="+strings.Join(p.Notify, ","))
	}
	if p.ORcpt != "" {
		typ, addr, _ := strings.Cut(p.ORcpt, ";")
		out = append(out, "ORCPT="+typ+";"+EncodeXtext(addr))
	}
	return strings.Join(out, " ")
}

func FuzzParseParams(f *testing.F) {
	for _, s := range []string{
		"", "SIZE=1000", "SIZE=1000 BODY=8BITMIME SMTPUTF8", "BODY=7BIT RET=FULL ENVID=QQ314159",
		"RET=HDRS ENVID=a+2Bb+3Dc", "NOTIFY=NEVER", "NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;bob+40example.org",
		"ORCPT=utf-8;j+C3+B6rg@example.com", "AUTH=<>", "BODY=BINARYMIME",
		// Hostile ones.
		"ENVID=+0D+0AX:+20y", "ORCPT=rfc822;a+0D+0AB", "SIZE=-1", "SIZE=+1", "SIZE=99999999999999999999",
		"SIZE=1 SIZE=1", "size=1 SIZE=1", "NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,,FAILURE", "NOTIFY=",
		"ORCPT=;", "ORCPT=a;", "ORCPT=\x92;0", "ORCPT=a=b;c;d", "ENVID", "ENVID=+", "ENVID=+2", "ENVID=+2b", "=", "==", "A=B=C",
		"  SIZE=1  ", "\tSIZE=1", strings.Repeat("X", 1000), strings.Repeat("A=1 ", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkReply := func(what string, err error) {
			var r *Reply
			if !errors.As(err, &r) || r.Code != 501 && r.Code != 555 {
				t.Fatalf("%s(%q) error = %v, want a 501 or 555 reply", what, s, err)
			}
		}
		if p, err := ParseMailParams(s); err != nil {
			checkReply("ParseMailParams", err)
		} else {
			if p.Size < 0 || !slices.Contains([]string{"", "7BIT", "8BITMIME"}, p.Body) || !slices.Contains([]string{"", "FULL", "HDRS"}, p.Ret) ||
				!printableASCII(p.EnvID) || len(p.EnvID) > 100 {
				t.Fatalf("ParseMailParams(%q) = %+v", s, p)
			}
			canon := encodeMailParams(p)
			if q, err := ParseMailParams(canon); err != nil || q != p {
				t.Fatalf("ParseMailParams(%q) = %+v; its canonical form %q parses as %+v, %v", s, p, canon, q, err)
			}
		}
		if p, err := ParseRcptParams(s); err != nil {
			checkReply("ParseRcptParams", err)
		} else {
			seen := map[string]bool{}
			for _, n := range p.Notify {
				if seen[n] || !slices.Contains([]string{"NEVER", "SUCCESS", "FAILURE", "DELAY"}, n) {
					t.Fatalf("ParseRcptParams(%q) NOTIFY = %q", s, p.Notify)
				}
				seen[n] = true
			}
			if seen["NEVER"] && len(p.Notify) != 1 {
				t.Fatalf("ParseRcptParams(%q) NOTIFY = %q mixes NEVER with events", s, p.Notify)
			}
			if typ, addr, ok := strings.Cut(p.ORcpt, ";"); p.ORcpt != "" && (!ok || typ == "" || addr == "" || !printableASCII(p.ORcpt)) {
				t.Fatalf("ParseRcptParams(%q) ORCPT = %q", s, p.ORcpt)
			}
			canon := encodeRcptParams(p)
			if q, err := ParseRcptParams(canon); err != nil || !reflect.DeepEqual(q, p) {
				t.Fatalf("ParseRcptParams(%q) = %+v; its canonical form %q parses as %+v, %v", s, p, canon, q, err)
			}
		}
	})
}

// dataEnd returns the length of the data ReadData must consume from in:
// through the first CRLF "." CRLF, or through "." CRLF at the very start
// (the CRLF of the DATA command precedes it); -1 if there is no end.
func dataEnd(in []byte) int {
	if bytes.HasPrefix(in, []byte(".\r\n")) {
		return 3
	}
	if i := bytes.Index(in, []byte("\r\n.\r\n")); i >= 0 {
		return i + 5
	}
	return -1
}

// normalizeData is a reference for ReadData under the normalize policy:
// content is the data before the end marker, read one octet at a time.
func normalizeData(content []byte) (out []byte, bare bool) {
	sol := true // at the start of a line that follows CRLF
	for i := 0; i < len(content); i++ {
		c := content[i]
		if sol && c == '.' {
			sol = false
			continue
		}
		sol = false
		switch {
		case c == '\r' && i+1 < len(content) && content[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
			sol = true
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
			bare = true
		default:
			out = append(out, c)
		}
	}
	return out, bare
}

// countBareEOL counts the CRs not followed by LF and LFs not preceded by CR.
func countBareEOL(b []byte) int {
	n := 0
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') || c == '\n' && (i == 0 || b[i-1] != '\r') {
			n++
		}
	}
	return n
}

func FuzzReadData(f *testing.F) {
	for _, tc := range dataCases {
		f.Add([]byte(tc.in+nextCommand), uint8(0), uint16(65535), true)
		f.Add([]byte(tc.in), uint8(3), uint16(10), false)
	}
	for _, s := range []string{
		"", ".", ".\r", ".\r\n", "\r\n.\r\n", "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r", "\r\n\x00.\r\n", "\r\n .\r\n",
		"a\r\n.\r", "a\n.\n", "a\r.\r\n", strings.Repeat("x", 15) + "\r\n.\r\n", strings.Repeat("x", 15) + "\r.\r\n",
		strings.Repeat(".", 40) + "\r\n.\r\n", "\r\r\r\n\n\n.\r\n.\r\n", "a\r\n..\r\n...\r\n.\r\nQUIT\r\n",
	} {
		f.Add([]byte(s), uint8(0), uint16(100), true)
		f.Add([]byte(s), uint8(1), uint16(2), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSel uint8, limit16 uint16, normalize bool) {
		size := 16 + int(bufSel%8)
		if bufSel >= 128 {
			size = 4096
		}
		limit := int64(limit16)
		policy := RejectBareLineEndings
		if normalize {
			policy = NormalizeBareLineEndings
		}
		src := bytes.NewReader(in)
		r := bufio.NewReaderSize(src, size)
		var w bytes.Buffer
		res, err := ReadData(r, &w, limit, policy)
		consumed := len(in) - src.Len() - r.Buffered()
		out := w.Bytes()

		if int64(len(out)) > limit {
			t.Fatalf("wrote %d octets past a limit of %d", len(out), limit)
		}
		if normalize && bareEOL(string(out)) {
			t.Fatalf("ReadData(%q) wrote %q, which has a bare CR or LF", in, out)
		}
		end := dataEnd(in)
		if end < 0 {
			if !errors.Is(err, io.ErrUnexpectedEOF) || res.Complete {
				t.Fatalf("ReadData(%q) = %+v, %v; want an unexpected EOF", in, res, err)
			}
			return
		}
		if err != nil || !res.Complete {
			t.Fatalf("ReadData(%q) = %+v, %v; want the data to end after %d octets", in, res, err, end)
		}
		if consumed != end {
			t.Fatalf("ReadData(%q) consumed %d octets (%q), want %d", in, consumed, in[:consumed], end)
		}
		if tail := in[:consumed]; !bytes.HasSuffix(tail, []byte(".\r\n")) || consumed > 3 && !bytes.HasSuffix(tail, []byte("\r\n.\r\n")) {
			t.Fatalf("ReadData(%q) stopped after %q", in, tail)
		}
		content := in[:end-3]
		if int64(len(out)) > int64(len(content)+countBareEOL(content)) {
			t.Fatalf("ReadData(%q) wrote %d octets from %d with %d bare line endings", in, len(out), len(content), countBareEOL(content))
		}
		want, bare := normalizeData(content)
		if res.BareEOL != bare || res.TooBig != (res.Size > limit) {
			t.Fatalf("ReadData(%q) = %+v, want BareEOL=%v limit=%d", in, res, bare, limit)
		}
		// Under the reject policy a message with a bare CR or LF is refused,
		// so only its detection matters.
		if normalize || !bare {
			if res.Size != int64(len(want)) {
				t.Fatalf("ReadData(%q) Size = %d, want %d", in, res.Size, len(want))
			}
			if !bytes.HasPrefix(want, out) || !res.TooBig && !bytes.Equal(out, want) {
				t.Fatalf("ReadData(%q) wrote %q, want %q", in, out, want)
			}
		}
	})
}

// normalizeChunks is a reference for a ChunkWriter under the normalize policy.
func normalizeChunks(in []byte) (out []byte, bare bool) {
	for i := 0; i < len(in); i++ {
		switch c := in[i]; {
		case c == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
			bare = true
		default:
			out = append(out, c)
		}
	}
	if len(out) > 0 && !bytes.HasSuffix(out, crlf) {
		out = append(out, crlf...)
	}
	return out, bare
}

func FuzzChunkWriter(f *testing.F) {
	for _, tc := range chunkCases {
		f.Add([]byte(tc.in), uint64(1), uint16(65535), true)
		f.Add([]byte(tc.in), uint64(2), uint16(3), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64, limit16 uint16, normalize bool) {
		limit := int64(limit16)
		policy := RejectBareLineEndings
		if normalize {
			policy = NormalizeBareLineEndings
		}
		var w bytes.Buffer
		cw := NewChunkWriter(&w, limit, policy)
		rng := rand.New(rand.NewPCG(seed, seed))
		var chunks [][]byte
		for rest := in; ; {
			n := rng.IntN(len(rest) + 1)
			chunks = append(chunks, rest[:n])
			if _, err := cw.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			if rest = rest[n:]; len(rest) == 0 {
				break
			}
		}
		res, err := cw.Close()
		if err != nil {
			t.Fatal(err)
		}
		out := w.Bytes()
		want, bare := normalizeChunks(in)
		if res.BareEOL != bare || res.TooBig != (res.Size > limit) || !res.Complete {
			t.Fatalf("chunks %q = %+v, want BareEOL=%v limit=%d", chunks, res, bare, limit)
		}
		if int64(len(out)) > limit {
			t.Fatalf("chunks %q wrote %d octets past a limit of %d", chunks, len(out), limit)
		}
		if normalize || !bare {
			if res.Size != int64(len(want)) {
				t.Fatalf("chunks %q Size = %d, want %d", chunks, res.Size, len(want))
			}
			if !bytes.HasPrefix(want, out) || !res.TooBig && !bytes.Equal(out, want) {
				t.Fatalf("chunks %q wrote %q, want %q", chunks, out, want)
			}
		}
		if normalize && bareEOL(string(out)) && !res.TooBig {
			t.Fatalf("chunks %q wrote %q, which has a bare CR or LF", chunks, out)
		}
	})
}
