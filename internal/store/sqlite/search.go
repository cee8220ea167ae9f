package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
		}
		return nil
	})
}

// maxTrigrams bounds a query's terms: a long search text is narrowed
// well enough by some of its trigrams, and the candidates are checked.
const maxTrigrams = 24

// TextCandidates reads the candidates from the index, with the messages
// not indexed yet; SEARCH TEXT also looks in each copy's prefix.
func (s *Store) TextCandidates(ctx context.Context, userID int64, mailbox string, field store.TextField, text string) ([]uint32, error) {
	match := trigramQuery(text, field)
	cond := "1"
	args := []any{userID, mailbox}
	if match != "" {
		cond = `(message_id IN (SELECT rowid FROM search_text WHERE search_text MATCH ?3)
			OR message_id IN (SELECT id FROM messages WHERE text_indexed = 0))`
		args = append(args, match)
		if field == store.TextAll {
			cond = cond[:len(cond)-1] + ` OR instr(lower(CAST(prefix AS TEXT)), ?4) > 0)`
			args = append(args, strings.ToLower(text))
		}
	}
	// One text of UIDs rather than a row each (see MailboxState).
	var list sql.NullString
	err := s.queryRow(ctx, `SELECT (SELECT group_concat(uid, ' ' ORDER BY uid) FROM mailbox_messages
			WHERE mailbox_id = mb.id AND `+cond+`)
		FROM mailboxes mb WHERE mb.user_id = ?1 AND mb.name = ?2`, args...).Scan(&list)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("mailbox %q: %w", mailbox, store.ErrNotFound)
	}
	if err != nil {
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
	return uids, nil
}

// trigramQuery is the FTS5 query for text in field: every trigram of it
// (up to maxTrigrams, spread over it), each a quoted term; "" when text
// has fewer than three characters.
func trigramQuery(text string, field store.TextField) string {
	runes := []rune(strings.ToLower(text))
	n := len(runes) - 2
	if n < 1 || !utf8.ValidString(text) {
		return ""
	}
	step := max(1, (n+maxTrigrams-1)/maxTrigrams)
	var terms []string
	seen := map[string]bool{}
	for i := 0; i < n; i += step {
		t := string(runes[i : i+3])
		if !seen[t] {
			seen[t] = true
			terms = append(terms, `"`+strings.ReplaceAll(t, `"`, `""`)+`"`)
		}
	}
	q := strings.Join(terms, " AND ")
	switch field {
	case store.TextHeader:
		return "header : (" + q + ")"
	case store.TextBody:
		return "body : (" + q + ")"
	}
	return q
}
