package imapwire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// Run with, for example:
//
//	go test -run='^$' -fuzz='^FuzzReadCommand$' -fuzztime=60s ./internal/imapwire

// FuzzReadCommand reads commands from arbitrary input and walks their
// arguments with every kind of token: nothing panics, each literal has its
// mark, and limits hold.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a1 NOOP\r\n", "x UID FETCH 1:*,3 (FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.100>)\r\n",
		"a LOGIN {5}\r\nalice \"pw\\\"x\"\r\n", "a APPEND INBOX (\\Seen) \"01-Jan-2024 10:00:00 +0100\" ~{3+}\r\na\x00b\r\n",
		"a SEARCH CHARSET UTF-8 SUBJECT {4}\r\nGrüß\r\n", "a STORE $ +FLAGS.SILENT \\Deleted\r\n", "\r\n", "a {99999999999999999999}\r\n",
	} {
		f.Add([]byte(s))
	}
	spoolDir := f.TempDir()
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDecoder(bufio.NewReaderSize(bytes.NewReader(in), 64), spoolDir, Limits{MaxLine: 512, MaxCommand: 4096, MaxLiteral: 1024, MaxAppend: 2048, MemLiteral: 100})
		for range 20 {
			cmd, err := d.ReadCommand()
			if err != nil {
				if _, ok := err.(*ProtocolError); ok {
					continue
				}
				return
			}
			if n := bytes.Count(cmd.Args, []byte{literalMark}); n != len(cmd.Literals) {
				t.Fatalf("%d literal marks for %d literals", n, len(cmd.Literals))
			}
			if len(cmd.Args) > 4096 {
				t.Fatalf("arguments of %d octets passed a 4096 limit", len(cmd.Args))
			}
			walk(cmd.Parser())
			cmd.Close()
		}
	})
}

// walk reads tokens of every kind until the parser is stuck.
func walk(p *Parser) {
	for i := 0; !p.AtEnd() && i < 100; i++ {
		before := p.pos
		p.Take(" ")
		switch i % 7 {
		case 0:
			p.AString()
		case 1:
			p.SeqSet()
		case 2:
			p.FlagList(true)
		case 3:
			p.DateTime()
		case 4:
			p.Number64()
		case 5:
			p.NString()
		case 6:
			p.Atom()
		}
		if p.pos == before && i%7 == 6 {
			p.pos++ // skip what no token takes
		}
	}
}

// FuzzUTF7: a name decodes only if encoding it again gives the same
// spelling, and any UTF-8 name survives encoding and decoding.
func FuzzUTF7(f *testing.F) {
	for _, s := range []string{"INBOX", "&U,BTFw-/&ZeVnLIqe-", "Tom &- Jerry", "&2D3eAA-", "&AGE-", "Grüße"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if dec, err := DecodeUTF7(s); err == nil {
			if enc := EncodeUTF7(dec); enc != s {
				t.Fatalf("DecodeUTF7(%q) = %q, which encodes as %q", s, dec, enc)
			}
		}
		if utf8.ValidString(s) && !strings.ContainsRune(s, utf8.RuneError) {
			enc := EncodeUTF7(s)
			if dec, err := DecodeUTF7(enc); err != nil || dec != s {
				t.Fatalf("%q encodes as %q, which decodes as %q, %v", s, enc, dec, err)
			}
		}
	})
}
