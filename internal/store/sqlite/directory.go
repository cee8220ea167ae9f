package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"mailroom/internal/store"
)

// AddDomain adds a local domain.
func (s *Store) AddDomain(ctx context.Context, d store.Domain) error {
	return s.writeDirectory(ctx, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO domains(name, catch_all, created) VALUES (?, ?, ?)`,
			d.Name, d.CatchAll, time.Now().Unix())
		if isUniqueViolation(err) {
			return fmt.Errorf("domain %s: %w", d.Name, store.ErrExists)
		}
		return err
	})
}

// DeleteDomain removes a domain that has no users and no aliases left.
func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	return s.writeDirectory(ctx, func(tx *wtx) error {
		var n int
		if err := tx.QueryRow(`SELECT (SELECT count(*) FROM users WHERE domain = ?) + (SELECT count(*) FROM aliases WHERE domain = ?)`,
			name, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("domain %s has %d users or aliases: %w", name, n, store.ErrInUse)
		}
		return expectOne(tx.Exec(`DELETE FROM domains WHERE name = ?`, name))("domain " + name)
	})
}

// expectOne turns "no row affected" into store.ErrNotFound.
func expectOne(res sql.Result, err error) func(what string) error {
	return func(what string) error {
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%s: %w", what, store.ErrNotFound)
		}
		return nil
	}
}

// writeDirectory is write for a change to domains, users or aliases: once
// committed, cached lookups here and in other processes start over.
func (s *Store) writeDirectory(ctx context.Context, fn func(tx *wtx) error) error {
	return s.writeStamped(ctx, s.dircache, fn)
}

// writeStamped is write for a change to what c keeps: once committed, c
// here and its counterparts in other processes start over.
func (s *Store) writeStamped(ctx context.Context, c *dirCache, fn func(tx *wtx) error) error {
	err := s.write(ctx, fn)
	if err == nil {
		c.changed()
	}
	return err
}

// Domain returns one domain.
func (s *Store) Domain(ctx context.Context, name string) (store.Domain, error) {
	return lookup(s.dircache, func() map[string]cached[store.Domain] { return s.dircache.domains }, name,
		func() (store.Domain, error) { return s.readDomain(ctx, name) },
		func() error { return fmt.Errorf("domain %s: %w", name, store.ErrNotFound) })
}

func (s *Store) readDomain(ctx context.Context, name string) (store.Domain, error) {
	var d store.Domain
	var created int64
	err := s.queryRow(ctx, `SELECT name, catch_all, created FROM domains WHERE name = ?`, name).
		Scan(&d.Name, &d.CatchAll, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("domain %s: %w", name, store.ErrNotFound)
	}
	d.Created = time.Unix(created, 0)
	return d, err
}

// Domains lists all domains by name.
func (s *Store) Domains(ctx context.Context) ([]store.Domain, error) {
	rows, err := s.query(ctx, `SELECT name, catch_all, created FROM domains ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Domain
	for rows.Next() {
		var d store.Domain
		var created int64
		if err := rows.Scan(&d.Name, &d.CatchAll, &created); err != nil {
			return nil, err
		}
		d.Created = time.Unix(created, 0)
		out = append(out, d)
	}
	return out, rows.Err()
}

// AddUser creates a user and its INBOX.
func (s *Store) AddUser(ctx context.Context, u store.User) (store.User, error) {
	u.Created = time.Now().Truncate(time.Second)
	u.UsedBytes = 0 // what the new row holds, whatever the caller passed
	err := s.writeDirectory(ctx, func(tx *wtx) error {
		if err := requireDomain(tx, store.DomainOf(u.Address)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM aliases WHERE address = ?`, u.Address).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s is an alias: %w", u.Address, store.ErrExists)
		}
		res, err := tx.Exec(`INSERT INTO users(address, domain, password_hash, quota_bytes, created, scram_sha256, cram_md5) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			u.Address, store.DomainOf(u.Address), u.PasswordHash, u.QuotaBytes, u.Created.Unix(), u.SCRAMSHA256, u.CRAMMD5)
		if isUniqueViolation(err) {
			return fmt.Errorf("user %s: %w", u.Address, store.ErrExists)
		}
		if err != nil {
			return err
		}
		u.ID, _ = res.LastInsertId()
		names := []string{store.Inbox}
		if _, err := insertMailbox(tx, u.ID, store.Inbox, ""); err != nil {
			return err
		}
		for _, mb := range store.DefaultMailboxes {
			if _, err := insertMailbox(tx, u.ID, mb.Name, mb.SpecialUse); err != nil {
				return err
			}
			names = append(names, mb.Name)
		}
		for _, name := range names {
			if _, err := tx.Exec(`INSERT INTO subscriptions(user_id, name) VALUES (?, ?)`, u.ID, name); err != nil {
				return err
			}
		}
		return nil
	})
	return s.withQuota(u), err
}

func requireDomain(tx *wtx, domain string) error {
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM domains WHERE name = ?`, domain).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("domain %s: %w", domain, store.ErrNotFound)
	}
	return nil
}

// userID finds a user's row id inside a write transaction.
func userID(tx *wtx, address string) (int64, error) {
	var id int64
	err := tx.QueryRow(`SELECT id FROM users WHERE address = ?`, address).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("user %s: %w", address, store.ErrNotFound)
	}
	return id, err
}

// DeleteUser removes a user with all its mailboxes and messages.
func (s *Store) DeleteUser(ctx context.Context, address string) error {
	var files []string
	err := s.writeDirectory(ctx, func(tx *wtx) error {
		id, err := userID(tx, address)
		if err != nil {
			return err
		}
		rows, err := tx.Query(`SELECT DISTINCT mm.message_id FROM mailbox_messages mm JOIN mailboxes mb ON mb.id = mm.mailbox_id WHERE mb.user_id = ?`, id)
		if err != nil {
			return err
		}
		var msgIDs []int64
		for rows.Next() {
			var m int64
			if err := rows.Scan(&m); err != nil {
				rows.Close()
				return err
			}
			msgIDs = append(msgIDs, m)
		}
		rows.Close()
		for _, q := range []string{
			`DELETE FROM mailbox_messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE user_id = ?)`,
			`DELETE FROM expunged WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE user_id = ?)`,
			`DELETE FROM subscriptions WHERE user_id = ?`,
			`DELETE FROM mailboxes WHERE user_id = ?`,
			`DELETE FROM app_passwords WHERE user_id = ?`,
			`DELETE FROM sender_grants WHERE user_id = ?`,
			`DELETE FROM users WHERE id = ?`,
		} {
			if _, err := tx.Exec(q, id); err != nil {
				return err
			}
		}
		files, err = deleteUnreferenced(tx, msgIDs)
		return err
	})
	if err == nil {
		s.removeBlobs(files)
	}
	return err
}

// User returns one user.
func (s *Store) User(ctx context.Context, address string) (store.User, error) {
	u, err := lookup(s.dircache, func() map[string]cached[store.User] { return s.dircache.users }, address,
		func() (store.User, error) { return s.readUser(ctx, address) },
		func() error { return fmt.Errorf("user %s: %w", address, store.ErrNotFound) })
	return s.withQuota(u), err
}

// withQuota fills in the quota in force for u.
func (s *Store) withQuota(u store.User) store.User { return u.WithQuota(s.defaultQuota.Load()) }

// SetDefaultQuota sets the quota of users without one of their own, in
// octets (0: none), for the configuration reloaded.
func (s *Store) SetDefaultQuota(octets int64) { s.defaultQuota.Store(octets) }

func (s *Store) readUser(ctx context.Context, address string) (store.User, error) {
	u, err := scanUser(s.queryRow(ctx, userColumns+` WHERE address = ?`, address))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", address, store.ErrNotFound)
	}
	return u, err
}

const userColumns = `SELECT id, address, password_hash, quota_bytes, used_bytes, created, scram_sha256, cram_md5, settings FROM users`

type scanner interface{ Scan(...any) error }

func scanUser(r scanner) (store.User, error) {
	var u store.User
	var created int64
	var settings string
	err := r.Scan(&u.ID, &u.Address, &u.PasswordHash, &u.QuotaBytes, &u.UsedBytes, &created, &u.SCRAMSHA256, &u.CRAMMD5, &settings)
	u.Created = time.Unix(created, 0)
	if err == nil {
		err = json.Unmarshal([]byte(settings), &u.Settings)
	}
	return u, err
}

// Users lists users, of one domain or all.
func (s *Store) Users(ctx context.Context, domain string) ([]store.User, error) {
	rows, err := s.query(ctx, userColumns+` WHERE ? = '' OR domain = ? ORDER BY address`, domain, domain)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s.withQuota(u))
	}
	return out, rows.Err()
}

// SetUserSettings replaces a user's settings.
func (s *Store) SetUserSettings(ctx context.Context, address string, us store.UserSettings) error {
	b, err := json.Marshal(us)
	if err != nil {
		return err
	}
	return s.writeDirectory(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`UPDATE users SET settings = ? WHERE address = ?`, string(b), address))("user " + address)
	})
}

// SetPassword replaces everything stored of a user's password.
func (s *Store) SetPassword(ctx context.Context, address string, sec store.Secrets) error {
	return s.writeDirectory(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`UPDATE users SET password_hash = ?, scram_sha256 = ?, cram_md5 = ? WHERE address = ?`,
			sec.Hash, sec.SCRAMSHA256, sec.CRAMMD5, address))("user " + address)
	})
}

// AddAlias adds an alias; its address must be in a local domain and must
// not be a user.
func (s *Store) AddAlias(ctx context.Context, a store.Alias) error {
	targets, err := json.Marshal(a.Targets)
	if err != nil {
		return err
	}
	return s.writeDirectory(ctx, func(tx *wtx) error {
		if err := requireDomain(tx, store.DomainOf(a.Address)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM users WHERE address = ?`, a.Address).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s is a user: %w", a.Address, store.ErrExists)
		}
		_, err := tx.Exec(`INSERT INTO aliases(address, domain, targets, created) VALUES (?, ?, ?, ?)`,
			a.Address, store.DomainOf(a.Address), string(targets), time.Now().Unix())
		if isUniqueViolation(err) {
			return fmt.Errorf("alias %s: %w", a.Address, store.ErrExists)
		}
		return err
	})
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(ctx context.Context, address string) error {
	return s.writeDirectory(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`DELETE FROM aliases WHERE address = ?`, address))("alias " + address)
	})
}

