// Package imapwire is the lexical layer of IMAP (RFC 9051 9, RFC 3501 9):
// it reads commands, with their literals, from a client within limits, and
// formats the strings, lists and literals of responses. It knows the
// grammar's tokens, not the commands: imapserver parses each command's
// arguments with a Parser and decides what they mean.
package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"mailroom/internal/spool"
)

// Limits bound what one command may bring; the zero value of a field means
// its default.
type Limits struct {
	// MaxLine is the most octets of one line of a command, literals not
	// counted (Dovecot's imap_max_line_length is the same 64 KiB: a UID set
	// of thousands of ranges fits).
	MaxLine int
	// MaxLiteral is the largest literal of any command but APPEND (a
	// password, a SEARCH string): 64 KiB.
	MaxLiteral int64
	// MaxAppend is the largest message APPEND takes (APPENDLIMIT, RFC
	// 7889): 25 MiB.
	MaxAppend int64
	// MaxLiterals is the most literals one command may have: 1,000 (a
	// MULTIAPPEND of that many messages).
	MaxLiterals int
	// MaxCommand is the most octets of all the lines of one command: 1 MiB.
	MaxCommand int
	// MemLiteral is the largest literal kept in memory; larger ones go to
	// a file in the spool directory: 64 KiB.
	MemLiteral int
}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = 64 << 10
	}
	if l.MaxLiteral <= 0 {
		l.MaxLiteral = 64 << 10
	}
	if l.MaxAppend <= 0 {
		l.MaxAppend = 25 << 20
	}
	if l.MaxLiterals <= 0 {
		l.MaxLiterals = 1000
	}
	if l.MaxCommand <= 0 {
		l.MaxCommand = 1 << 20
	}
	if l.MemLiteral <= 0 {
		l.MemLiteral = 64 << 10
	}
	return l
}

// literalMark stands for a literal in Command.Args: a NUL, which no line
// of a command may hold.
const literalMark = 0

// Command is one command as read: its tag and name (upper case, "UID" and
// the command after it joined by a space), and its arguments for a Parser.
type Command struct {
	Tag  string
	Name string
	// Args is what follows the name, starting with its space; each literal
	// is a NUL in place of "{n}" CRLF and its octets.
	Args     []byte
	Literals []*Literal
}

// Parser returns a parser of the command's arguments.
func (c *Command) Parser() *Parser { return &Parser{b: c.Args, lits: c.Literals} }

// Close releases the files of the command's large literals.
func (c *Command) Close() {
	for _, l := range c.Literals {
		l.close()
	}
}

// Literal is a literal read with a command.
type Literal struct {
	Size   int64
	Binary bool // literal8 (RFC 3516: "~{n}"), which may hold NULs
	data   *spool.Spool
}

// Reader returns the literal's octets.
func (l *Literal) Reader() io.Reader { return l.data.Reader() }

// Bytes returns the octets of a literal kept in memory, or nil for one in
// a file (see Limits.MemLiteral).
func (l *Literal) Bytes() []byte { return l.data.Bytes() }

func (l *Literal) close() { l.data.Close() }

// Errors of ReadCommand. A *ProtocolError leaves the connection in step:
// the session answers BAD (or NO) and reads the next command. ErrTooLong
// and a *FatalError do not: the session says BYE and closes.
var (
	// ErrTooLong is a line or command over its limit; the rest of it was
	// not read.
	ErrTooLong = errors.New("command line too long")
)

// ProtocolError is a command that cannot be read, with the tag if it had
// one, and what a client should be told.
type ProtocolError struct {
	Tag  string
	Text string
	// TooBig is a synchronizing literal refused before its octets were
	// sent: the reply is NO [TOOBIG] (RFC 4469) rather than BAD.
	TooBig bool
}

func (e *ProtocolError) Error() string { return e.Text }

