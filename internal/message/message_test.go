package message

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func lines(ls ...string) string { return strings.Join(ls, "\r\n") }

var nested = lines(
	"From: Alice <alice@a.example>",
	"To: bob@b.example, \"Carol, C.\" <carol@c.example>",
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
	"Date: Mon, 7 Feb 1994 21:52:25 -0800",
	"Message-ID: <1@a.example>",
	"MIME-Version: 1.0",
	"Content-Type: multipart/mixed; boundary=outer",
	"",
	"preamble",
	"--outer",
	"Content-Type: text/plain; charset=utf-8",
	"Content-Transfer-Encoding: 8bit",
	"",
	"Hello,",
	"world",
	"--outer",
	"Content-Type: message/rfc822",
	"Content-Disposition: attachment; filename=fwd.eml",
	"",
	"From: Dave <dave@d.example>",
	"Subject: inner",
	"Content-Type: multipart/alternative; boundary=inner",
	"",
	"--inner",
	"",
	"plain",
	"--inner",
	"Content-Type: text/html",
	"",
	"<p>html</p>",
	"--inner--",
	"--outer",
	"Content-Type: image/gif; name=x.gif",
	"Content-Transfer-Encoding: base64",
	"Content-ID: <img1>",
	"",
	"R0lGODlh",
	"--outer--",
	"epilogue",
	"")

func TestParseNested(t *testing.T) {
	root := Parse([]byte(nested))
	if root.Type != "multipart" || root.Subtype != "mixed" || len(root.Parts) != 3 {
		t.Fatalf("root: %s/%s with %d parts", root.Type, root.Subtype, len(root.Parts))
	}
	section := func(p *Part) string { return nested[p.BodyStart:p.End] }
	header := func(p *Part) string { return nested[p.Start:p.BodyStart] }
	text := root.Parts[0]
	if text.Type != "text" || text.Subtype != "plain" || !reflect.DeepEqual(text.Params, []string{"charset", "utf-8"}) ||
		text.Encoding != "8BIT" || section(text) != "Hello,\r\nworld" || text.Lines != 2 {
		t.Errorf("part 1: %+v, body %q", text, section(text))
	}
	msg := root.Parts[1]
	if msg.Type != "message" || msg.Message == nil || msg.Disposition != "attachment" ||
		!reflect.DeepEqual(msg.DispParams, []string{"filename", "fwd.eml"}) {
		t.Fatalf("part 2: %+v", msg)
	}
	inner := msg.Message
	if inner.Envelope == nil || inner.Envelope.Subject != "inner" || len(inner.Parts) != 2 {
		t.Fatalf("part 2's message: %+v", inner)
	}
	if p := inner.Parts[0]; p.Type != "text" || p.Subtype != "plain" || section(p) != "plain" || header(p) != "\r\n" {
		t.Errorf("part 2.1: %+v body %q header %q", p, section(p), header(p))
	}
	if p := inner.Parts[1]; p.Subtype != "html" || section(p) != "<p>html</p>" {
		t.Errorf("part 2.2: %+v body %q", p, section(p))
	}
	gif := root.Parts[2]
	if gif.Type != "image" || gif.Encoding != "BASE64" || gif.ID != "<img1>" || section(gif) != "R0lGODlh" || gif.Lines != 0 {
		t.Errorf("part 3: %+v body %q", gif, section(gif))
	}
	env := root.Envelope
	if env.Subject != "=?utf-8?q?Gr=C3=BC=C3=9Fe?=" || env.MessageID != "<1@a.example>" || env.Date != "Mon, 7 Feb 1994 21:52:25 -0800" {
		t.Errorf("envelope: %+v", env)
	}
	want := []Address{{Mailbox: "bob", Host: "b.example"}, {Name: "Carol, C.", Mailbox: "carol", Host: "c.example"}}
	if !reflect.DeepEqual(env.To, want) || !reflect.DeepEqual(env.Sender, env.From) || !reflect.DeepEqual(env.ReplyTo, env.From) {
		t.Errorf("envelope addresses: to %+v, from %+v, sender %+v", env.To, env.From, env.Sender)
	}
	for _, tt := range []struct {
		nums []int
		want *Part
	}{
		{[]int{1}, text}, {[]int{2}, msg}, {[]int{2, 1}, inner.Parts[0]}, {[]int{2, 2}, inner.Parts[1]}, {[]int{3}, gif},
	} {
		got, err := root.Section(tt.nums)
		if err != nil || got != tt.want {
			t.Errorf("Section(%v) = %+v, %v", tt.nums, got, err)
		}
	}
	for _, bad := range [][]int{{4}, {0}, {1, 2}, {3, 1, 1}} {
		if _, err := root.Section(bad); err == nil {
			t.Errorf("Section(%v) found a part", bad)
		}
	}
	// A summary comes back as it went.
	hdr := []byte("Subject: kept\r\n\r\n")
	back, backHdr, ok := Decode(Encode(root, hdr))
	if !ok || !reflect.DeepEqual(back, root) || string(backHdr) != string(hdr) {
		t.Errorf("the summary did not come back as it went")
	}
	big := make([]byte, maxHeader+1)
	if _, h, ok := Decode(Encode(root, big)); !ok || h != nil {
		t.Errorf("a header section over %d bytes was kept in the summary (ok=%v, %d bytes)", maxHeader, ok, len(h))
	}
}

