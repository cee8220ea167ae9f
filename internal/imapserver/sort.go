package imapserver

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"mailroom/internal/imapwire"
	"mailroom/internal/message"
	"mailroom/internal/store"
)

func init() {
	commands["SORT"] = command{states: stateSelected, run: cmdSort, noExpunge: true}
	commands["UID SORT"] = command{states: stateSelected, run: cmdSort}
}

// sortKey is one SORT criterion (RFC 5256 3, RFC 5957 DISPLAY).
type sortKey struct {
	name    string
	reverse bool
}

// cmdSort answers SORT (RFC 5256): the messages a search finds, ordered by
// the criteria, ties by message number.
func cmdSort(s *session, name string, p *imapwire.Parser) error {
	byUID := name == "UID SORT"
	if err := p.Expect(" ("); err != nil {
		return err
	}
	var keys []sortKey
	for !p.Take(")") {
		if len(keys) > 0 {
			if err := p.SP(); err != nil {
				return err
			}
		}
		k := sortKey{}
		if p.Take("REVERSE ") {
			k.reverse = true
		}
		a, err := p.Atom()
		if err != nil {
			return err
		}
		k.name = strings.ToUpper(a)
		switch k.name {
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO":
		default:
			return bad("Unknown SORT criterion %s", clipName(a))
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return bad("SORT needs at least one criterion")
	}
	if err := p.SP(); err != nil {
		return err
	}
	cs, err := p.AString()
	if err != nil {
		return err
	}
	if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
		return no("[BADCHARSET (UTF-8 US-ASCII)]", "Sort in UTF-8 or US-ASCII")
	}
	if err := p.SP(); err != nil {
		return err
	}
	root, err := parseSearchKeys(p)
	if err != nil {
		return err
	}
	found, err := s.search(root)
	if err != nil {
		return err
	}
	ordered, err := s.sortMessages(found, keys)
	if err != nil {
		return err
	}
	out := []byte("SORT")
	for _, i := range ordered {
		out = append(out, ' ')
		out = strconv.AppendUint(out, uint64(s.number(i, byUID)), 10)
	}
	s.untagged("%s", out)
	return nil
}

// sortable is one message being sorted.
type sortable struct {
	idx int
	r   *sortRow
}

// sortFields maps SORT's criteria to the stored keys they compare (DATE
// falls back to the arrival).
var sortFields = map[string]store.SortFields{
	"DATE": store.SortSent | store.SortArrival, "SUBJECT": store.SortSubject, "FROM": store.SortFrom, "TO": store.SortTo, "CC": store.SortCc,
	"DISPLAYFROM": store.SortDisplayFrom, "DISPLAYTO": store.SortDisplayTo, "ARRIVAL": store.SortArrival, "SIZE": store.SortSize,
}

// derived are the fields a message not indexed yet has derived from its
// envelope.
const derived = store.SortSent | store.SortSubject | store.SortFrom | store.SortTo | store.SortCc | store.SortDisplayFrom | store.SortDisplayTo

