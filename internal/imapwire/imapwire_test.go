package imapwire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func decoder(in string, limits Limits) (*Decoder, *[]int64) {
	d := NewDecoder(bufio.NewReaderSize(strings.NewReader(in), 4096), "", limits)
	var asked []int64
	d.OnLiteral = func(size int64, sync bool) error {
		if sync {
			asked = append(asked, size)
		}
		return nil
	}
	return d, &asked
}

func TestReadCommand(t *testing.T) {
	tests := []struct {
		name, in   string
		tag, cmd   string
		args       string
		literals   []string
		continuing []int64 // sizes of the synchronizing literals asked for
	}{
		{"a command without arguments", "a1 NOOP\r\n", "a1", "NOOP", "", nil, nil},
		{"names are upper-cased", "a1 noop\r\n", "a1", "NOOP", "", nil, nil},
		{"a bare LF ends a line too", "a1 CAPABILITY\n", "a1", "CAPABILITY", "", nil, nil},
		{"UID and its command are one name", "x UID fetch 1:* (FLAGS)\r\n", "x", "UID FETCH", " 1:* (FLAGS)", nil, nil},
		{"a synchronizing literal is asked for", "a LOGIN {5}\r\nalice {6}\r\nsecret\r\n", "a", "LOGIN", " \x00 \x00",
			[]string{"alice", "secret"}, []int64{5, 6}},
		{"a non-synchronizing literal is not", "a LOGIN {5+}\r\nalice pw\r\n", "a", "LOGIN", " \x00 pw", []string{"alice"}, nil},
		{"a literal8 may hold NUL", "a APPEND INBOX ~{3}\r\na\x00b\r\n", "a", "APPEND", " INBOX \x00", []string{"a\x00b"}, []int64{3}},
		{"an empty literal", "a SELECT {0}\r\n\r\n", "a", "SELECT", " \x00", []string{""}, []int64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, asked := decoder(tt.in, Limits{})
			cmd, err := d.ReadCommand()
			if err != nil {
				t.Fatalf("ReadCommand: %v", err)
			}
			defer cmd.Close()
			if cmd.Tag != tt.tag || cmd.Name != tt.cmd || string(cmd.Args) != tt.args || len(cmd.Literals) != len(tt.literals) {
				t.Fatalf("got tag %q name %q args %q with %d literals", cmd.Tag, cmd.Name, cmd.Args, len(cmd.Literals))
			}
			for i, l := range cmd.Literals {
				b, _ := io.ReadAll(l.Reader())
				if string(b) != tt.literals[i] {
					t.Errorf("literal %d = %q, want %q", i, b, tt.literals[i])
				}
			}
			if len(*asked) != len(tt.continuing) {
				t.Errorf("continuations asked for %v, want %v", *asked, tt.continuing)
			}
		})
	}
}

func TestReadCommandErrors(t *testing.T) {
	long := "a NOOP " + strings.Repeat("x", 200) + "\r\n"
	tests := []struct {
		name, in string
		limits   Limits
		check    func(error) bool
	}{
		{"no tag", " NOOP\r\n", Limits{}, isProtocol("")},
		{"a tag with a '+'", "a+ NOOP\r\n", Limits{}, isProtocol("")},
		{"a tag alone", "a1\r\n", Limits{}, isProtocol("a1")},
		{"a line over the limit", long, Limits{MaxLine: 100}, func(err error) bool { return errors.Is(err, ErrTooLong) }},
		{"NUL in a line", "a NOOP \x00\r\n", Limits{}, isProtocol("a")},
		{"NUL in a literal", "a LOGIN {3}\r\na\x00b x\r\n", Limits{}, isProtocol("a")},
		{"a synchronizing literal over the limit is TOOBIG", "a LOGIN {100000}\r\n", Limits{}, func(err error) bool {
			var pe *ProtocolError
			return errors.As(err, &pe) && pe.TooBig && pe.Tag == "a"
		}},
		{"a non-synchronizing literal over the limit ends the connection", "a LOGIN {100000+}\r\n", Limits{}, func(err error) bool {
			var fe *FatalError
			return errors.As(err, &fe)
		}},
		{"too many literals", "a X {1}\r\na {1}\r\nb\r\n", Limits{MaxLiterals: 1}, isProtocol("a")},
		{"a literal cut short", "a LOGIN {10}\r\nabc", Limits{}, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"the end of the input", "", Limits{}, func(err error) bool { return err == io.EOF }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := decoder(tt.in, tt.limits)
			_, err := d.ReadCommand()
			if !tt.check(err) {
				t.Errorf("ReadCommand error = %v (%T)", err, err)
			}
		})
	}
}

func isProtocol(tag string) func(error) bool {
	return func(err error) bool {
		var pe *ProtocolError
		return errors.As(err, &pe) && pe.Tag == tag && !pe.TooBig && pe.Text != ""
	}
}

