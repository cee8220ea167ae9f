package tests

// The reader of Dovecot's imaptest scripts (testdata/imaptest/README.md
// and ../../shared/imaptest/README.md say the format): headers, command
// groups, expected untagged replies, and the IMAP arguments both sides are
// compared as.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// itArg is one IMAP argument: an atom, a string, NIL, or a list.
type itArg struct {
	kind  byte // 'a' atom, 's' string (quoted or literal), 'n' NIL, 'l' list
	text  string
	items []itArg
}

func (a itArg) String() string {
	switch a.kind {
	case 'n':
		return "NIL"
	case 's':
		return strconv.Quote(a.text)
	case 'l':
		parts := make([]string, len(a.items))
		for i, it := range a.items {
			parts[i] = it.String()
		}
		return "(" + strings.Join(parts, " ") + ")"
	}
	return a.text
}

func argsString(args []itArg) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = a.String()
	}
	return strings.Join(parts, " ")
}

// itParser turns a line (with literals already in place as "{n}\r\n"
// and their octets) into arguments, as imaptest's parser does with
// ATOM_ALLCHARS: anything up to a space or a parenthesis is an atom, and
// "[...]" inside an atom keeps its spaces and parentheses.
type itParser struct {
	s   string
	pos int
}

func parseITArgs(s string) ([]itArg, error) {
	p := &itParser{s: s}
	args, err := p.list(false)
	if err != nil {
		return nil, fmt.Errorf("%w in %q", err, s)
	}
	return args, nil
}

func (p *itParser) list(nested bool) ([]itArg, error) {
	var out []itArg
	for {
		for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\r' || p.s[p.pos] == '\n') {
			p.pos++
		}
		if p.pos >= len(p.s) {
			if nested {
				return nil, fmt.Errorf("unclosed list")
			}
			return out, nil
		}
		switch c := p.s[p.pos]; c {
		case ')':
			p.pos++
			if !nested {
				return nil, fmt.Errorf("unexpected ')'")
			}
			return out, nil
		case '(':
			p.pos++
			items, err := p.list(true)
			if err != nil {
				return nil, err
			}
			out = append(out, itArg{kind: 'l', items: items})
		case '"':
			s, err := p.quoted()
			if err != nil {
				return nil, err
			}
			out = append(out, itArg{kind: 's', text: s})
		case '{', '~':
			if lit, ok := p.literal(); ok {
				out = append(out, itArg{kind: 's', text: lit})
				continue
			}
			out = append(out, p.atom())
		default:
			out = append(out, p.atom())
		}
	}
}

func (p *itParser) quoted() (string, error) {
	p.pos++
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.pos < len(p.s) {
				b.WriteByte(p.s[p.pos])
				p.pos++
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unclosed quoted string")
}

// literal reads "{n}" CRLF and n octets (or "~{n}"), if that comes next.
func (p *itParser) literal() (string, bool) {
	start := p.pos
	if p.s[p.pos] == '~' {
		p.pos++
	}
	if p.pos >= len(p.s) || p.s[p.pos] != '{' {
		p.pos = start
		return "", false
	}
	end := strings.IndexByte(p.s[p.pos:], '}')
	if end < 0 {
		p.pos = start
		return "", false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(p.s[p.pos+1:p.pos+end], "+"))
	rest := p.s[p.pos+end+1:]
	if err != nil || !strings.HasPrefix(rest, "\r\n") || len(rest)-2 < n {
		p.pos = start
		return "", false
	}
	p.pos += end + 3
	lit := p.s[p.pos : p.pos+n]
	p.pos += n
	return lit, true
}

func (p *itParser) atom() itArg {
	start := p.pos
	depth := 0
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if depth == 0 && (c == ' ' || c == '(' || c == ')' || c == '\r' || c == '\n') {
			break
		}
		switch c {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		}
		p.pos++
	}
	t := p.s[start:p.pos]
	if strings.EqualFold(t, "NIL") {
		return itArg{kind: 'n', text: t}
	}
	return itArg{kind: 'a', text: t}
}

// itScript is one test file.
type itScript struct {
	name         string
	caps         []string
	state        string // nonauth, auth, created, appended, selected
	connections  int
	messages     int // -1: all
	mbox         string
	groups       []*itGroup
	hasLogout    bool
	ignoreExtras bool
}

