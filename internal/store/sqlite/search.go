package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"mailroom/internal/store"
)

// Unindexed returns messages in mailboxes whose text is not indexed yet
// (the partial index messages_unindexed holds exactly them).
func (s *Store) Unindexed(ctx context.Context, limit int) ([]int64, error) {
	rows, err := s.query(ctx, `SELECT id FROM messages WHERE text_indexed = 0 ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: messages to index: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: messages to index: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// IndexTexts adds messages' trigrams to search_text, skipping those
// removed or indexed meanwhile.
func (s *Store) IndexTexts(ctx context.Context, texts []store.IndexedText) error {
	return s.writeLazy(ctx, false, func(tx *wtx) error {
		for _, t := range texts {
			res, err := tx.Exec(`UPDATE messages SET text_indexed = 1 WHERE id = ? AND text_indexed = 0`, t.MessageID)
			if err != nil {
				return fmt.Errorf("store: index message %d: %w", t.MessageID, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			if _, err := tx.Exec(`INSERT INTO search_text(rowid, header, body) VALUES (?, ?, ?)`,
				t.MessageID, string(t.Header), string(t.Body)); err != nil {
				return fmt.Errorf("store: index message %d: %w", t.MessageID, err)
			}
			k := t.SortKeys
			var sent any
			if !k.Sent.IsZero() {
				sent = k.Sent.UnixNano()
			}
			if _, err := tx.Exec(`INSERT OR REPLACE INTO sort_keys(message_id, sent, subject, from_addr, to_addr, cc_addr, display_from, display_to)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, t.MessageID, sent, k.Subject, k.From, k.To, k.Cc, k.DisplayFrom, k.DisplayTo); err != nil {
				return fmt.Errorf("store: index message %d: %w", t.MessageID, err)
			}
		}
		return nil
	})
}

// A search asks the index for the rarest few of up to sampledTrigrams
// trigrams spread over its text: an AND of terms walks every term's list
// of messages, and a common trigram's list is the whole mailbox (FROM
// "sender7@" on 100,000 messages: 10 ms with its six trigrams, 0.3 ms
// with its two rare ones). The candidates are checked anyway.
const (
	sampledTrigrams = 8
	queriedTrigrams = 3
)

// TextCandidates reads the candidates from the index, with the messages
// not indexed yet; SEARCH TEXT also looks in each copy's prefix.
func (s *Store) TextCandidates(ctx context.Context, userID int64, mailbox string, field store.TextField, text string) ([]uint32, error) {
	var mb int64
	err := s.queryRow(ctx, `SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`, userID, mailbox).Scan(&mb)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: search %q: %w", mailbox, err)
	}
	// One text of UIDs rather than a row each (see MailboxState).
	q, args := `SELECT group_concat(uid, ' ') FROM mailbox_messages WHERE mailbox_id = ?`, []any{mb}
	if terms := trigrams(text); len(terms) > 0 {
		terms, err = s.rarest(ctx, terms)
		if err != nil {
			return nil, fmt.Errorf("store: search %q: %w", mailbox, err)
		}
		// The index's messages first (CROSS JOIN keeps that order: the
		// planner would otherwise read the whole mailbox), then those it
		// does not have yet.
		q = `SELECT group_concat(uid, ' ') FROM (
			SELECT mm.uid FROM search_text st CROSS JOIN mailbox_messages mm ON mm.message_id = st.rowid
				WHERE search_text MATCH ?2 AND mm.mailbox_id = ?1
			UNION SELECT mm.uid FROM messages m CROSS JOIN mailbox_messages mm ON mm.message_id = m.id
				WHERE m.text_indexed = 0 AND mm.mailbox_id = ?1`
		args = append(args, matchQuery(terms, field))
		if field == store.TextAll {
			q += `
			UNION SELECT uid FROM mailbox_messages WHERE mailbox_id = ?1 AND instr(lower(CAST(prefix AS TEXT)), ?3) > 0`
			args = append(args, strings.ToLower(text))
		}
		q += `
			ORDER BY 1)`
	}
	var list sql.NullString
	if err := s.queryRow(ctx, q, args...).Scan(&list); err != nil {
		return nil, fmt.Errorf("store: search %q: %w", mailbox, err)
	}
	var uids []uint32
	for f := range strings.FieldsSeq(list.String) {
		uid, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("store: search %q: %w", mailbox, err)
		}
		uids = append(uids, uint32(uid))
	}
	sortByUID(uids, func(u uint32) uint32 { return u })
	return uids, nil
}

