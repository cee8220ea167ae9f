package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// AddDomain adds a local domain.
func (s *Store) AddDomain(ctx context.Context, d store.Domain) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO domains(name, catch_all, created) VALUES ($1, $2, $3)`, d.Name, d.CatchAll, time.Now().Unix())
	if isCode(err, codeUniqueViolation) {
		return fmt.Errorf("domain %s: %w", d.Name, store.ErrExists)
	}
	return err
}

// DeleteDomain removes a domain that has no users and no aliases left.
func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM users WHERE domain = $1) + (SELECT count(*) FROM aliases WHERE domain = $1)`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("domain %s has %d users or aliases: %w", name, n, store.ErrInUse)
		}
		return expectOne(tx.Exec(ctx, `DELETE FROM domains WHERE name = $1`, name))("domain " + name)
	})
}

// Domain returns one domain.
func (s *Store) Domain(ctx context.Context, name string) (store.Domain, error) {
	d, err := scanDomain(s.pool.QueryRow(ctx, `SELECT name, catch_all, created FROM domains WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("domain %s: %w", name, store.ErrNotFound)
	}
	return d, err
}

func scanDomain(r pgx.Row) (store.Domain, error) {
	var d store.Domain
	var created int64
	err := r.Scan(&d.Name, &d.CatchAll, &created)
	d.Created = time.Unix(created, 0)
	return d, err
}

// Domains lists all domains by name.
func (s *Store) Domains(ctx context.Context) ([]store.Domain, error) {
	rows, _ := s.pool.Query(ctx, `SELECT name, catch_all, created FROM domains ORDER BY name`)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Domain, error) { return scanDomain(r) })
}

// AddUser creates a user with INBOX and the special-use mailboxes, all
// subscribed.
func (s *Store) AddUser(ctx context.Context, u store.User) (store.User, error) {
	u.Created = time.Now().Truncate(time.Second)
	u.UsedBytes = 0
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := requireDomain(ctx, tx, store.DomainOf(u.Address)); err != nil {
			return err
		}
		var alias bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM aliases WHERE address = $1)`, u.Address).Scan(&alias); err != nil {
			return err
		}
		if alias {
			return fmt.Errorf("%s is an alias: %w", u.Address, store.ErrExists)
		}
		settings, _ := json.Marshal(u.Settings)
		err := tx.QueryRow(ctx, `INSERT INTO users(address, domain, password_hash, scram_sha256, cram_md5, settings, quota_bytes, created)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			u.Address, store.DomainOf(u.Address), u.PasswordHash, u.SCRAMSHA256, u.CRAMMD5, settings, u.QuotaBytes, u.Created.Unix()).Scan(&u.ID)
		if isCode(err, codeUniqueViolation) {
			return fmt.Errorf("user %s: %w", u.Address, store.ErrExists)
		}
		if err != nil {
			return err
		}
		boxes := append([]struct{ Name, SpecialUse string }{{store.Inbox, ""}}, store.DefaultMailboxes...)
		for _, mb := range boxes {
			if _, err := insertMailbox(ctx, tx, u.ID, mb.Name, mb.SpecialUse); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO subscriptions(user_id, name) VALUES ($1, $2)`, u.ID, mb.Name); err != nil {
				return err
			}
		}
		return nil
	})
	return s.withQuota(u), err
}

// insertMailbox makes a mailbox with a UIDVALIDITY the user never had
// (RFC 3501 2.3.1.1): the user's counter, or the clock when it is ahead.
func insertMailbox(ctx context.Context, tx pgx.Tx, userID int64, name, specialUse string) (store.MailboxInfo, error) {
	mb := store.MailboxInfo{Name: name, SpecialUse: specialUse}
	var next int64
	err := tx.QueryRow(ctx, `SELECT uidvalidity_next FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return mb, fmt.Errorf("user %d: %w", userID, store.ErrNotFound)
	}
	if err != nil {
		return mb, err
	}
	v := max(next, time.Now().Unix(), 1)
	if v > 0xffffffff {
		return mb, fmt.Errorf("user %d has used every UIDVALIDITY", userID)
	}
	mb.UIDValidity = uint32(v)
	if _, err := tx.Exec(ctx, `UPDATE users SET uidvalidity_next = $1 WHERE id = $2`, v+1, userID); err != nil {
		return mb, err
	}
	err = tx.QueryRow(ctx, `INSERT INTO mailboxes(user_id, name, uidvalidity, special_use) VALUES ($1, $2, $3, $4) RETURNING id`,
		userID, name, v, specialUse).Scan(&mb.ID)
	if isCode(err, codeUniqueViolation) {
		return mb, fmt.Errorf("mailbox %q: %w", name, store.ErrExists)
	}
	return mb, err
}

func requireDomain(ctx context.Context, tx pgx.Tx, domain string) error {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM domains WHERE name = $1)`, domain).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("domain %s: %w", domain, store.ErrNotFound)
	}
	return nil
}

