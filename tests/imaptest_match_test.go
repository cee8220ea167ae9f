package tests

// How imaptest compares a reply with what a script expects: atoms without
// regard to case, "$name" variables bound on first sight, "$N" message
// numbers as they were when the group began, and list directives ($!unordered,
// $!noextra, $!ignore=, $!ban=), with the defaults imaptest gives LIST, STATUS
// and FETCH replies.

import (
	"maps"
	"strconv"
	"strings"
)

// itMatcher holds a script's variables and the message-number map of the
// group being run.
type itMatcher struct {
	vars   map[string]string
	seqmap []uint32 // message number at the group's start -> now (0: expunged)
}

func isVarChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// expandCommand replaces the variables of a command line; ok is false for
// one not bound yet.
func (m *itMatcher) expandCommand(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		if s[i] == '$' {
			b.WriteByte('$')
			continue
		}
		var name string
		if s[i] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", false
			}
			name, i = s[i+1:i+end], i+end
		} else {
			j := i
			for j < len(s) && isVarChar(s[j]) {
				j++
			}
			name, i = s[i:j], j-1
		}
		v, ok := m.value(name)
		if !ok {
			return "", false
		}
		b.WriteString(v)
	}
	return b.String(), true
}

// value is a variable's value: a bound name, or a relative message number.
func (m *itMatcher) value(name string) (string, bool) {
	if n, err := strconv.Atoi(name); err == nil {
		switch {
		case n < 1 || n > len(m.seqmap):
			return "<out of range>", true
		case m.seqmap[n-1] == 0:
			return "<expunged>", true
		}
		return strconv.Itoa(int(m.seqmap[n-1])), true
	}
	v, ok := m.vars[name]
	return v, ok
}

// matchString compares a pattern with a value, binding new variables.
// Both end at a NUL, as C strings do in imaptest: a literal8 that starts
// with one compares equal to any other that does.
func (m *itMatcher) matchString(pattern, input string, prefix bool) bool {
	if i := strings.IndexByte(pattern, 0); i >= 0 {
		pattern = pattern[:i]
	}
	if i := strings.IndexByte(input, 0); i >= 0 {
		input = input[:i]
	}
	var out strings.Builder
	in := input
	for i := 0; i < len(pattern); {
		c := pattern[i]
		if c != '$' || (i+1 < len(pattern) && pattern[i+1] == '$') || i+1 == len(pattern) {
			if c == '$' && i+1 < len(pattern) && pattern[i+1] == '$' {
				i++
			}
			if len(in) == 0 || !strings.EqualFold(pattern[i:i+1], in[:1]) {
				return false
			}
			out.WriteByte(pattern[i])
			in = in[1:]
			i++
			continue
		}
		i++
		var name string
		if pattern[i] == '{' {
			end := strings.IndexByte(pattern[i:], '}')
			if end < 0 {
				return false
			}
			name, i = pattern[i+1:i+end], i+end+1
		} else {
			j := i
			for j < len(pattern) && isVarChar(pattern[j]) {
				j++
			}
			name, i = pattern[i:j], j
		}
		v, ok := m.value(name)
		if name == "" || !ok {
			// Unbound: takes the input up to the pattern's next character.
			end := len(in)
			if i < len(pattern) {
				end = 0
				for end < len(in) && !strings.EqualFold(in[end:end+1], pattern[i:i+1]) {
					end++
				}
			}
			v = in[:end]
			if name != "" {
				m.vars[name] = v
			}
		}
		if !strings.HasPrefix(in, v) {
			return false
		}
		out.WriteString(v)
		in = in[len(v):]
	}
	return len(in) == 0 || prefix
}

// listRules are a list's directives.
type listRules struct {
	unordered bool
	chain     int
	noextra   bool
	ignore    []string
	ban       []string
}

// rules reads the directives at the start of an expected list; without
// any, def applies.
func rules(exp []itArg, def *listRules) (listRules, []itArg) {
	r := listRules{chain: 1}
	seen, noextraSet := false, false
	for len(exp) > 0 && exp[0].kind == 'a' && strings.HasPrefix(exp[0].text, "$!") {
		seen = true
		d := exp[0].text[2:]
		switch {
		case strings.HasPrefix(d, "unordered"):
			r.unordered = true
			if n, err := strconv.Atoi(strings.TrimPrefix(d, "unordered=")); err == nil {
				r.chain = n
			}
		case d == "ordered":
			r.unordered = false
		case d == "noextra":
			r.noextra, noextraSet = true, true
		case d == "extra":
			r.noextra, noextraSet = false, true
		case strings.HasPrefix(d, "ignore="):
			r.ignore = append(r.ignore, d[7:])
		case strings.HasPrefix(d, "ban="):
			r.ban = append(r.ban, d[4:])
		}
		exp = exp[1:]
	}
	if !seen && def != nil {
		return *def, exp
	}
	if !r.unordered && !noextraSet {
		r.noextra = true
	}
	return r, exp
}

