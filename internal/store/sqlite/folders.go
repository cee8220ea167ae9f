package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailroom/internal/store"
)

// insertMailbox makes a mailbox with the next UIDVALIDITY of the user: the
// larger of the user's counter and the time in seconds, so that a name
// deleted and made again, even by a user deleted and added again, does not
// get a UIDVALIDITY it had (RFC 9051 2.3.1.1).
func insertMailbox(tx *wtx, userID int64, name, specialUse string) (store.MailboxInfo, error) {
	mb := store.MailboxInfo{Name: name, SpecialUse: specialUse}
	var next int64
	if err := tx.QueryRow(`SELECT uidvalidity_next FROM users WHERE id = ?`, userID).Scan(&next); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return mb, fmt.Errorf("user %d: %w", userID, store.ErrNotFound)
		}
		return mb, err
	}
	v := max(next, time.Now().Unix(), 1)
	if v > 0xffffffff {
		return mb, fmt.Errorf("user %d has used every UIDVALIDITY", userID)
	}
	mb.UIDValidity = uint32(v)
	if _, err := tx.Exec(`UPDATE users SET uidvalidity_next = ? WHERE id = ?`, v+1, userID); err != nil {
		return mb, err
	}
	id, err := tx.nextID(seqMailboxes)
	if err != nil {
		return mb, err
	}
	mb.ID = id
	_, err = tx.Exec(`INSERT INTO mailboxes(id, user_id, name, uidvalidity, special_use) VALUES (?, ?, ?, ?, ?)`,
		id, userID, name, mb.UIDValidity, specialUse)
	if isUniqueViolation(err) {
		return mb, fmt.Errorf("mailbox %q: %w", name, store.ErrExists)
	}
	return mb, err
}

const mailboxColumns = `SELECT mb.id, mb.name, mb.special_use, mb.uidvalidity,
	EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = mb.user_id AND s.name = mb.name) FROM mailboxes mb`

func scanMailbox(r scanner) (store.MailboxInfo, error) {
	var mb store.MailboxInfo
	err := r.Scan(&mb.ID, &mb.Name, &mb.SpecialUse, &mb.UIDValidity, &mb.Subscribed)
	return mb, err
}

