package imapserver

import (
	"slices"
	"strings"

	"mailroom/internal/imapwire"
	"mailroom/internal/store"
)

// listEntry is one name LIST can show.
type listEntry struct {
	name       string
	exists     bool
	specialUse string
	subscribed bool
	children   bool
}

// listOptions are LIST's selection and return options (RFC 5258, RFC
// 5819 LIST-STATUS, RFC 6154 SPECIAL-USE).
type listOptions struct {
	subscribed, recursive, specialUse bool // selection
	retChildren, retSubscribed        bool
	retSpecialUse                     bool
	status                            []string
	extended                          bool // any option given: RFC 5258 rules apply
}

func cmdList(s *session, _ string, p *imapwire.Parser) error { return s.list(p, false) }
func cmdLsub(s *session, _ string, p *imapwire.Parser) error { return s.list(p, true) }

// list answers LIST and LSUB (RFC 9051 6.3.9, RFC 3501 6.3.9/6.3.9, RFC
// 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154).
func (s *session) list(p *imapwire.Parser, lsub bool) error {
	var opt listOptions
	if err := p.SP(); err != nil {
		return err
	}
	if !lsub && p.Peek() == '(' {
		if err := parseSelection(p, &opt); err != nil {
			return err
		}
		if err := p.SP(); err != nil {
			return err
		}
	}
	ref, err := p.AString()
	if err != nil {
		return err
	}
	if err := p.SP(); err != nil {
		return err
	}
	var patterns []string
	if !lsub && p.Take("(") {
		opt.extended = true
		for !p.Take(")") {
			if len(patterns) > 0 {
				if err := p.SP(); err != nil {
					return err
				}
			}
			pat, err := readPattern(p)
			if err != nil {
				return err
			}
			patterns = append(patterns, pat)
		}
	} else {
		pat, err := readPattern(p)
		if err != nil {
			return err
		}
		patterns = []string{pat}
	}
	if !lsub && p.Take(" RETURN ") {
		if err := parseReturn(p, &opt); err != nil {
			return err
		}
	}
	if err := p.End(); err != nil {
		return err
	}
	if !s.utf8 {
		if d, err := imapwire.DecodeUTF7(ref); err == nil {
			ref = d
		}
	}
	if len(patterns) == 1 && patterns[0] == "" && !lsub && !opt.extended {
		s.untagged(`LIST (\Noselect) "%s" ""`, store.Separator)
		return nil
	}
	for i, pat := range patterns {
		if !s.utf8 {
			if d, err := imapwire.DecodeUTF7(pat); err == nil {
				pat = d
			}
		}
		if ref != "" && !strings.HasPrefix(pat, store.Separator) {
			pat = strings.TrimSuffix(ref, store.Separator) + store.Separator + pat
		}
		patterns[i] = pat
	}
	entries, err := s.listEntries()
	if err != nil {
		return err
	}
	if lsub {
		return s.writeLsub(entries, patterns[0])
	}
	return s.writeList(entries, patterns, opt)
}

// parseSelection reads "(SUBSCRIBED RECURSIVEMATCH ...)".
func parseSelection(p *imapwire.Parser, opt *listOptions) error {
	p.Take("(")
	opt.extended = true
	other := false
	for i := 0; !p.Take(")"); i++ {
		if i > 0 {
			if err := p.SP(); err != nil {
				return err
			}
		}
		a, err := p.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "SUBSCRIBED":
			opt.subscribed, other = true, true
		case "REMOTE":
		case "RECURSIVEMATCH":
			opt.recursive = true
		case "SPECIAL-USE":
			opt.specialUse, other = true, true
		default:
			return bad("Unknown LIST selection option %s", clipName(a))
		}
	}
	if opt.recursive && !other {
		return bad("RECURSIVEMATCH needs another selection option (RFC 5258 3.1)")
	}
	return nil
}