// sortMessages orders the messages at idx by the keys.
func (s *session) sortMessages(idx []int, keys []sortKey) ([]int, error) {
	uids := make([]uint32, len(idx))
	for k, i := range idx {
		uids[k] = s.sel.msgs[i].UID
	}
	var fields store.SortFields
	for _, k := range keys {
		fields |= sortFields[k.name]
	}
	rows, err := s.sortRows(uids, fields)
	if err != nil {
		return nil, err
	}
	items := make([]sortable, 0, len(rows))
	for k, r := range rows {
		if r != nil {
			items = append(items, sortable{idx[k], r})
		}
	}
	if len(keys) == 1 && (keys[0].name == "DATE" || keys[0].name == "ARRIVAL" || keys[0].name == "SIZE") {
		return sortByNumber(items, keys[0]), nil
	}
	// Ties go by message number, so the order is total and needs no
	// stable sort.
	slices.SortFunc(items, func(a, b sortable) int {
		for _, k := range keys {
			var c int
			switch k.name {
			case "ARRIVAL", "DATE", "SIZE":
				c = cmp.Compare(a.r.number(k.name), b.r.number(k.name))
			case "SUBJECT":
				c = casemap(a.r.text.subject, b.r.text.subject)
			case "FROM":
				c = casemap(a.r.text.from, b.r.text.from)
			case "TO":
				c = casemap(a.r.text.to, b.r.text.to)
			case "CC":
				c = casemap(a.r.text.cc, b.r.text.cc)
			case "DISPLAYFROM":
				c = casemap(a.r.text.displayFrom, b.r.text.displayFrom)
			case "DISPLAYTO":
				c = casemap(a.r.text.displayTo, b.r.text.displayTo)
			}
			if k.reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(a.idx, b.idx)
	})
	out := make([]int, len(items))
	for k, it := range items {
		out[k] = it.idx
	}
	return out, nil
}

// sortRows returns what SORT compares of the selected mailbox's messages
// uids (ascending), nil for one the store no longer has: kept rows, and
// the others' read from the store (SortRows), whose keys come stored with
// the search index or, for a message not indexed yet, are derived from
// its summary now (and not kept).
func (s *session) sortRows(uids []uint32, fields store.SortFields) ([]*sortRow, error) {
	cols, done := s.srv.sorts.columns(s.sel.id)
	defer done()
	if fields&^cols.fields != 0 || len(cols.rows) > 2*len(s.sel.msgs)+1000 {
		// Another criterion, or many messages expunged: start over.
		cols.fields |= fields
		cols.rows = nil
	}
	out := make([]*sortRow, len(uids))
	missing := cols.find(uids, out)
	if len(missing) == 0 {
		return out, nil
	}
	read, err := s.srv.store.SortRows(s.ctx(), s.user.ID, s.sel.name, missing, cols.fields)
	if err != nil {
		return nil, err
	}
	byUID := make(map[uint32]*sortRow, len(read))
	var keep []*sortRow
	var derive []uint32
	for _, r := range read {
		row := newSortRow(r.UID, r.Date.Unix(), r.Size, r.Keys, cols.fields)
		byUID[r.UID] = row
		if r.Indexed || cols.fields&derived == 0 {
			keep = append(keep, row)
		} else {
			derive = append(derive, r.UID)
		}
	}
	if len(derive) > 0 {
		infos, err := s.infosOf(derive)
		if err != nil {
			return nil, err
		}
		for _, in := range infos {
			if in == nil {
				continue
			}
			env, err := s.envelopeOf(in)
			if err != nil {
				return nil, err
			}
			row := byUID[in.UID]
			*row = *newSortRow(row.uid, row.arrival, row.size, message.KeysOf(env), cols.fields)
		}
	}
	cols.add(keep)
	for k, u := range uids {
		if out[k] == nil {
			out[k] = byUID[u]
		}
	}
	return out, nil
}

// envelopeOf returns a message's envelope (nil when it has none), read
// alone from its summary when it can be.
func (s *session) envelopeOf(mi *fetchInfo) (*message.Envelope, error) {
	if env, ok := message.DecodeEnvelope(mi.Summary); ok {
		return env, nil
	}
	root, _, err := s.structure(mi, false, false, true)
	if err != nil {
		return nil, err
	}
	return root.Envelope, nil
}

// casemap compares as i;ascii-casemap does (RFC 4790 9.2): ASCII letters
// without regard to case, octet by octet.
func casemap(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := upper(a[i]), upper(b[i])
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(len(a), len(b))
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 32
	}
	return c
}

// sortByNumber orders items by one numeric criterion (the most common
// SORT: by date), as pairs of key and message number: a tenth of the
// general comparison's time.
func sortByNumber(items []sortable, k sortKey) []int {
	type pair struct {
		key int64
		idx int
	}
	pairs := make([]pair, len(items))
	for i, it := range items {
		v := it.r.number(k.name)
		if k.reverse {
			v = -v
		}
		pairs[i] = pair{v, it.idx}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	out := make([]int, len(pairs))
	for i, p := range pairs {
		out[i] = p.idx
	}
	return out
}
