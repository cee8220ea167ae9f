package imapserver

import (
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/downgrade"
	"mailroom/internal/imapwire"
	"mailroom/internal/message"
	"mailroom/internal/spool"
	"mailroom/internal/store"
)

func init() {
	commands["STORE"] = command{states: stateSelected, run: cmdStore, noExpunge: true}
	commands["UID STORE"] = command{states: stateSelected, run: cmdStore}
	commands["EXPUNGE"] = command{states: stateSelected, run: cmdExpunge}
	commands["UID EXPUNGE"] = command{states: stateSelected, run: cmdExpunge}
	commands["COPY"] = command{states: stateSelected, run: cmdCopy}
	commands["UID COPY"] = command{states: stateSelected, run: cmdCopy}
	commands["MOVE"] = command{states: stateSelected, run: cmdCopy}
	commands["UID MOVE"] = command{states: stateSelected, run: cmdCopy}
	commands["APPEND"] = command{states: stateIn, run: cmdAppend}
}

// canonicalFlag spells system flags as RFC 9051 does; keywords as given.
func canonicalFlag(f string) (string, error) {
	if !strings.HasPrefix(f, `\`) {
		return f, nil
	}
	for _, sf := range []string{store.FlagSeen, store.FlagAnswered, store.FlagFlagged, store.FlagDeleted, store.FlagDraft} {
		if strings.EqualFold(f, sf) {
			return sf, nil
		}
	}
	if strings.EqualFold(f, `\Recent`) {
		return "", bad(`\Recent cannot be set`)
	}
	return "", bad("Unknown system flag %s", clipName(f))
}

func canonicalFlags(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		c, err := canonicalFlag(f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func cmdStore(s *session, name string, p *imapwire.Parser) error {
	byUID := name == "UID STORE"
	if err := p.SP(); err != nil {
		return err
	}
	set, err := p.SeqSet()
	if err != nil {
		return err
	}
	if err := p.SP(); err != nil {
		return err
	}
	var unchangedSince int64
	if p.Take("(UNCHANGEDSINCE ") { // RFC 7162 3.1.3
		if unchangedSince, err = p.Number64(); err != nil {
			return err
		}
		if err := p.Expect(") "); err != nil {
			return err
		}
		s.enableCondstore()
	}
	op := store.FlagsReplace
	switch {
	case p.Take("+"):
		op = store.FlagsAdd
	case p.Take("-"):
		op = store.FlagsRemove
	}
	if !p.Take("FLAGS") {
		return bad("Expected FLAGS, +FLAGS or -FLAGS")
	}
	silent := p.Take(".SILENT")
	if err := p.SP(); err != nil {
		return err
	}
	flags, err := p.FlagList(true)
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	if flags, err = canonicalFlags(flags); err != nil {
		return err
	}
	idx, err := s.resolve(set, byUID)
	if err != nil {
		return err
	}
	if s.sel.readOnly {
		return no("[READ-ONLY]", "The mailbox was opened with EXAMINE")
	}
	uids := make([]uint32, len(idx))
	for k, i := range idx {
		uids[k] = s.sel.msgs[i].UID
	}
	res, err := s.srv.store.SetFlags(s.ctx(), s.user.ID, s.sel.name, store.FlagChange{UIDs: uids, Op: op, Flags: flags, UnchangedSince: unchangedSince})
	if err != nil {
		return err
	}
	s.applyOwnFlags(res.Changed)
	modified := map[uint32]bool{}
	for _, u := range res.Modified {
		modified[u] = true
	}
	changed := map[uint32]bool{}
	for _, m := range res.Changed {
		changed[m.UID] = true
	}
	// Every message named gets its FLAGS, changed or not (RFC 9051 6.4.6);
	// with CONDSTORE its MODSEQ too, and .SILENT leaves out the FLAGS but
	// not the MODSEQ of what changed (RFC 7162 3.1.3).
	var failed []uint32
	for _, i := range idx {
		m := s.sel.msgs[i]
		if modified[m.UID] {
			failed = append(failed, s.number(i, byUID))
			continue
		}
		var items []string
		if byUID {
			items = append(items, "UID "+uitoa(m.UID))
		}
		if !silent {
			items = append(items, "FLAGS ("+s.flagList(s.sel.state(m))+")")
		}
		if s.condstore && (!silent || changed[m.UID]) {
			items = append(items, "MODSEQ ("+strconv.FormatInt(m.ModSeq, 10)+")")
		}
		if !silent || (s.condstore && changed[m.UID]) {
			s.untagged("%d FETCH (%s)", i+1, strings.Join(items, " "))
		}
	}
	if len(failed) > 0 {
		s.code = "[MODIFIED " + imapwire.Compact(failed) + "]"
	}
	return nil
}

func cmdExpunge(s *session, name string, p *imapwire.Parser) error {
	var only *imapwire.SeqSet
	if name == "UID EXPUNGE" { // RFC 4315 2.1
		if err := p.SP(); err != nil {
			return err
		}
		set, err := p.SeqSet()
		if err != nil {
			return err
		}
		only = &set
	}
	if err := p.End(); err != nil {
		return err
	}
	if s.sel.readOnly {
		return no("[READ-ONLY]", "The mailbox was opened with EXAMINE")
	}
	var limit map[int]bool
	if only != nil {
		idx, err := s.resolve(*only, true)
		if err != nil {
			return err
		}
		limit = map[int]bool{}
		for _, i := range idx {
			limit[i] = true
		}
	}
	var uids []uint32
	for i, m := range s.sel.msgs {
		if s.sel.has(m, store.FlagDeleted) && (limit == nil || limit[i]) {
			uids = append(uids, m.UID)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	_, err := s.srv.store.Expunge(s.ctx(), s.user.ID, s.sel.name, uids)
	return err // the EXPUNGE responses come from sync
}

func cmdCopy(s *session, name string, p *imapwire.Parser) error {
	byUID := strings.HasPrefix(name, "UID ")
	move := strings.HasSuffix(name, "MOVE")
	if err := p.SP(); err != nil {
		return err
	}
	set, err := p.SeqSet()
	if err != nil {
		return err
	}
	to, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	idx, err := s.resolve(set, byUID)
	if err != nil {
		return err
	}
	if move && s.sel.readOnly {
		return no("[READ-ONLY]", "The mailbox was opened with EXAMINE")
	}
	if _, err := s.srv.store.Mailbox(s.ctx(), s.user.ID, to); errors.Is(err, store.ErrNotFound) {
		return no("[TRYCREATE]", "No such mailbox: create it first")
	}
	uids := make([]uint32, len(idx))
	for k, i := range idx {
		uids[k] = s.sel.msgs[i].UID
	}
	if len(uids) == 0 {
		return nil
	}
	res, err := s.srv.store.Copy(s.ctx(), s.user.ID, s.sel.name, uids, to, move)
	if err != nil {
		return err
	}
	if len(res.From) == 0 {
		return nil
	}
	code := "[COPYUID " + uitoa(res.UIDValidity) + " " + imapwire.Compact(res.From) + " " + imapwire.Compact(res.To) + "]"
	if move {
		// RFC 6851 4.3: COPYUID in an untagged OK before the expunges.
		s.untagged("OK %s Moved", code)
		return nil
	}
	s.code = code
	return nil
}

// cmdAppend stores one message, or several at once (MULTIAPPEND, RFC
// 3502), atomically.
func cmdAppend(s *session, _ string, p *imapwire.Parser) error {
	name, err := s.readMailbox(p)
	if err != nil {
		return err
	}
	var msgs []store.AppendMessage
	for p.Take(" ") {
		var m store.AppendMessage
		if p.Peek() == '(' {
			flags, err := p.FlagList(false)
			if err != nil {
				return err
			}
			if m.Flags, err = canonicalFlags(flags); err != nil {
				return err
			}
			if err := p.SP(); err != nil {
				return err
			}
		}
		if p.Peek() == '"' {
			if m.InternalDate, err = p.DateTime(); err != nil {
				return err
			}
			if err := p.SP(); err != nil {
				return err
			}
		}
		lit, err := p.Literal()
		if err != nil {
			return err
		}
		if lit.Size > s.cfg.MaxMessageSize {
			return no("[TOOBIG]", "The message is larger than the %d octets this server takes", s.cfg.MaxMessageSize)
		}
		content := messageContent(lit)
		if lit.Binary {
			// A literal8 may hold binary parts (RFC 3516 4.1): they are
			// stored base64-encoded, so that BODY[] stays mail and
			// BINARY[] gives them back.
			sp := spool.New(s.cfg.SpoolDir, 64<<10)
			defer sp.Close()
			if err := downgrade.Convert(sp, lit.Reader()); err != nil {
				if detail, ok := downgrade.Permanent(err); ok {
					return no("[CANNOT]", "The message cannot be stored: %s", detail[6:])
				}
				return err
			}
			content = sp
		}
		data, unmap, err := content.Map()
		if err != nil {
			return err
		}
		root := message.Parse(data)
		hdr := root.Envelope
		m.Summary = message.Encode(root, data[:root.BodyStart])
		unmap()
		m.Body, m.Size = content.Reader(), content.Size()
		if hdr != nil {
			m.Subject = hdr.Subject
			if len(hdr.From) > 0 {
				m.From = hdr.From[0].String()
			}
		}
		if m.InternalDate.IsZero() {
			m.InternalDate = time.Now()
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return bad("APPEND needs a message")
	}
	if err := p.End(); err != nil {
		return err
	}
	if _, err := s.srv.store.Mailbox(s.ctx(), s.user.ID, name); errors.Is(err, store.ErrNotFound) {
		return no("[TRYCREATE]", "No such mailbox: create it first")
	}
	res, err := s.srv.store.Append(s.ctx(), s.user.ID, name, msgs)
	if err != nil {
		return err
	}
	s.code = "[APPENDUID " + uitoa(res.UIDValidity) + " " + imapwire.Compact(res.UIDs) + "]"
	return nil
}

// storable is a message to store: a literal, or its conversion.
type storable interface {
	Map() ([]byte, func(), error)
	Reader() io.Reader
	Size() int64
}

// messageContent is a literal as a storable.
func messageContent(l *imapwire.Literal) storable { return literalContent{l} }

type literalContent struct{ *imapwire.Literal }

func (l literalContent) Size() int64 { return l.Literal.Size }