// parseReturn reads the list after RETURN.
func parseReturn(p *imapwire.Parser, opt *listOptions) error {
	if err := p.Expect("("); err != nil {
		return err
	}
	opt.extended = true
	for i := 0; !p.Take(")"); i++ {
		if i > 0 {
			if err := p.SP(); err != nil {
				return err
			}
		}
		a, err := p.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "CHILDREN":
			opt.retChildren = true
		case "SUBSCRIBED":
			opt.retSubscribed = true
		case "SPECIAL-USE":
			opt.retSpecialUse = true
		case "STATUS":
			if err := p.SP(); err != nil {
				return err
			}
			items, err := statusItems(p)
			if err != nil {
				return err
			}
			opt.status = items
		default:
			return bad("Unknown LIST return option %s", clipName(a))
		}
	}
	return nil
}

// readPattern reads a mailbox pattern: a string, or atom characters with
// '%' and '*'.
func readPattern(p *imapwire.Parser) (string, error) {
	if c := p.Peek(); c == '"' || p.IsLiteral() {
		return p.String()
	}
	var b strings.Builder
	for !p.AtEnd() {
		c := p.Peek()
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '{' || c == '"' || c == '\\' {
			break
		}
		b.WriteByte(c)
		p.Take(string(c))
	}
	if b.Len() == 0 {
		return "", bad("Expected a mailbox pattern")
	}
	return b.String(), nil
}

func matchAny(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return matchPattern(p, name) })
}