func TestParseSimpleAndBroken(t *testing.T) {
	tests := []struct {
		name, msg        string
		typ, sub         string
		bodyStart, lines int64
	}{
		{"a message without MIME is text/plain", "Subject: x\r\n\r\nline 1\r\nline 2\r\n", "text", "plain", 14, 2},
		{"bare LFs", "Subject: x\n\nbody\n", "text", "plain", 12, 1},
		{"no body", "Subject: x\r\n", "text", "plain", 12, 0},
		{"no header", "\r\nbody", "text", "plain", 2, 1},
		{"a Content-Type that does not parse", "Content-Type: ;;;\r\n\r\nx", "text", "plain", 21, 1},
		{"a multipart without its boundary is a leaf", "Content-Type: multipart/mixed\r\n\r\nx", "multipart", "mixed", 33, 0},
		{"folded fields", "Content-Type: text/html;\r\n charset=utf-8\r\n\r\n<p>", "text", "html", 44, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parse([]byte(tt.msg))
			if p.Type != tt.typ || p.Subtype != tt.sub || p.BodyStart != tt.bodyStart || p.End != int64(len(tt.msg)) || p.Lines != tt.lines {
				t.Errorf("got %s/%s body at %d lines %d end %d", p.Type, p.Subtype, p.BodyStart, p.Lines, p.End)
			}
			if s, err := p.Section([]int{1}); err != nil || s != p {
				t.Errorf("part 1 of a single-part message: %v, %v", s, err)
			}
		})
	}
}

func TestDigestPartsAreMessages(t *testing.T) {
	msg := lines("Content-Type: multipart/digest; boundary=d", "", "--d", "", "Subject: one", "", "body one", "--d--", "")
	root := Parse([]byte(msg))
	if len(root.Parts) != 1 || root.Parts[0].Type != "message" || root.Parts[0].Message == nil ||
		root.Parts[0].Message.Envelope.Subject != "one" {
		t.Fatalf("digest part: %+v", root.Parts)
	}
}

func TestParseAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want []Address
	}{
		{"alice@a.example", []Address{{Mailbox: "alice", Host: "a.example"}}},
		{"Alice Smith <alice@a.example>", []Address{{Name: "Alice Smith", Mailbox: "alice", Host: "a.example"}}},
		{`"Smith, Alice" <alice@a.example>, bob@b.example`, []Address{{Name: "Smith, Alice", Mailbox: "alice", Host: "a.example"}, {Mailbox: "bob", Host: "b.example"}}},
		{"alice@a.example (Alice)", []Address{{Name: "Alice", Mailbox: "alice", Host: "a.example"}}},
		{"=?utf-8?q?J=C3=B6rg?= <j@x.example>", []Address{{Name: "=?utf-8?q?J=C3=B6rg?=", Mailbox: "j", Host: "x.example"}}},
		{"team: a@x.example, b@y.example;", []Address{{Group: "team"}, {Mailbox: "a", Host: "x.example"}, {Mailbox: "b", Host: "y.example"}, {GroupEnd: true}}},
		{"undisclosed-recipients:;", []Address{{Group: "undisclosed-recipients"}, {GroupEnd: true}}},
		{"<@route.example:x@y.example>", []Address{{Route: "@route.example", Mailbox: "x", Host: "y.example"}}},
		{"first.last@[192.0.2.1]", []Address{{Mailbox: "first.last", Host: "[192.0.2.1]"}}},
		{"Jörg <jörg@bücher.example>", []Address{{Name: "Jörg", Mailbox: "jörg", Host: "bücher.example"}}},
		{"", nil},
		{"<>", []Address{{}}},
		{"just-a-name", []Address{{Mailbox: "just-a-name"}}},
		{",,, <a@b.example> >>", []Address{{Mailbox: "a", Host: "b.example"}}},
	}
	for _, tt := range tests {
		if got := ParseAddressList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseAddressList(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// Run with, for example:
//
//	go test -run='^$' -fuzz='^FuzzParse$' -fuzztime=60s ./internal/message

// FuzzParse: any input gives a structure whose parts lie within the
// message, each inside its parent's body, and whose summary decodes.
func FuzzParse(f *testing.F) {
	f.Add([]byte(nested))
	f.Add([]byte("Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\n--d--"))
	f.Add([]byte("To: a:b@c,(x(y)\\z) \"q\\\"\" <@r:s@[t]>;, u\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		root := Parse(msg)
		var check func(p *Part, lo, hi int64, depth int)
		check = func(p *Part, lo, hi int64, depth int) {
			if depth > maxDepth+1 {
				t.Fatalf("nested %d deep", depth)
			}
			if p.Start < lo || p.Start > p.BodyStart || p.BodyStart > p.End || p.End > hi {
				t.Fatalf("part [%d %d %d] outside [%d %d]", p.Start, p.BodyStart, p.End, lo, hi)
			}
			for _, c := range p.Parts {
				check(c, p.BodyStart, p.End, depth+1)
			}
			if p.Message != nil {
				check(p.Message, p.BodyStart, p.End, depth+1)
			}
		}
		check(root, 0, int64(len(msg)), 0)
		back, hdr, ok := Decode(Encode(root, msg[:root.BodyStart]))
		if !ok {
			t.Fatal("the summary does not decode")
		}
		if !reflect.DeepEqual(normal(back), normal(root)) || (root.BodyStart <= maxHeader && !bytes.Equal(hdr, msg[:root.BodyStart])) {
			t.Fatal("the summary did not come back as it went")
		}
		if shallow, hdr2, ok := DecodeHeader(Encode(root, msg[:root.BodyStart])); ok != (hdr != nil) ||
			ok && (shallow.BodyStart != root.BodyStart || shallow.End != root.End || !bytes.Equal(hdr2, hdr)) {
			t.Fatal("DecodeHeader differs from Decode")
		}
		if env, ok := DecodeEnvelope(Encode(root, nil)); !ok || !reflect.DeepEqual(normal(&Part{Envelope: env}).Envelope, normal(root).Envelope) {
			t.Fatal("DecodeEnvelope differs from Decode")
		}
		ParseAddressList(string(msg))
	})
}

// normal returns p with empty lists as nil (a summary does not keep the
// difference).
func normal(p *Part) *Part {
	if p == nil {
		return nil
	}
	q := *p
	for _, l := range []*[]string{&q.Params, &q.DispParams, &q.Language} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(q.Parts) == 0 {
		q.Parts = nil
	}
	for i, c := range q.Parts {
		q.Parts[i] = normal(c)
	}
	q.Message = normal(q.Message)
	if q.Envelope != nil {
		e := *q.Envelope
		for _, l := range []*[]Address{&e.From, &e.Sender, &e.ReplyTo, &e.To, &e.Cc, &e.Bcc} {
			if len(*l) == 0 {
				*l = nil
			}
		}
		if len(e.References) == 0 {
			e.References = nil
		}
		q.Envelope = &e
	}
	return &q
}

// FuzzDecode: a stored summary that was damaged is refused or read, never
// a crash.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(Parse([]byte(nested)), []byte("Subject: x\r\n\r\n")))
	f.Add([]byte{codecMagic, summaryVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if root, _, ok := Decode(b); ok {
			Encode(root, nil)
		}
		DecodeHeader(b)
		DecodeEnvelope(b)
	})
}

// A structure parsed without the fields written in front of a stored
// message is that of the stored message once Prefixed.
func TestPrefixed(t *testing.T) {
	prefix := "Return-Path: <a@b.example>\r\nReceived: by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	whole := Parse([]byte(prefix + nested))
	part := Parse([]byte(nested))
	part.Prefixed(int64(len(prefix)))
	if !reflect.DeepEqual(whole, part) {
		t.Errorf("prefixed structure differs from the whole message's")
	}
}