// context says where a list is, for imaptest's default directives.
type listContext struct {
	reply string // lower case reply name (list, status, fetch)
	depth int    // 1 for a list among the reply's arguments
	index int    // its index among the reply's arguments
	after string // the atom before it, lower case
}

func defaultRules(c listContext) *listRules {
	switch {
	case (c.reply == "list" || c.reply == "lsub") && c.depth == 1 && c.index == 1:
		return &listRules{unordered: true, chain: 1}
	case c.reply == "status" && c.depth == 1 && c.index == 2:
		return &listRules{unordered: true, chain: 2}
	case c.reply == "fetch" && c.depth == 1 && c.index == 2:
		return &listRules{unordered: true, chain: 2}
	case c.reply == "fetch" && c.depth == 2 && c.after == "flags":
		return &listRules{unordered: true, chain: 1, noextra: true, ignore: []string{`\recent`, "$HasAttachment", "$HasNoAttachment"}}
	}
	return nil
}

// matchArgs compares expected arguments with actual ones in order; with
// prefix, the actual ones may go on, and the last expected one may be the
// start of its value.
func (m *itMatcher) matchArgs(exp, act []itArg, prefix bool, ctx listContext) bool {
	j := 0
	for i := 0; i < len(exp); i++ {
		e := exp[i]
		if j >= len(act) {
			return false
		}
		a := act[j]
		switch e.kind {
		case 'n':
			if a.kind != 'n' {
				return false
			}
		case 'a', 's':
			if e.text == "$" && a.kind == 'l' {
				break
			}
			if e.text == "$]" {
				for j < len(act) && act[j].kind == 'a' && !strings.Contains(act[j].text, "]") {
					j++
				}
				break
			}
			if a.kind != 'a' && a.kind != 's' {
				return false
			}
			if !m.matchString(e.text, a.text, prefix && i == len(exp)-1) {
				return false
			}
		case 'l':
			if a.kind != 'l' {
				return false
			}
			sub := listContext{reply: ctx.reply, depth: ctx.depth + 1, index: j}
			if j > 0 && act[j-1].kind == 'a' {
				sub.after = strings.ToLower(act[j-1].text)
			}
			if !m.matchList(e.items, a.items, sub) {
				return false
			}
		}
		j++
	}
	return prefix || j == len(act)
}

// matchList compares a list by its directives.
func (m *itMatcher) matchList(exp, act []itArg, ctx listContext) bool {
	r, exp := rules(exp, defaultRules(ctx))
	inner := listContext{reply: ctx.reply, depth: ctx.depth}
	if !r.unordered {
		return m.matchArgs(exp, act, false, inner)
	}
	if len(act)%r.chain != 0 || len(exp)%r.chain != 0 {
		return false
	}
	matched := make([]bool, len(act))
	for i := 0; i < len(exp); i += r.chain {
		found := false
		for k := 0; k < len(act); k += r.chain {
			saved := maps.Clone(m.vars)
			sub := inner
			sub.index = k
			if m.matchArgs(exp[i:i+r.chain], act[k:k+r.chain], false, sub) {
				matched[k], found = true, true
				break
			}
			m.vars = saved
		}
		if !found {
			return false
		}
	}
	for k := 0; k < len(act); k += r.chain {
		if matched[k] || (act[k].kind != 'a' && act[k].kind != 's') {
			continue
		}
		if r.noextra && !containsFold(r.ignore, act[k].text) {
			return false
		}
		if !r.noextra && containsFold(r.ban, act[k].text) {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// matchUntagged compares an expected untagged reply with a received one
// (the "* " left off both), reverting variables it bound when it fails.
func (m *itMatcher) matchUntagged(exp, act []itArg) bool {
	prefix := false
	if len(act) > 0 && act[0].kind == 'a' {
		switch strings.ToUpper(act[0].text) {
		case "OK", "NO", "BAD", "BYE":
			prefix = true
		}
	}
	name := ""
	if len(exp) > 0 && exp[0].kind == 'a' {
		name = strings.ToLower(exp[0].text)
		if (strings.HasPrefix(name, "$") || name != "" && name[0] >= '0' && name[0] <= '9') && len(exp) > 1 && exp[1].kind == 'a' {
			name = strings.ToLower(exp[1].text)
		}
	}
	saved := maps.Clone(m.vars)
	if m.matchArgs(exp, act, prefix, listContext{reply: name}) {
		return true
	}
	m.vars = saved
	return false
}