// An APPEND literal over the in-memory limit goes to a file and is read
// back whole.
func TestAppendLiteralSpooled(t *testing.T) {
	msg := strings.Repeat("line of a large message\r\n", 10000)
	d, _ := decoder("a APPEND INBOX (\\Seen) {"+itoa(len(msg))+"}\r\n"+msg+"\r\n", Limits{MemLiteral: 1024})
	d.spoolDir = t.TempDir()
	cmd, err := d.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Close()
	l := cmd.Literals[0]
	if l.Bytes() != nil {
		t.Error("a large literal was kept in memory")
	}
	b, _ := io.ReadAll(l.Reader())
	if string(b) != msg {
		t.Errorf("read back %d octets, want %d", len(b), len(msg))
	}
	// The same size is refused outside APPEND.
	d, _ = decoder("a LOGIN {"+itoa(len(msg))+"}\r\n", Limits{})
	if _, err := d.ReadCommand(); err == nil {
		t.Error("a literal of a message's size was taken by LOGIN")
	}
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n)) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func parse(t *testing.T, in string) *Parser {
	t.Helper()
	d, _ := decoder("t CMD"+in+"\r\n", Limits{})
	cmd, err := d.ReadCommand()
	if err != nil {
		t.Fatalf("ReadCommand(%q): %v", in, err)
	}
	p := cmd.Parser()
	if err := p.SP(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParserStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{"INBOX", "INBOX"},
		{"foo]bar", "foo]bar"},
		{`"with space"`, "with space"},
		{`"quote \" and \\"`, `quote " and \`},
		{`"Grüße"`, "Grüße"},
		{"{3}\r\nabc", "abc"},
	}
	for _, tt := range tests {
		p := parse(t, " "+tt.in)
		got, err := p.AString()
		if err != nil || got != tt.want || p.End() != nil {
			t.Errorf("AString(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{`"open`, `"bad \x"`, `(list)`, ``} {
		p := parse(t, " "+bad)
		if got, err := p.AString(); err == nil {
			t.Errorf("AString(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParserSeqSet(t *testing.T) {
	p := parse(t, " 1:3,7,9:*,5:2")
	set, err := p.SeqSet()
	if err != nil {
		t.Fatal(err)
	}
	if got := set.String(); got != "1:3,7,9:*,2:5" {
		t.Errorf("SeqSet = %s", got)
	}
	r := set.Resolve(12)
	for n, want := range map[uint32]bool{1: true, 4: true, 6: false, 7: true, 8: false, 12: true, 13: false} {
		if r.Contains(n) != want {
			t.Errorf("Contains(%d) = %v", n, !want)
		}
	}
	if s, err := parse(t, " $").SeqSet(); err != nil || !s.Saved {
		t.Errorf("$ = %+v, %v", s, err)
	}
	for _, bad := range []string{"0", "1:", "a", ",1", "99999999999"} {
		if _, err := parse(t, " "+bad).SeqSet(); err == nil {
			t.Errorf("SeqSet(%q) succeeded", bad)
		}
	}
	if got := Compact([]uint32{1, 2, 3, 5, 7, 8}); got != "1:3,5,7:8" {
		t.Errorf("Compact = %s", got)
	}
}

func TestParserFlagsAndDates(t *testing.T) {
	p := parse(t, ` (\Seen $Label1 \Answered) \Deleted foo "07-Feb-1994 21:52:25 -0800" 1-Feb-1994`)
	flags, err := p.FlagList(false)
	if err != nil || strings.Join(flags, ",") != `\Seen,$Label1,\Answered` {
		t.Fatalf("FlagList = %v, %v", flags, err)
	}
	p.SP()
	flags, err = p.FlagList(true)
	if err != nil || strings.Join(flags, ",") != `\Deleted,foo` {
		t.Fatalf("bare flags = %v, %v", flags, err)
	}
	p.SP()
	dt, err := p.DateTime()
	if err != nil || !dt.Equal(time.Date(1994, 2, 8, 5, 52, 25, 0, time.UTC)) {
		t.Errorf("DateTime = %v, %v", dt, err)
	}
	p.SP()
	d, err := p.Date()
	if err != nil || d.Day() != 1 || d.Month() != time.February {
		t.Errorf("Date = %v, %v", d, err)
	}
	if err := p.End(); err != nil {
		t.Error(err)
	}
}

func TestAppendStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{"INBOX", "INBOX"},
		{"a b", `"a b"`},
		{"NIL", `"NIL"`},
		{"", `""`},
		{`q"x`, `"q\"x"`},
		{"line\r\nbreak", "{11}\r\nline\r\nbreak"},
		{"\xff", "{1}\r\n\xff"},
	}
	for _, tt := range tests {
		if got := string(AppendAString(nil, tt.in)); got != tt.want {
			t.Errorf("AppendAString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUTF7(t *testing.T) {
	tests := []struct{ utf8, utf7 string }{
		{"INBOX", "INBOX"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"Tom & Jerry", "Tom &- Jerry"},
		{"Entwürfe", "Entw&APw-rfe"},
		{"😀", "&2D3eAA-"},
	}
	for _, tt := range tests {
		if got := EncodeUTF7(tt.utf8); got != tt.utf7 {
			t.Errorf("EncodeUTF7(%q) = %q, want %q", tt.utf8, got, tt.utf7)
		}
		if got, err := DecodeUTF7(tt.utf7); err != nil || got != tt.utf8 {
			t.Errorf("DecodeUTF7(%q) = %q, %v; want %q", tt.utf7, got, err, tt.utf8)
		}
	}
	for _, bad := range []string{"&", "&Jjo", "&AGE-", "&U,B-", "a\x80b", "&U,BTFw-&ZeVnLIqe-", "&2D0-"} {
		if got, err := DecodeUTF7(bad); err == nil {
			t.Errorf("DecodeUTF7(%q) = %q, want an error", bad, got)
		}
	}
}

// 4294967295 is a number, not '*' (imaptest search-sets).
func TestSeqSetLargestNumberIsNotStar(t *testing.T) {
	set, err := parse(t, " 7:4294967295").SeqSet()
	if err != nil {
		t.Fatal(err)
	}
	r := set.Resolve(5)
	if r.Contains(5) || !r.Contains(7) || !r.Contains(4294967295) {
		t.Errorf("7:4294967295 resolved against 5 = %+v", r)
	}
}