// Alias returns one alias.
func (s *Store) Alias(ctx context.Context, address string) (store.Alias, error) {
	return lookup(s.dircache, func() map[string]cached[store.Alias] { return s.dircache.aliases }, address,
		func() (store.Alias, error) { return s.readAlias(ctx, address) },
		func() error { return fmt.Errorf("alias %s: %w", address, store.ErrNotFound) })
}

func (s *Store) readAlias(ctx context.Context, address string) (store.Alias, error) {
	a, err := scanAlias(s.queryRow(ctx, `SELECT address, targets, created FROM aliases WHERE address = ?`, address))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("alias %s: %w", address, store.ErrNotFound)
	}
	return a, err
}

func scanAlias(r scanner) (store.Alias, error) {
	var a store.Alias
	var targets string
	var created int64
	if err := r.Scan(&a.Address, &targets, &created); err != nil {
		return a, err
	}
	a.Created = time.Unix(created, 0)
	return a, json.Unmarshal([]byte(targets), &a.Targets)
}

// Aliases lists aliases, of one domain or all.
func (s *Store) Aliases(ctx context.Context, domain string) ([]store.Alias, error) {
	rows, err := s.query(ctx, `SELECT address, targets, created FROM aliases WHERE ? = '' OR domain = ? ORDER BY address`, domain, domain)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Alias
	for rows.Next() {
		a, err := scanAlias(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
