package postgres

import (
	"context"
	"fmt"

	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"mailroom/internal/store"
)

// Unindexed returns messages in mailboxes whose text is not indexed yet.
func (s *Store) Unindexed(ctx context.Context, limit int) ([]int64, error) {
	rows, _ := s.pool.Query(ctx, `SELECT m.id FROM messages m WHERE NOT m.text_indexed
		AND EXISTS (SELECT 1 FROM mailbox_messages mm WHERE mm.message_id = m.id) ORDER BY m.id LIMIT $1`, limit)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("store: messages to index: %w", err)
	}
	return ids, nil
}

// fold is text as the index keeps it and is asked: lower case, without
// diacritics (é is e), valid UTF-8.
func fold(b []byte) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, strings.ToLower(strings.ToValidUTF8(string(b), "\uFFFD")))
	if err != nil {
		return strings.ToLower(strings.ToValidUTF8(string(b), "\uFFFD"))
	}
	return strings.ReplaceAll(out, "\x00", "")
}

// IndexTexts indexes messages' folded text and sort keys, skipping those
// removed or indexed meanwhile.
func (s *Store) IndexTexts(ctx context.Context, texts []store.IndexedText) error {
	return s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		for _, t := range texts {
			tag, err := tx.Exec(ctx, `UPDATE messages SET text_indexed = true WHERE id = $1 AND NOT text_indexed`, t.MessageID)
			if err != nil {
				return fmt.Errorf("store: index message %d: %w", t.MessageID, err)
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO search_text(message_id, header, body) VALUES ($1, $2, $3)
				ON CONFLICT (message_id) DO UPDATE SET header = excluded.header, body = excluded.body`,
				t.MessageID, fold(t.Header), fold(t.Body)); err != nil {
				return fmt.Errorf("store: index message %d: %w", t.MessageID, err)
			}
			k := t.SortKeys
			var sent *int64
			if !k.Sent.IsZero() {
				n := k.Sent.UnixNano()
				sent = &n
			}
			if _, err := tx.Exec(ctx, `INSERT INTO sort_keys(message_id, sent, subject, from_addr, to_addr, cc_addr, display_from, display_to)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (message_id) DO UPDATE SET sent = excluded.sent, subject = excluded.subject,
				from_addr = excluded.from_addr, to_addr = excluded.to_addr, cc_addr = excluded.cc_addr, display_from = excluded.display_from,
				display_to = excluded.display_to`,
				t.MessageID, sent, k.Subject, k.From, k.To, k.Cc, k.DisplayFrom, k.DisplayTo); err != nil {
				return fmt.Errorf("store: index message %d: %w", t.MessageID, err)
			}
		}
		return nil
	})
}

// likeEscape makes text a LIKE pattern's literal part.
func likeEscape(text string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(text)
}

// byteaEscape is text as encode(bytes, 'escape') writes it (zero and
// high-bit octets as \nnn, a backslash doubled), to find it in a prefix
// kept as bytes.
func byteaEscape(text string) string {
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == 0 || c >= 0x80:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// TextCandidates reads the candidates from the index (pg_trgm answers a
// LIKE on the folded text through its trigram index), with the messages
// not indexed yet; SEARCH TEXT also looks in each copy's prefix.
func (s *Store) TextCandidates(ctx context.Context, userID int64, mailbox string, field store.TextField, text string) ([]uint32, error) {
	mb, err := mailboxID(ctx, s.pool, userID, mailbox, false)
	if err != nil {
		return nil, store.MailError("search", mailbox, err)
	}
	q, args := `SELECT uid FROM mailbox_messages WHERE mailbox_id = $1 ORDER BY uid`, []any{mb}
	if utf8.RuneCountInString(text) >= 3 {
		cond := map[store.TextField]string{
			store.TextAll:    `(st.header LIKE $2 OR st.body LIKE $2)`,
			store.TextHeader: `st.header LIKE $2`,
			store.TextBody:   `st.body LIKE $2`,
		}[field]
		q = `SELECT mm.uid FROM search_text st JOIN mailbox_messages mm ON mm.message_id = st.message_id WHERE mm.mailbox_id = $1 AND ` + cond + `
			UNION SELECT mm.uid FROM messages m JOIN mailbox_messages mm ON mm.message_id = m.id WHERE mm.mailbox_id = $1 AND NOT m.text_indexed`
		args = append(args, "%"+likeEscape(fold([]byte(text)))+"%")
		if field == store.TextAll {
			q += `
			UNION SELECT uid FROM mailbox_messages WHERE mailbox_id = $1 AND strpos(lower(encode(prefix, 'escape')), $3) > 0`
			args = append(args, strings.ToLower(byteaEscape(text)))
		}
		q += ` ORDER BY 1`
	}
	rows, _ := s.pool.Query(ctx, q, args...)
	uids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (uint32, error) {
		var uid int64
		err := r.Scan(&uid)
		return uint32(uid), err
	})
	if err != nil {
		return nil, fmt.Errorf("store: search %q: %w", mailbox, err)
	}
	return uids, nil
}

// SortRows returns what SORT reads of each message of uids, with the keys
// asked for.
func (s *Store) SortRows(ctx context.Context, userID int64, mailbox string, uids []uint32, fields store.SortFields) ([]store.SortRow, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	mb, err := mailboxID(ctx, s.pool, userID, mailbox, false)
	if err != nil {
		return nil, store.MailError("sort", mailbox, err)
	}
	rows, _ := s.pool.Query(ctx, `SELECT mm.uid, sk.message_id IS NOT NULL, sk.sent, coalesce(sk.subject, ''), coalesce(sk.from_addr, ''),
		coalesce(sk.to_addr, ''), coalesce(sk.cc_addr, ''), coalesce(sk.display_from, ''), coalesce(sk.display_to, ''), mm.internal_date, mm.size
		FROM mailbox_messages mm LEFT JOIN sort_keys sk ON sk.message_id = mm.message_id
		WHERE mm.mailbox_id = $1 AND mm.uid = ANY($2) ORDER BY mm.uid`, mb, uidArray(uids))
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.SortRow, error) {
		var row store.SortRow
		var uid, date int64
		var sent *int64
		k := &row.Keys
		var subject, from, to, cc, dfrom, dto string
		if err := r.Scan(&uid, &row.Indexed, &sent, &subject, &from, &to, &cc, &dfrom, &dto, &date, &row.Size); err != nil {
			return row, err
		}
		row.UID = uint32(uid)
		// Only the keys asked for, dates to the second (IMAP's precision).
		set := func(f store.SortFields, dst *string, v string) {
			if fields&f != 0 {
				*dst = v
			}
		}
		set(store.SortSubject, &k.Subject, subject)
		set(store.SortFrom, &k.From, from)
		set(store.SortTo, &k.To, to)
		set(store.SortCc, &k.Cc, cc)
		set(store.SortDisplayFrom, &k.DisplayFrom, dfrom)
		set(store.SortDisplayTo, &k.DisplayTo, dto)
		if fields&store.SortSent != 0 && sent != nil {
			k.Sent = time.Unix(*sent/1e9, 0)
		}
		if fields&store.SortArrival != 0 {
			row.Date = time.Unix(date/1e9, 0)
		}
		if fields&store.SortSize == 0 {
			row.Size = 0
		}
		return row, nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: sort %q: %w", mailbox, err)
	}
	return out, nil
}