// trigrams returns the distinct trigrams of text, lower case, up to
// sampledTrigrams spread over it; none when it is shorter than three
// characters.
func trigrams(text string) []string {
	runes := []rune(strings.ToLower(text))
	n := len(runes) - 2
	if n < 1 || !utf8.ValidString(text) {
		return nil
	}
	step := max(1, (n+sampledTrigrams-1)/sampledTrigrams)
	var terms []string
	for i := 0; i < n; i += step {
		if t := string(runes[i : i+3]); !slices.Contains(terms, t) {
			terms = append(terms, t)
		}
	}
	return terms
}

// rarest keeps the queriedTrigrams terms that the fewest messages hold
// (a term the vocabulary does not list as it is, folded otherwise by the
// tokenizer, counts as rare: it narrows or costs little either way).
func (s *Store) rarest(ctx context.Context, terms []string) ([]string, error) {
	if len(terms) <= queriedTrigrams {
		return terms, nil
	}
	docs := make(map[string]int64, len(terms))
	for _, t := range terms {
		n, ok := s.termDocs.get(t)
		if !ok {
			err := s.queryRow(ctx, `SELECT doc FROM search_vocab WHERE term = ?`, t).Scan(&n)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, err
			}
			s.termDocs.put(t, n)
		}
		docs[t] = n
	}
	slices.SortStableFunc(terms, func(a, b string) int { return cmp.Compare(docs[a], docs[b]) })
	return terms[:queriedTrigrams], nil
}

// termCounts remembers how many messages hold a term, for rarest: the
// vocabulary counts a term by walking its list of messages, which for a
// trigram that 100,000 messages hold was four fifths of a rare SEARCH's
// time. The figures only rank terms (the query is a superset either way),
// so they may be old: each is kept termCountAge, and all are dropped
// beyond termCountMax terms.
type termCounts struct {
	mu sync.Mutex
	m  map[string]termCount
}

type termCount struct {
	docs int64
	at   time.Time
}

const (
	termCountAge = 10 * time.Minute
	termCountMax = 100_000
)

func (c *termCounts) get(term string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc, ok := c.m[term]
	if !ok || time.Since(tc.at) > termCountAge {
		return 0, false
	}
	return tc.docs, true
}

func (c *termCounts) put(term string, docs int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= termCountMax {
		c.m = map[string]termCount{}
	}
	c.m[term] = termCount{docs, time.Now()}
}

// matchQuery is the FTS5 query for terms in field: each quoted, all of
// them.
func matchQuery(terms []string, field store.TextField) string {
	quoted := make([]string, len(terms))
	for i, t := range terms {
		quoted[i] = `"` + strings.ReplaceAll(t, `"`, `""`) + `"`
	}
	q := strings.Join(quoted, " AND ")
	switch field {
	case store.TextHeader:
		return "header : (" + q + ")"
	case store.TextBody:
		return "body : (" + q + ")"
	}
	return q
}

// sortColumns are the columns of each SortFields bit, in its order.
var sortColumns = []string{"sk.sent / 1000000000", "sk.subject", "sk.from_addr", "sk.to_addr", "sk.cc_addr", "sk.display_from", "sk.display_to",
	"mm.internal_date / 1000000000", "mm.size"}

