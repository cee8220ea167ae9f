package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

const mailboxColumns = `SELECT mb.id, mb.name, mb.special_use, mb.uidvalidity,
	EXISTS (SELECT 1 FROM subscriptions s WHERE s.user_id = mb.user_id AND s.name = mb.name) FROM mailboxes mb`

func scanMailbox(r pgx.Row) (store.MailboxInfo, error) {
	var mb store.MailboxInfo
	var validity int64
	err := r.Scan(&mb.ID, &mb.Name, &mb.SpecialUse, &validity, &mb.Subscribed)
	mb.UIDValidity = uint32(validity)
	return mb, err
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// mailboxID finds a user's mailbox (lock: FOR UPDATE, in a transaction).
func mailboxID(ctx context.Context, q querier, userID int64, name string, lock bool) (int64, error) {
	sql := `SELECT id FROM mailboxes WHERE user_id = $1 AND name = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	var id int64
	err := q.QueryRow(ctx, sql, userID, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("mailbox %q: %w", name, store.ErrNotFound)
	}
	return id, err
}

// Mailbox describes one mailbox.
func (s *Store) Mailbox(ctx context.Context, userID int64, name string) (store.MailboxInfo, error) {
	mb, err := scanMailbox(s.pool.QueryRow(ctx, mailboxColumns+` WHERE mb.user_id = $1 AND mb.name = $2`, userID, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return mb, fmt.Errorf("mailbox %q: %w", name, store.ErrNotFound)
	}
	return mb, store.MailError("read mailbox", name, err)
}

// ListMailboxes lists a user's mailboxes by name.
func (s *Store) ListMailboxes(ctx context.Context, userID int64) ([]store.MailboxInfo, error) {
	rows, _ := s.pool.Query(ctx, mailboxColumns+` WHERE mb.user_id = $1 ORDER BY mb.name COLLATE "C"`, userID)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.MailboxInfo, error) { return scanMailbox(r) })
	return out, store.MailError("list mailboxes", "", err)
}

// CreateMailbox makes a mailbox.
func (s *Store) CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (store.MailboxInfo, error) {
	var mb store.MailboxInfo
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		var err error
		if mb, err = insertMailbox(ctx, tx, userID, name, specialUse); err != nil {
			return err
		}
		return s.notify(ctx, tx, userID, 0, 0)
	})
	return mb, store.MailError("create mailbox", name, err)
}

// DeleteMailbox removes a mailbox with its messages.
func (s *Store) DeleteMailbox(ctx context.Context, userID int64, name string) error {
	if name == store.Inbox {
		return fmt.Errorf("store: delete mailbox INBOX: %w", store.ErrInUse)
	}
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		id, err := mailboxID(ctx, tx, userID, name, true)
		if err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `DELETE FROM mailbox_messages WHERE mailbox_id = $1 RETURNING message_id, size`, id)
		var ids []int64
		var size, msgID, n int64
		if _, err := pgx.ForEachRow(rows, []any{&msgID, &n}, func() error {
			ids, size = append(ids, msgID), size+n
			return nil
		}); err != nil {
			return err
		}
		if _, _, err := s.addUsed(ctx, tx, userID, -size); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mailboxes WHERE id = $1`, id); err != nil {
			return err
		}
		if err := deleteUnreferenced(ctx, tx, ids); err != nil {
			return err
		}
		return s.notify(ctx, tx, userID, id, 0)
	})
	return store.MailError("delete mailbox", name, err)
}

// RenameMailbox renames a mailbox and those below it.
func (s *Store) RenameMailbox(ctx context.Context, userID int64, from, to string) error {
	if from == to || strings.HasPrefix(to, from+store.Separator) && from != store.Inbox {
		return fmt.Errorf("store: rename mailbox %q to %q: a mailbox cannot be renamed to itself or below itself: %w", from, to, store.ErrExists)
	}
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		id, err := mailboxID(ctx, tx, userID, from, true)
		if err != nil {
			return err
		}
		if err := s.notify(ctx, tx, userID, 0, 0); err != nil {
			return err
		}
		if from == store.Inbox {
			return s.renameInbox(ctx, tx, userID, id, to)
		}
		rows, _ := tx.Query(ctx, `SELECT id, name FROM mailboxes WHERE user_id = $1 AND (name = $2 OR starts_with(name, $3))`,
			userID, from, from+store.Separator)
		type rename struct {
			id       int64
			old, new string
		}
		rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rename, error) {
			var x rename
			err := r.Scan(&x.id, &x.old)
			x.new = to + strings.TrimPrefix(x.old, from)
			return x, err
		})
		if err != nil {
			return err
		}
		for _, r := range rs {
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET name = $1 WHERE id = $2`, r.new, r.id); err != nil {
				if isCode(err, codeUniqueViolation) {
					return fmt.Errorf("mailbox %q: %w", r.new, store.ErrExists)
				}
				return err
			}
			// Subscriptions follow the mailbox, as clients expect.
			tag, err := tx.Exec(ctx, `DELETE FROM subscriptions WHERE user_id = $1 AND name = $2`, userID, r.old)
			if err != nil {
				return err
			}
			if tag.RowsAffected() > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO subscriptions(user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`, userID, r.new); err != nil {
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
// (RFC 9051 6.3.6).
func (s *Store) renameInbox(ctx context.Context, tx pgx.Tx, userID, inboxID int64, to string) error {
	mb, err := insertMailbox(ctx, tx, userID, to, "")
	if err != nil {
		return err
	}
	var modseq int64
	if err := tx.QueryRow(ctx, `UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING highest_modseq`, inboxID).Scan(&modseq); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE mailboxes n SET uidnext = i.uidnext, highest_modseq = i.highest_modseq - 1 FROM mailboxes i WHERE n.id = $1 AND i.id = $2`,
		mb.ID, inboxID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO expunged(mailbox_id, uid, modseq) SELECT $1, uid, $2 FROM mailbox_messages WHERE mailbox_id = $1
		ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq`, inboxID, modseq); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE mailbox_messages SET mailbox_id = $1 WHERE mailbox_id = $2`, mb.ID, inboxID)
	return err
}

// SetSubscribed subscribes or unsubscribes a name.
func (s *Store) SetSubscribed(ctx context.Context, userID int64, name string, subscribed bool) error {
	q := `DELETE FROM subscriptions WHERE user_id = $1 AND name = $2`
	if subscribed {
		q = `INSERT INTO subscriptions(user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	}
	_, err := s.pool.Exec(ctx, q, userID, name)
	return store.MailError("subscribe", name, err)
}

// Subscriptions lists the names a user subscribed to.
func (s *Store) Subscriptions(ctx context.Context, userID int64) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT name FROM subscriptions WHERE user_id = $1 ORDER BY name COLLATE "C"`, userID)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, store.MailError("list subscriptions", "", err)
}
