package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migration is one step of the schema. minReader is the oldest schema
// version whose Mailroom still works once this step is applied: an
// expand step (new tables, new nullable columns) keeps the previous
// step's, a contract step (dropping what older nodes read) raises it to
// its own version. Never edit a step that has shipped: add one.
type migration struct {
	minReader int
	sql       string
}

// migrations are applied in order; schema_migrations records each.
// (Step 1 may still change until this store ships: issue 18.)
var migrations = []migration{
	{1, `
CREATE TABLE domains (
	name      text PRIMARY KEY,
	catch_all text NOT NULL DEFAULT '',
	created   bigint NOT NULL
);
CREATE TABLE users (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	address          text NOT NULL UNIQUE,
	domain           text NOT NULL REFERENCES domains(name),
	password_hash    text NOT NULL DEFAULT '',
	scram_sha256     text NOT NULL DEFAULT '',
	cram_md5         text NOT NULL DEFAULT '',
	settings         jsonb NOT NULL DEFAULT '{}',
	quota_bytes      bigint NOT NULL DEFAULT 0,
	used_bytes       bigint NOT NULL DEFAULT 0,
	uidvalidity_next bigint NOT NULL DEFAULT 0,
	created          bigint NOT NULL
);
CREATE INDEX users_domain ON users(domain);
CREATE TABLE aliases (
	address text PRIMARY KEY,
	domain  text NOT NULL REFERENCES domains(name),
	targets jsonb NOT NULL,
	created bigint NOT NULL
);
CREATE INDEX aliases_domain ON aliases(domain);
CREATE TABLE mailboxes (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id        bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name           text NOT NULL,
	special_use    text NOT NULL DEFAULT '',
	uidvalidity    bigint NOT NULL,
	uidnext        bigint NOT NULL DEFAULT 1,
	highest_modseq bigint NOT NULL DEFAULT 1,
	recent_uid     bigint NOT NULL DEFAULT 1,
	UNIQUE (user_id, name)
);
CREATE TABLE subscriptions (
	user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name    text NOT NULL,
	PRIMARY KEY (user_id, name)
);
-- Application passwords, as SHA-256 (long random secrets need no slow hash).
CREATE TABLE app_passwords (
	user_id   bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name      text NOT NULL,
	hash      text NOT NULL UNIQUE,
	created   bigint NOT NULL,
	last_used bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, name)
);
-- What a user may send as besides their own addresses.
CREATE TABLE sender_grants (
	user_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	pattern text NOT NULL,
	created bigint NOT NULL,
	PRIMARY KEY (user_id, pattern)
);
CREATE TABLE suppressions (
	address text PRIMARY KEY,
	reason  text NOT NULL,
	created bigint NOT NULL,
	until   bigint NOT NULL
);
CREATE TABLE dkim_keys (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	domain      text NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
	selector    text NOT NULL,
	algorithm   text NOT NULL,
	private_key bytea NOT NULL,
	created     bigint NOT NULL,
	sign_from   bigint NOT NULL,
	retire_at   bigint NOT NULL DEFAULT 0,
	UNIQUE (domain, selector)
);
CREATE TABLE dmarc_reports (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	received  bigint NOT NULL,
	org       text NOT NULL,
	email     text NOT NULL,
	report_id text NOT NULL,
	domain    text NOT NULL,
	policy    text NOT NULL,
	begin_at  bigint NOT NULL,
	end_at    bigint NOT NULL,
	rows      jsonb NOT NULL,
	UNIQUE (org, report_id)
);
CREATE INDEX dmarc_reports_domain ON dmarc_reports(domain, end_at);
CREATE TABLE mta_sts_policies (
	domain  text PRIMARY KEY,
	id      text NOT NULL,
	policy  text NOT NULL,
	fetched bigint NOT NULL,
	expires bigint NOT NULL
);
CREATE TABLE secrets (
	name  text PRIMARY KEY,
	value bytea NOT NULL
);
-- One row per accepted message, shared by all its copies. A body of up to
-- chunkSize octets is kept in the row; a larger one in message_chunks.
-- Times of mail (received, internal dates, queue times) are unix
-- nanoseconds, as the embedded store keeps them.
CREATE TABLE messages (
	id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	queue_id text NOT NULL,
	received bigint NOT NULL,
	size     bigint NOT NULL,
	envelope jsonb NOT NULL,
	from_hdr text NOT NULL DEFAULT '',
	subject  text NOT NULL DEFAULT '',
	body     bytea,
	chunked  boolean NOT NULL DEFAULT false,
	-- the search index has its text (search_text); messages only queued
	-- are never indexed: Unindexed asks for those in a mailbox
	text_indexed boolean NOT NULL DEFAULT false
);
CREATE INDEX messages_queue_id ON messages(queue_id);
CREATE INDEX messages_unindexed ON messages(id) WHERE NOT text_indexed;
CREATE TABLE message_chunks (
	message_id bigint NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
	seq        integer NOT NULL,
	data       bytea NOT NULL,
	PRIMARY KEY (message_id, seq)
);
CREATE TABLE message_summaries (
	message_id bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	summary    bytea NOT NULL
);
-- One row per copy of a message in a mailbox (RFC 3501 UIDs, RFC 7162 MODSEQ).
CREATE TABLE mailbox_messages (
	mailbox_id    bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid           bigint NOT NULL,
	message_id    bigint NOT NULL REFERENCES messages(id),
	prefix        bytea NOT NULL,
	size          bigint NOT NULL,
	internal_date bigint NOT NULL,
	flags         text NOT NULL DEFAULT '',
	modseq        bigint NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX mailbox_messages_message ON mailbox_messages(message_id);
CREATE INDEX mailbox_messages_modseq ON mailbox_messages(mailbox_id, modseq);
-- Tombstones of expunged messages, for QRESYNC (RFC 7162 3.2.5).
CREATE TABLE expunged (
	mailbox_id bigint NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid        bigint NOT NULL,
	modseq     bigint NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);
-- What the IMAP server saved of a large mailbox's state, and the order
-- snapshots were saved in (Mail.Snapshots: the most recent first).
CREATE SEQUENCE mailbox_snapshots_saved;
CREATE TABLE mailbox_snapshots (
	mailbox_id bigint PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
	modseq     bigint NOT NULL,
	data       bytea NOT NULL,
	saved      bigint NOT NULL
);
CREATE INDEX mailbox_snapshots_saved_idx ON mailbox_snapshots(saved);
-- The search index (store.SearchIndex): each message's text folded (lower
-- case, without diacritics) and pg_trgm's trigram indexes on it; a search
-- reads candidates from it, which the caller checks.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE search_text (
	message_id bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	header     text NOT NULL,
	body       text NOT NULL
);
CREATE INDEX search_text_header ON search_text USING gin (header gin_trgm_ops);
CREATE INDEX search_text_body ON search_text USING gin (body gin_trgm_ops);
-- SORT's keys of each indexed message (message.SortKeys).
CREATE TABLE sort_keys (
	message_id   bigint PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	sent         bigint,
	subject      text NOT NULL,
	from_addr    text NOT NULL,
	to_addr      text NOT NULL,
	cc_addr      text NOT NULL,
	display_from text NOT NULL,
	display_to   text NOT NULL
);
-- The outbound queue: one row per remote recipient of a message.
CREATE TABLE queue (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	message_id   bigint NOT NULL REFERENCES messages(id),
	address      text NOT NULL,
	domain       text NOT NULL,
	notify       text NOT NULL DEFAULT '',
	orcpt        text NOT NULL DEFAULT '',
	state        text NOT NULL,
	attempts     integer NOT NULL DEFAULT 0,
	next_attempt bigint NOT NULL,
	last_error   text NOT NULL DEFAULT '',
	held         boolean NOT NULL DEFAULT false,
	warned       boolean NOT NULL DEFAULT false,
	active       boolean NOT NULL DEFAULT false,
	owner        text NOT NULL DEFAULT '', -- the node whose claim (lease) it is, while active
	created      bigint NOT NULL
);
CREATE INDEX queue_due ON queue(next_attempt) WHERE state IN ('pending', 'deferred') AND NOT held;
CREATE INDEX queue_message ON queue(message_id);
-- Events counted across nodes (sending limits): per key and five-minute
-- bucket (unix seconds), kept a day.
CREATE TABLE shared_counts (
	key    text NOT NULL,
	bucket bigint NOT NULL,
	count  bigint NOT NULL,
	PRIMARY KEY (key, bucket)
);
-- Work that one node at a time does (sending the reports): which node holds
-- it, until when (unix seconds).
CREATE TABLE leases (
	name  text PRIMARY KEY,
	owner text NOT NULL,
	until bigint NOT NULL
);
CREATE TABLE report_tallies (
	kind   text NOT NULL,
	period bigint NOT NULL,
	domain text NOT NULL,
	key    text NOT NULL,
	count  bigint NOT NULL,
	PRIMARY KEY (kind, period, domain, key)
);
`},
	// Failed logins counted across nodes (store.LoginFailures): per key and
	// bucket (unix seconds, a sixth of the window wide), swept by age.
	{1, `
CREATE TABLE login_failures (
	key    text NOT NULL,
	bucket bigint NOT NULL,
	count  integer NOT NULL,
	PRIMARY KEY (key, bucket)
);
CREATE INDEX login_failures_bucket ON login_failures(bucket);
`},
	// The message log and what happened to each message (store.Events),
	// and the events counted per minute, domain, tag ('' for all) and kind.
	// A message's status is its latest event's kind, read when asked.
	{1, `
CREATE TABLE message_log (
	queue_id   text PRIMARY KEY,
	created    bigint NOT NULL,
	direction  text NOT NULL,
	sent_by    text NOT NULL DEFAULT '',
	domain     text NOT NULL,
	sender     text NOT NULL DEFAULT '',
	from_hdr   text NOT NULL DEFAULT '',
	subject    text NOT NULL DEFAULT '',
	message_id text NOT NULL DEFAULT '',
	size       bigint NOT NULL DEFAULT 0,
	recipients jsonb NOT NULL DEFAULT '[]',
	stream     text NOT NULL DEFAULT '',
	tags       jsonb NOT NULL DEFAULT '[]',
	metadata   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX message_log_created ON message_log(created);
CREATE TABLE events (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time      bigint NOT NULL,
	kind      text NOT NULL,
	queue_id  text NOT NULL DEFAULT '',
	recipient text NOT NULL DEFAULT '',
	domain    text NOT NULL DEFAULT '',
	detail    text NOT NULL DEFAULT '',
	remote    text NOT NULL DEFAULT '',
	class     text NOT NULL DEFAULT '',
	attempt   integer NOT NULL DEFAULT 0,
	counted   boolean NOT NULL DEFAULT false
);
CREATE INDEX events_queue_id ON events(queue_id, id);
CREATE INDEX events_recipient ON events(recipient, id);
CREATE INDEX events_time ON events(time);
CREATE INDEX events_uncounted ON events(id) WHERE NOT counted;
CREATE TABLE event_counts (
	minute bigint NOT NULL,
	domain text NOT NULL,
	tag    text NOT NULL,
	kind   text NOT NULL,
	count  bigint NOT NULL,
	PRIMARY KEY (minute, domain, tag, kind)
);
`},
	// Keys of the HTTP API (store.APIKeys): the SHA-256 of each token, and
	// the requests made with an Idempotency-Key (status 0 while under way).
	{1, `
CREATE TABLE api_keys (
	id        text PRIMARY KEY,
	hash      text NOT NULL UNIQUE,
	name      text NOT NULL,
	owner     text NOT NULL,
	scopes    text NOT NULL,
	rate      integer NOT NULL DEFAULT 0,
	created   bigint NOT NULL,
	last_used bigint NOT NULL DEFAULT 0
);
CREATE TABLE idempotency_keys (
	key_id   text NOT NULL,
	key      text NOT NULL,
	request  text NOT NULL,
	status   integer NOT NULL DEFAULT 0,
	response bytea NOT NULL DEFAULT '',
	created  bigint NOT NULL,
	PRIMARY KEY (key_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created);
`},
	// Webhooks (store.Webhooks): endpoints, each event kind they take
	// between commas (",delivered,bounced,"), their secrets; the deliveries
	// of events to them, made as events are counted; each attempt.
	{1, `
CREATE TABLE webhooks (
	id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	owner   text NOT NULL,
	url     text NOT NULL,
	events  text NOT NULL,
	secrets jsonb NOT NULL,
	created bigint NOT NULL
);
CREATE TABLE hook_deliveries (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	webhook_id   bigint NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
	event_id     bigint NOT NULL,
	kind         text NOT NULL,
	state        text NOT NULL,
	attempts     integer NOT NULL DEFAULT 0,
	next_attempt bigint NOT NULL,
	created      bigint NOT NULL,
	last_status  integer NOT NULL DEFAULT 0,
	last_error   text NOT NULL DEFAULT ''
);
CREATE INDEX hook_deliveries_due ON hook_deliveries(next_attempt) WHERE state = 'pending';
CREATE INDEX hook_deliveries_webhook ON hook_deliveries(webhook_id, id);
CREATE INDEX hook_deliveries_created ON hook_deliveries(created);
CREATE TABLE hook_attempts (
	delivery_id bigint NOT NULL REFERENCES hook_deliveries(id) ON DELETE CASCADE,
	time        bigint NOT NULL,
	status      integer NOT NULL,
	error       text NOT NULL DEFAULT '',
	duration    bigint NOT NULL
);
CREATE INDEX hook_attempts_delivery ON hook_attempts(delivery_id);
`},
	// Dashboard sessions (store.Sessions), by the SHA-256 of their token.
	{1, `
CREATE TABLE sessions (
	hash      text PRIMARY KEY,
	username  text NOT NULL,
	csrf      text NOT NULL,
	created   bigint NOT NULL,
	last_seen bigint NOT NULL
);
CREATE INDEX sessions_user ON sessions(username);
`},
}