// DeleteUser removes a user with everything of theirs (the rows they own
// go with theirs), and the messages no one else holds any more.
func (s *Store) DeleteUser(ctx context.Context, address string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT DISTINCT mm.message_id FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id
			JOIN users u ON u.id = mb.user_id WHERE u.address = $1`, address)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if err := expectOne(tx.Exec(ctx, `DELETE FROM users WHERE address = $1`, address))("user " + address); err != nil {
			return err
		}
		return deleteUnreferenced(ctx, tx, ids)
	})
}

// User returns one user.
func (s *Store) User(ctx context.Context, address string) (store.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, userColumns+` WHERE address = $1`, address))
	if errors.Is(err, pgx.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", address, store.ErrNotFound)
	}
	return s.withQuota(u), err
}

// withQuota fills in the quota in force for u.
func (s *Store) withQuota(u store.User) store.User { return u.WithQuota(s.defaultQuota.Load()) }

const userColumns = `SELECT id, address, password_hash, quota_bytes, used_bytes, created, scram_sha256, cram_md5, settings FROM users`

func scanUser(r pgx.Row) (store.User, error) {
	var u store.User
	var created int64
	var settings []byte
	err := r.Scan(&u.ID, &u.Address, &u.PasswordHash, &u.QuotaBytes, &u.UsedBytes, &created, &u.SCRAMSHA256, &u.CRAMMD5, &settings)
	u.Created = time.Unix(created, 0)
	if err == nil {
		err = json.Unmarshal(settings, &u.Settings)
	}
	return u, err
}

// Users lists users, of one domain or all.
func (s *Store) Users(ctx context.Context, domain string) ([]store.User, error) {
	rows, _ := s.pool.Query(ctx, userColumns+` WHERE $1 = '' OR domain = $1 ORDER BY address`, domain)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.User, error) {
		u, err := scanUser(r)
		return s.withQuota(u), err
	})
}

// SetUserSettings replaces a user's settings.
func (s *Store) SetUserSettings(ctx context.Context, address string, us store.UserSettings) error {
	b, err := json.Marshal(us)
	if err != nil {
		return err
	}
	return expectOne(s.pool.Exec(ctx, `UPDATE users SET settings = $1 WHERE address = $2`, b, address))("user " + address)
}

// SetPassword replaces everything stored of a user's password.
func (s *Store) SetPassword(ctx context.Context, address string, sec store.Secrets) error {
	return expectOne(s.pool.Exec(ctx, `UPDATE users SET password_hash = $1, scram_sha256 = $2, cram_md5 = $3 WHERE address = $4`,
		sec.Hash, sec.SCRAMSHA256, sec.CRAMMD5, address))("user " + address)
}

// AddAlias adds an alias; its address must be in a local domain and must
// not be a user.
func (s *Store) AddAlias(ctx context.Context, a store.Alias) error {
	targets, err := json.Marshal(a.Targets)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		if err := requireDomain(ctx, tx, store.DomainOf(a.Address)); err != nil {
			return err
		}
		var user bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE address = $1)`, a.Address).Scan(&user); err != nil {
			return err
		}
		if user {
			return fmt.Errorf("%s is a user: %w", a.Address, store.ErrExists)
		}
		_, err := tx.Exec(ctx, `INSERT INTO aliases(address, domain, targets, created) VALUES ($1, $2, $3, $4)`,
			a.Address, store.DomainOf(a.Address), targets, time.Now().Unix())
		if isCode(err, codeUniqueViolation) {
			return fmt.Errorf("alias %s: %w", a.Address, store.ErrExists)
		}
		return err
	})
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(ctx context.Context, address string) error {
	return expectOne(s.pool.Exec(ctx, `DELETE FROM aliases WHERE address = $1`, address))("alias " + address)
}

// Alias returns one alias.
func (s *Store) Alias(ctx context.Context, address string) (store.Alias, error) {
	a, err := scanAlias(s.pool.QueryRow(ctx, `SELECT address, targets, created FROM aliases WHERE address = $1`, address))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("alias %s: %w", address, store.ErrNotFound)
	}
	return a, err
}

func scanAlias(r pgx.Row) (store.Alias, error) {
	var a store.Alias
	var targets []byte
	var created int64
	if err := r.Scan(&a.Address, &targets, &created); err != nil {
		return a, err
	}
	a.Created = time.Unix(created, 0)
	return a, json.Unmarshal(targets, &a.Targets)
}

// Aliases lists aliases, of one domain or all.
func (s *Store) Aliases(ctx context.Context, domain string) ([]store.Alias, error) {
	rows, _ := s.pool.Query(ctx, `SELECT address, targets, created FROM aliases WHERE $1 = '' OR domain = $1 ORDER BY address`, domain)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Alias, error) { return scanAlias(r) })
}