// writeList writes the LIST responses.
func (s *session) writeList(entries []listEntry, patterns []string, opt listOptions) error {
	selected := func(e listEntry) bool {
		switch {
		case opt.subscribed:
			return e.subscribed
		case opt.specialUse:
			return e.specialUse != "" && e.exists
		}
		return true
	}
	for _, e := range entries {
		if !e.exists && !e.children && !(opt.subscribed && e.subscribed) {
			continue // a subscription alone shows only under SUBSCRIBED
		}
		if !matchAny(patterns, e.name) {
			continue
		}
		childInfo := false
		if !selected(e) {
			if !opt.recursive {
				continue
			}
			// RFC 5258 3.5: a parent returned for a descendant that meets
			// the selection and that the patterns do not show.
			childInfo = slices.ContainsFunc(entries, func(d listEntry) bool {
				return strings.HasPrefix(d.name, e.name+store.Separator) && selected(d) && (d.exists || d.subscribed) && !matchAny(patterns, d.name)
			})
			if !childInfo {
				continue
			}
		}
		var attrs []string
		switch {
		case !e.exists && (opt.subscribed || e.subscribed && opt.extended):
			attrs = append(attrs, `\NonExistent`)
		case !e.exists:
			attrs = append(attrs, `\Noselect`)
		}
		if !opt.extended || opt.retChildren || !opt.subscribed {
			if e.children {
				attrs = append(attrs, `\HasChildren`)
			} else {
				attrs = append(attrs, `\HasNoChildren`)
			}
		}
		if e.subscribed && (opt.subscribed || opt.retSubscribed) {
			attrs = append(attrs, `\Subscribed`)
		}
		if e.specialUse != "" && (!opt.extended || opt.specialUse || opt.retSpecialUse || !opt.subscribed) {
			attrs = append(attrs, e.specialUse)
		}
		line := []byte("LIST (" + strings.Join(attrs, " ") + `) "` + store.Separator + `" `)
		line = append(line, s.wireName(e.name)...)
		if childInfo {
			line = append(line, ` (CHILDINFO ("SUBSCRIBED"))`...)
		}
		s.untagged("%s", line)
		if len(opt.status) > 0 && e.exists {
			if err := s.status(e.name, opt.status); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeLsub writes the LSUB responses.
func (s *session) writeLsub(entries []listEntry, pattern string) error {
	for _, e := range lsubEntries(entries, pattern) {
		if !matchPattern(pattern, e.name) {
			continue
		}
		attrs := ""
		if !e.exists {
			attrs = `\Noselect`
		}
		line := []byte("LSUB (" + attrs + `) "` + store.Separator + `" `)
		line = append(line, s.wireName(e.name)...)
		s.untagged("%s", line)
	}
	return nil
}

// lsubEntries are the subscribed names, and the names above them that
// the pattern matches when none of the subscribed names below does: those
// are returned \Noselect (RFC 3501 6.3.9, LSUB with '%').
func lsubEntries(all []listEntry, pattern string) []listEntry {
	var subs []listEntry
	seen := map[string]bool{}
	for _, e := range all {
		if e.subscribed {
			e.exists = true // LSUB marks only the unsubscribed parents
			subs = append(subs, e)
			seen[e.name] = true
		}
	}
	out := slices.Clone(subs)
	for _, e := range subs {
		parts := strings.Split(e.name, store.Separator)
		for i := 1; i < len(parts); i++ {
			parent := strings.Join(parts[:i], store.Separator)
			if seen[parent] || !matchPattern(pattern, parent) {
				continue
			}
			below := slices.ContainsFunc(subs, func(s listEntry) bool {
				return strings.HasPrefix(s.name, parent+store.Separator) && matchPattern(pattern, s.name)
			})
			if !below {
				seen[parent] = true
				out = append(out, listEntry{name: parent})
			}
		}
	}
	return out
}

// listEntries returns every mailbox, the names above them that do not
// exist, and the subscribed names that do not exist, INBOX first.
func (s *session) listEntries() ([]listEntry, error) {
	mbs, err := s.srv.store.ListMailboxes(s.ctx(), s.user.ID)
	if err != nil {
		return nil, err
	}
	subs, err := s.srv.store.Subscriptions(s.ctx(), s.user.ID)
	if err != nil {
		return nil, err
	}
	byName := map[string]*listEntry{}
	var names []string
	add := func(name string) *listEntry {
		if e := byName[name]; e != nil {
			return e
		}
		e := &listEntry{name: name}
		byName[name] = e
		names = append(names, name)
		return e
	}
	for _, mb := range mbs {
		e := add(mb.Name)
		e.exists, e.specialUse = true, mb.SpecialUse
	}
	for _, sub := range subs {
		add(sub).subscribed = true
	}
	for _, name := range slices.Clone(names) {
		if !byName[name].exists {
			continue
		}
		parts := strings.Split(name, store.Separator)
		for i := 1; i < len(parts); i++ {
			add(strings.Join(parts[:i], store.Separator)).children = true
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == store.Inbox:
			return -1
		case b == store.Inbox:
			return 1
		}
		return strings.Compare(a, b)
	})
	out := make([]listEntry, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out, nil
}

// matchPattern matches a LIST pattern: '*' matches anything, '%'
// anything but the separator; INBOX without regard to case.
func matchPattern(pattern, name string) bool {
	if up, rest, ok := strings.Cut(pattern, store.Separator); ok && strings.EqualFold(up, store.Inbox) {
		pattern = store.Inbox + store.Separator + rest
	} else if strings.EqualFold(pattern, store.Inbox) {
		pattern = store.Inbox
	}
	return match(pattern, name)
}

// match runs in time linear in len(p)*len(n): a pattern of many
// wildcards costs no more than its length.
func match(p, n string) bool {
	// next[j] says whether p[i+1:] matches n[j:]; cur is p[i:].
	next := make([]bool, len(n)+1)
	cur := make([]bool, len(n)+1)
	next[len(n)] = true
	for i := len(p) - 1; i >= 0; i-- {
		cur[len(n)] = (p[i] == '*' || p[i] == '%') && next[len(n)]
		for j := len(n) - 1; j >= 0; j-- {
			switch p[i] {
			case '*':
				cur[j] = next[j] || cur[j+1]
			case '%':
				cur[j] = next[j] || (n[j] != store.Separator[0] && cur[j+1])
			default:
				cur[j] = p[i] == n[j] && next[j+1]
			}
		}
		next, cur = cur, next
	}
	return next[0]
}