// Mailbox describes one mailbox.
func (s *Store) Mailbox(ctx context.Context, userID int64, name string) (store.MailboxInfo, error) {
	mb, err := scanMailbox(s.queryRow(ctx, mailboxColumns+` WHERE mb.user_id = ? AND mb.name = ?`, userID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return mb, fmt.Errorf("mailbox %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return mb, fmt.Errorf("store: mailbox %q: %w", name, err)
	}
	return mb, nil
}

// ListMailboxes lists a user's mailboxes by name.
func (s *Store) ListMailboxes(ctx context.Context, userID int64) ([]store.MailboxInfo, error) {
	rows, err := s.query(ctx, mailboxColumns+` WHERE mb.user_id = ? ORDER BY mb.name`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: list mailboxes: %w", err)
	}
	defer rows.Close()
	var out []store.MailboxInfo
	for rows.Next() {
		mb, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list mailboxes: %w", err)
		}
		out = append(out, mb)
	}
	return out, rows.Err()
}

// CreateMailbox makes a mailbox.
func (s *Store) CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (store.MailboxInfo, error) {
	var mb store.MailboxInfo
	err := s.write(ctx, func(tx *wtx) error {
		var err error
		mb, err = insertMailbox(tx, userID, name, specialUse)
		tx.changed(userID, 0)
		return err
	})
	return mb, store.MailError("create mailbox", name, err)
}

// DeleteMailbox removes a mailbox with its messages.
func (s *Store) DeleteMailbox(ctx context.Context, userID int64, name string) error {
	if name == store.Inbox {
		return fmt.Errorf("store: delete mailbox INBOX: %w", store.ErrInUse)
	}
	var files []string
	err := s.write(ctx, func(tx *wtx) error {
		var id int64
		err := tx.QueryRow(`SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mailbox %q: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(`DELETE FROM mailbox_messages WHERE mailbox_id = ? RETURNING message_id, size`, id)
		if err != nil {
			return err
		}
		var ids []int64
		var size int64
		for rows.Next() {
			var msgID, n int64
			if err := rows.Scan(&msgID, &n); err != nil {
				rows.Close()
				return err
			}
			ids, size = append(ids, msgID), size+n
		}
		rows.Close()
		if _, _, err := tx.addUsed(userID, -size); err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM expunged WHERE mailbox_id = ?`, `DELETE FROM mailboxes WHERE id = ?`} {
			if _, err := tx.Exec(q, id); err != nil {
				return err
			}
		}
		files, err = deleteUnreferenced(tx, ids)
		tx.changed(userID, id)
		return err
	})
	if err == nil {
		s.dircache.changed() // the user's used bytes went down
		s.removeBlobs(files)
	}
	return store.MailError("delete mailbox", name, err)
}

// RenameMailbox renames a mailbox and those below it.
func (s *Store) RenameMailbox(ctx context.Context, userID int64, from, to string) error {
	if from == to || strings.HasPrefix(to, from+store.Separator) && from != store.Inbox {
		return fmt.Errorf("store: rename mailbox %q to %q: a mailbox cannot be renamed to itself or below itself: %w", from, to, store.ErrExists)
	}
	err := s.write(ctx, func(tx *wtx) error {
		var id int64
		err := tx.QueryRow(`SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`, userID, from).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("mailbox %q: %w", from, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		tx.changed(userID, 0)
		if from == store.Inbox {
			return renameInbox(tx, userID, id, to)
		}
		// Every name from or below it, renamed; none may land on a name
		// that is taken.
		rows, err := tx.Query(`SELECT id, name FROM mailboxes WHERE user_id = ? AND (name = ? OR substr(name, 1, ?) = ?)`,
			userID, from, len(from)+1, from+store.Separator)
		if err != nil {
			return err
		}
		type rename struct {
			id       int64
			old, new string
		}
		var rs []rename
		for rows.Next() {
			var r rename
			if err := rows.Scan(&r.id, &r.old); err != nil {
				rows.Close()
				return err
			}
			r.new = to + strings.TrimPrefix(r.old, from)
			rs = append(rs, r)
		}
		rows.Close()
		for _, r := range rs {
			if _, err := tx.Exec(`UPDATE mailboxes SET name = ? WHERE id = ?`, r.new, r.id); err != nil {
				if isUniqueViolation(err) {
					return fmt.Errorf("mailbox %q: %w", r.new, store.ErrExists)
				}
				return err
			}
			// Subscriptions follow the mailbox, as clients expect.
			res, err := tx.Exec(`DELETE FROM subscriptions WHERE user_id = ? AND name = ?`, userID, r.old)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				if _, err := tx.Exec(`INSERT OR IGNORE INTO subscriptions(user_id, name) VALUES (?, ?)`, userID, r.new); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return store.MailError("rename mailbox", from, err)
}

// renameInbox moves INBOX's messages to a new mailbox named to, keeping
// their UIDs, and leaves INBOX empty, its messages gone as if expunged
// (RFC 9051 6.3.6). Mailboxes below INBOX stay where they are.
func renameInbox(tx *wtx, userID, inboxID int64, to string) error {
	mb, err := insertMailbox(tx, userID, to, "")
	if err != nil {
		return err
	}
	c, err := tx.mailbox(userID, store.Inbox)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(`UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?`, c.uidnext, c.modseq, mb.ID); err != nil {
		return err
	}
	_, modseq, err := tx.nextModSeq(userID, store.Inbox)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) SELECT ?, uid, ? FROM mailbox_messages WHERE mailbox_id = ?`,
		inboxID, modseq, inboxID); err != nil {
		return err
	}
	_, err = tx.Exec(`UPDATE mailbox_messages SET mailbox_id = ? WHERE mailbox_id = ?`, mb.ID, inboxID)
	return err
}

// SetSubscribed subscribes or unsubscribes a name.
func (s *Store) SetSubscribed(ctx context.Context, userID int64, name string, subscribed bool) error {
	q := `DELETE FROM subscriptions WHERE user_id = ? AND name = ?`
	if subscribed {
		q = `INSERT OR IGNORE INTO subscriptions(user_id, name) VALUES (?, ?)`
	}
	err := s.write(ctx, func(tx *wtx) error {
		_, err := tx.Exec(q, userID, name)
		return err
	})
	return store.MailError("subscribe", name, err)
}

// Subscriptions lists the names a user subscribed to.
func (s *Store) Subscriptions(ctx context.Context, userID int64) ([]string, error) {
	rows, err := s.query(ctx, `SELECT name FROM subscriptions WHERE user_id = ? ORDER BY name`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: subscriptions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, rows.Err()
}