// SortRows reads SORT's rows as one text a column (see MailboxState), and
// only the columns asked for, dates in seconds: the text is copied several
// times on its way (SQLite's result, the driver's string), and with every
// key it was 12 MB for 100,000 messages. Keys hold no control characters,
// so US (0x1f) separates the values.
func (s *Store) SortRows(ctx context.Context, userID int64, mailbox string, uids []uint32, fields store.SortFields) ([]store.SortRow, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	which, arg := uidSet(uids)
	cols := []string{"mm.uid", "sk.message_id IS NOT NULL"}
	var asked []int
	for i, c := range sortColumns {
		if fields&(1<<i) != 0 {
			cols = append(cols, c)
			asked = append(asked, i)
		}
	}
	aggs := make([]string, len(cols))
	for i, c := range cols {
		aggs[i] = "group_concat(coalesce(" + c + ", ''), char(31))"
	}
	texts := make([]sql.NullString, len(cols))
	dest := make([]any, len(cols))
	for i := range texts {
		dest[i] = &texts[i]
	}
	var mb int64
	err := s.queryRow(ctx, `SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`, userID, mailbox).Scan(&mb)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound)
	}
	if err == nil {
		err = s.queryRow(ctx, `SELECT `+strings.Join(aggs, ", ")+`
			FROM mailbox_messages mm LEFT JOIN sort_keys sk ON sk.message_id = mm.message_id
			WHERE mm.mailbox_id = ? AND `+which, append([]any{mb}, arg...)...).Scan(dest...)
	}
	if err != nil {
		return nil, fmt.Errorf("store: sort %q: %w", mailbox, err)
	}
	if !texts[0].Valid {
		return nil, nil
	}
	n := strings.Count(texts[0].String, "\x1f") + 1
	rows := make([]store.SortRow, n)
	for c, t := range texts {
		i := 0
		for v := range strings.SplitSeq(t.String, "\x1f") {
			if i == n {
				return nil, fmt.Errorf("store: sort %q: column %d has more values than UIDs", mailbox, c)
			}
			if err := setSortValue(&rows[i], c, asked, v); err != nil {
				return nil, fmt.Errorf("store: sort %q: %w", mailbox, err)
			}
			i++
		}
		if i != n {
			return nil, fmt.Errorf("store: sort %q: column %d has %d values for %d UIDs", mailbox, c, i, n)
		}
	}
	sortByUID(rows, func(r store.SortRow) uint32 { return r.UID })
	return rows, nil
}

// setSortValue sets column c of a SortRows query (UID, indexed, then the
// asked sortColumns) in r.
func setSortValue(r *store.SortRow, c int, asked []int, v string) error {
	num := func() (int64, error) { return strconv.ParseInt(v, 10, 64) }
	switch c {
	case 0:
		uid, err := strconv.ParseUint(v, 10, 32)
		r.UID = uint32(uid)
		return err
	case 1:
		r.Indexed = v == "1"
		return nil
	}
	col := asked[c-2]
	texts := []*string{1: &r.Keys.Subject, 2: &r.Keys.From, 3: &r.Keys.To, 4: &r.Keys.Cc, 5: &r.Keys.DisplayFrom, 6: &r.Keys.DisplayTo, 8: nil}
	if t := texts[col]; t != nil {
		*t = v
		return nil
	}
	switch col {
	case 0:
		if v != "" {
			n, err := num()
			r.Keys.Sent = time.Unix(n, 0)
			return err
		}
	case 7:
		n, err := num()
		r.Date = time.Unix(n, 0)
		return err
	case 8:
		n, err := num()
		r.Size = n
		return err
	}
	return nil
}

// uidSet is the condition on mm.uid for a set of UIDs, and its arguments:
// a dense set is read as its range, a sparse one (a search's matches in a
// large mailbox) by its UIDs, or every message between would be read.
func uidSet(uids []uint32) (string, []any) {
	want := slices.Clone(uids)
	slices.Sort(want)
	lo, hi := want[0], want[len(want)-1]
	if span := int64(hi-lo) + 1; span <= 4*int64(len(want)) {
		return `mm.uid BETWEEN ? AND ?`, []any{lo, hi}
	}
	var list strings.Builder
	list.WriteByte('[')
	for i, uid := range want {
		if i > 0 {
			list.WriteByte(',')
		}
		list.WriteString(strconv.FormatUint(uint64(uid), 10))
	}
	list.WriteByte(']')
	return `mm.uid IN (SELECT value FROM json_each(?))`, []any{list.String()}
}