// itGroup is commands sent together on one connection, and what must
// (and must not) come back before their tagged replies.
type itGroup struct {
	line     int
	conn     int // 0-based
	commands []*itCommand
	untagged []itExpect
	ordered  bool
	sleepMS  int
}

type itCommand struct {
	tag   int // 0 for the group's only command
	text  string
	reply []itArg // expected tagged reply (ok/no/bad and more), or nil for any
	line  int
}

type itExpect struct {
	args      []itArg
	existence byte // '*' must, '!' must not, '?' may
}

// readScripts reads every test in dir.
func readScripts(dir string) ([]*itScript, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*itScript
	for _, e := range entries {
		n := e.Name()
		if strings.HasSuffix(n, ".mbox") || strings.HasPrefix(n, ".") || strings.Contains(n, ".") || strings.HasPrefix(n, "COPYING") {
			continue
		}
		f, err := os.Open(dir + "/" + n)
		if err != nil {
			return nil, err
		}
		sc, err := parseScript(n, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		sc.mbox = dir + "/default.mbox"
		if _, err := os.Stat(dir + "/" + n + ".mbox"); err == nil {
			sc.mbox = dir + "/" + n + ".mbox"
		}
		out = append(out, sc)
	}
	return out, nil
}

// parseScript reads one test file.
func parseScript(name string, r io.Reader) (*itScript, error) {
	sc := &itScript{name: name, state: "selected", connections: 1, ignoreExtras: true}
	br := bufio.NewReader(r)
	header := true
	var cur *itGroup
	pending := 0 // commands of cur still waiting for their reply line
	lineNo := 0
	skipping := false
	var ifs []bool
	// readRaw reads a line with its line ending.
	readRaw := func() (string, bool) {
		l, err := br.ReadString('\n')
		if err != nil && l == "" {
			return "", false
		}
		lineNo++
		return l, true
	}
	readLine := func() (string, bool) {
		l, ok := readRaw()
		return strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r"), ok
	}
	for {
		line, ok := readLine()
		if !ok {
			break
		}
		start := lineNo
		// A line ending in "{{{" continues until "}}}", as a literal.
		for strings.HasSuffix(line, "{{{") {
			binary := strings.HasSuffix(line, "~{{{")
			prefix := strings.TrimSuffix(strings.TrimSuffix(line, "{{{"), "~")
			// A literal's lines end in CRLF; a literal8's keep the line
			// endings of the file, less the last LF.
			var body []string
			var raw strings.Builder
			rest := ""
			for {
				l, ok := readRaw()
				if !ok {
					return nil, fmt.Errorf("line %d: multi-line value not ended", start)
				}
				if strings.HasPrefix(l, "}}}") {
					rest = strings.TrimRight(l[3:], "\r\n")
					break
				}
				raw.WriteString(l)
				body = append(body, strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r"))
			}
			lit := strings.Join(body, "\r\n")
			if binary {
				lit = strings.TrimSuffix(raw.String(), "\n")
			}
			mark := "{"
			if binary {
				mark = "~{"
			}
			line = prefix + mark + strconv.Itoa(len(lit)) + "}\r\n" + lit + rest
		}
		if header {
			if line == "" {
				header = false
				continue
			}
			if strings.HasPrefix(line, "#") {
				continue
			}
			key, value, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("line %d: header without ':'", start)
			}
			value = strings.TrimSpace(value)
			switch strings.ToLower(strings.TrimSpace(key)) {
			case "capabilities":
				sc.caps = strings.Fields(value)
			case "state":
				sc.state = strings.ToLower(value)
			case "connections":
				sc.connections, _ = strconv.Atoi(value)
			case "messages":
				if value == "all" {
					sc.messages = -1
				} else {
					sc.messages, _ = strconv.Atoi(value)
				}
			case "user 1", "user 2":
				// Other users' logins: only urlauth2 has them, and it needs
				// URLAUTH, which the server does not announce.
			case "ignore_extra_untagged":
				sc.ignoreExtras = strings.HasPrefix(value, "y")
			default:
				return nil, fmt.Errorf("line %d: unknown header %q", start, key)
			}
			continue
		}
		// No environment variables are set: "!ifenv X" skips to its
		// "!else" or "!endif", "!ifnenv X" runs.
		switch {
		case strings.HasPrefix(line, "!ifenv ") || strings.HasPrefix(line, "!ifnenv "):
			ifs = append(ifs, skipping)
			if strings.HasPrefix(line, "!ifenv ") {
				skipping = true
			}
			continue
		case line == "!else" && len(ifs) > 0:
			if !ifs[len(ifs)-1] {
				skipping = !skipping
			}
			continue
		case line == "!endif" && len(ifs) > 0:
			skipping, ifs = ifs[len(ifs)-1], ifs[:len(ifs)-1]
			continue
		}
		if skipping || line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur != nil {
			switch {
			case strings.HasPrefix(line, "!sleep "):
				cur.sleepMS, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(line[7:]), "ms"))
				continue
			case strings.HasPrefix(line, "!output "):
				continue
			case line == "!ordered":
				cur.ordered = true
				continue
			}
			if len(line) > 2 && (line[0] == '*' || line[0] == '!' || line[0] == '?') && line[1] == ' ' {
				args, err := parseITArgs(line[2:])
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", start, err)
				}
				cur.untagged = append(cur.untagged, itExpect{args: args, existence: line[0]})
				continue
			}
			if pending > 0 {
				rest := line
				if sc.connections > 1 {
					if n, r, ok := strings.Cut(rest, " "); ok {
						if _, err := strconv.Atoi(n); err == nil {
							rest = r
						}
					}
				}
				if tag, reply, ok := replyOf(rest); ok {
					for _, c := range cur.commands {
						if c.tag == tag && c.reply == nil {
							args, err := parseITArgs(reply)
							if err != nil {
								return nil, fmt.Errorf("line %d: %w", start, err)
							}
							c.reply = args
							pending--
							break
						}
					}
					continue
				}
			}
		}
		// A new command: of a new group unless it is pipelined (tagN).
		conn := 0
		rest := line
		if sc.connections > 1 {
			n, r, _ := strings.Cut(rest, " ")
			c, err := strconv.Atoi(n)
			if err != nil || c < 1 {
				return nil, fmt.Errorf("line %d: missing connection number", start)
			}
			conn, rest = c-1, r
			if c > sc.connections {
				sc.connections = c
			}
		}
		cmd := &itCommand{line: start}
		if t, r, ok := strings.Cut(rest, " "); ok && strings.HasPrefix(strings.ToLower(t), "tag") {
			if n, err := strconv.Atoi(t[3:]); err == nil && n > 0 {
				cmd.tag, rest = n, r
			}
		}
		if r, reply, ok := leadingReply(rest); ok {
			cmd.reply, rest = reply, r
		}
		if cur == nil || pending == 0 {
			cur = &itGroup{line: start, conn: conn}
			sc.groups = append(sc.groups, cur)
		} else if cmd.tag == 0 {
			return nil, fmt.Errorf("line %d: a reply of the previous command is missing", start)
		}
		cmd.text = rest
		if cmd.reply == nil {
			pending++
		}
		cur.commands = append(cur.commands, cmd)
		if strings.EqualFold(strings.TrimSpace(rest), "logout") {
			sc.hasLogout = true
		}
	}
	if pending > 0 {
		return nil, fmt.Errorf("a command has no reply")
	}
	return sc, nil
}

// leadingReply splits "ok COMMAND" into the expected reply and the
// command; "" "" is any reply.
func leadingReply(s string) (string, []itArg, bool) {
	w, rest, _ := strings.Cut(s, " ")
	switch strings.ToLower(w) {
	case "ok", "no", "bad":
		return rest, []itArg{{kind: 'a', text: w}}, true
	case `""`:
		return rest, []itArg{}, true
	}
	return s, nil, false
}

// replyOf reads a reply line "[tagN] ok|no|bad [...]".
func replyOf(s string) (int, string, bool) {
	tag := 0
	if t, r, ok := strings.Cut(s, " "); ok && strings.HasPrefix(strings.ToLower(t), "tag") {
		if n, err := strconv.Atoi(t[3:]); err == nil {
			tag, s = n, r
		}
	}
	w, _, _ := strings.Cut(s, " ")
	switch strings.ToLower(w) {
	case "ok", "no", "bad":
		return tag, s, true
	}
	return 0, "", false
}