// FatalError is a command after which the connection cannot go on, such
// as a non-synchronizing literal larger than the limit, whose octets the
// client sends whatever the server says.
type FatalError struct{ Text string }

func (e *FatalError) Error() string { return e.Text }

// Decoder reads commands from a client.
type Decoder struct {
	r        *bufio.Reader
	limits   Limits
	spoolDir string
	// OnLiteral is called before a literal's octets are read: for a
	// synchronizing one, it sends the continuation request ("+ ...") and
	// flushes; it also sets the read deadlines for size octets. An error
	// stops the command (and is returned by ReadCommand).
	OnLiteral func(size int64, sync bool) error
	// OnLine is called before each line after the first of a command (the
	// one after a literal), to set its deadline.
	OnLine func()
}

// NewDecoder returns a decoder reading from r, spooling large literals to
// files in spoolDir.
func NewDecoder(r *bufio.Reader, spoolDir string, limits Limits) *Decoder {
	return &Decoder{r: r, limits: limits.withDefaults(), spoolDir: spoolDir}
}

// Limits returns the limits in force (defaults filled in).
func (d *Decoder) Limits() Limits { return d.limits }

// ReadLine reads one line without its CRLF, within MaxLine (for the
// continuation lines of AUTHENTICATE and for IDLE's DONE).
func (d *Decoder) ReadLine() ([]byte, error) {
	line, err := d.readLine(d.limits.MaxLine)
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// readLine reads up to and including LF, failing with ErrTooLong beyond
// max octets.
func (d *Decoder) readLine(max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := d.r.ReadSlice('\n')
		if len(line)+len(frag) > max+2 {
			return nil, ErrTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// ReadCommand reads the next command, literals included.
func (d *Decoder) ReadCommand() (*Command, error) {
	line, err := d.readLine(d.limits.MaxLine)
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	cmd := &Command{}
	tag, rest, ok := bytes.Cut(line, []byte(" "))
	if len(tag) == 0 || !isTag(tag) {
		return nil, &ProtocolError{Text: "Every command starts with a tag (letters and digits), a space and a command name"}
	}
	cmd.Tag = string(tag)
	if !ok || len(rest) == 0 {
		return nil, &ProtocolError{Tag: cmd.Tag, Text: "A command name must follow the tag"}
	}
	name, _ := splitAtom(rest)
	cmd.Name = strings.ToUpper(string(name))
	if cmd.Name == "UID" && len(rest) > len(name)+1 {
		sub, _ := splitAtom(rest[len(name)+1:])
		cmd.Name += " " + strings.ToUpper(string(sub))
		name = rest[:len(name)+1+len(sub)]
	}
	if !isAtom(name) && !strings.HasPrefix(cmd.Name, "UID ") {
		return nil, &ProtocolError{Tag: cmd.Tag, Text: "The command name is not an atom"}
	}
	total := len(line)
	part := rest[len(name):]
	for {
		body, lit, ok := cutLiteral(part)
		if bytes.IndexByte(body, 0) >= 0 {
			cmd.Close()
			const text = "NUL octets are not allowed in a command line; send them in a literal8 (~{n})"
			if ok && !lit.sync {
				return nil, &FatalError{Text: text} // its octets are coming
			}
			return nil, &ProtocolError{Tag: cmd.Tag, Text: text}
		}
		cmd.Args = append(cmd.Args, body...)
		if !ok {
			return cmd, nil
		}
		if err := d.readLiteral(cmd, lit); err != nil {
			cmd.Close()
			return nil, err
		}
		cmd.Args = append(cmd.Args, literalMark)
		if d.OnLine != nil {
			d.OnLine()
		}
		next, err := d.readLine(d.limits.MaxLine)
		if err != nil {
			cmd.Close()
			return nil, err
		}
		if total += len(next); total > d.limits.MaxCommand {
			cmd.Close()
			return nil, ErrTooLong
		}
		part = bytes.TrimSuffix(next, []byte("\r"))
	}
}

// literalSpec is a literal announced at the end of a line.
type literalSpec struct {
	size   int64
	sync   bool
	binary bool
}

// cutLiteral splits a line that ends in a literal's announcement, "{n}",
// "{n+}" (RFC 7888) or "~{n}" (RFC 3516), from it.
func cutLiteral(line []byte) ([]byte, literalSpec, bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return line, literalSpec{}, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return line, literalSpec{}, false
	}
	digits := line[open+1 : len(line)-1]
	spec := literalSpec{sync: true}
	if d, ok := bytes.CutSuffix(digits, []byte("+")); ok {
		digits, spec.sync = d, false
	}
	if len(digits) == 0 || len(digits) > 19 {
		return line, literalSpec{}, false
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n < 0 {
		return line, literalSpec{}, false
	}
	spec.size = n
	body := line[:open]
	if b, ok := bytes.CutSuffix(body, []byte("~")); ok {
		body, spec.binary = b, true
	}
	return body, spec, true
}

// readLiteral reads one literal's octets into the command.
func (d *Decoder) readLiteral(cmd *Command, lit literalSpec) error {
	max := d.limits.MaxLiteral
	if cmd.Name == "APPEND" {
		max = d.limits.MaxAppend
	}
	switch {
	case len(cmd.Literals) >= d.limits.MaxLiterals:
		if lit.sync {
			return &ProtocolError{Tag: cmd.Tag, Text: fmt.Sprintf("A command may have at most %d literals", d.limits.MaxLiterals)}
		}
		return &FatalError{Text: fmt.Sprintf("A command may have at most %d literals", d.limits.MaxLiterals)}
	case lit.size > max && lit.sync:
		return &ProtocolError{Tag: cmd.Tag, TooBig: true,
			Text: fmt.Sprintf("The literal of %d octets is larger than the %d this command takes", lit.size, max)}
	case lit.size > max:
		return &FatalError{Text: fmt.Sprintf("A non-synchronizing literal of %d octets is larger than the %d this command takes", lit.size, max)}
	}
	if d.OnLiteral != nil {
		if err := d.OnLiteral(lit.size, lit.sync); err != nil {
			return err
		}
	}
	sp := spool.New(d.spoolDir, d.limits.MemLiteral)
	n, err := io.CopyN(sp, d.r, lit.size)
	if err != nil {
		sp.Close()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("reading a literal of %d octets (%d read): %w", lit.size, n, err)
	}
	if !lit.binary {
		// RFC 9051 4.3: a literal (not literal8) has no NUL.
		if b := sp.Bytes(); b != nil && bytes.IndexByte(b, 0) >= 0 {
			sp.Close()
			return &ProtocolError{Tag: cmd.Tag, Text: "A literal may not hold NUL octets; use a literal8 (~{n}) for binary data"}
		}
	}
	cmd.Literals = append(cmd.Literals, &Literal{Size: lit.size, Binary: lit.binary, data: sp})
	return nil
}

// isTag reports whether b is a tag: astring characters but '+'
// (RFC 9051 9, tag).
func isTag(b []byte) bool {
	for _, c := range b {
		if c == '+' || !isAStringChar(c) {
			return false
		}
	}
	return true
}

// splitAtom returns the atom at the start of b (up to a space or the end).
func splitAtom(b []byte) ([]byte, []byte) {
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}

func isAtom(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isAtomChar(c) {
			return false
		}
	}
	return true
}

// isAtomChar: any CHAR but atom-specials: "(" ")" "{" SP CTL "%" "*" DQUOTE
// "\" "]" (RFC 9051 9).
func isAtomChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAStringChar: ATOM-CHAR or "]".
func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// Map returns the literal's octets as one slice (mapped from its file when
// large; see spool.Spool.Map) and the function that releases it.
func (l *Literal) Map() ([]byte, func(), error) { return l.data.Map() }