// migrateLock is the advisory lock nodes take to migrate one at a time.
const migrateLock = 0x6d61696c726f6f6d // "mailroom"

// migrate brings the schema to this Mailroom's version, or checks that a
// newer one is one it still works with.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: connect to PostgreSQL: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("store: lock the schema: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrateLock))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		min_reader integer NOT NULL,
		applied    timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("store: the schema's version table: %w", err)
	}
	var have, needs int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0), coalesce(max(min_reader), 0) FROM schema_migrations`).Scan(&have, &needs); err != nil {
		return fmt.Errorf("store: read the schema's version: %w", err)
	}
	return applyMigrations(ctx, conn.Conn(), have, needs, migrations)
}

// applyMigrations applies the steps after have, or, for a database ahead
// of steps, checks that this Mailroom is one it still works with.
func applyMigrations(ctx context.Context, conn *pgx.Conn, have, needs int, steps []migration) error {
	known := len(steps)
	if have > known {
		if needs > known {
			return fmt.Errorf("store: the database's schema is at version %d and needs a Mailroom that knows version %d or later; this one knows up to %d: upgrade this node", have, needs, known)
		}
		return nil // newer, but only expanded: this node works with it
	}
	for v := have + 1; v <= known; v++ {
		m := steps[v-1]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations(version, min_reader) VALUES ($1, $2)`, v, m.minReader)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: schema migration %d: %w", v, err)
		}
	}
	return nil
}
