package sqlite

// migrations are applied in order; PRAGMA user_version records how many ran.
// Never edit one that has shipped: add a new one.
var migrations = []string{
	`
CREATE TABLE domains (
	name      TEXT PRIMARY KEY,
	catch_all TEXT NOT NULL DEFAULT '',
	created   INTEGER NOT NULL
);
CREATE TABLE users (
	id            INTEGER PRIMARY KEY,
	address       TEXT NOT NULL UNIQUE,
	domain        TEXT NOT NULL REFERENCES domains(name),
	password_hash TEXT NOT NULL DEFAULT '',
	quota_bytes   INTEGER NOT NULL DEFAULT 0,
	used_bytes    INTEGER NOT NULL DEFAULT 0,
	created       INTEGER NOT NULL
);
CREATE INDEX users_domain ON users(domain);
CREATE TABLE aliases (
	address TEXT PRIMARY KEY,
	domain  TEXT NOT NULL REFERENCES domains(name),
	targets TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX aliases_domain ON aliases(domain);
CREATE TABLE mailboxes (
	id             INTEGER PRIMARY KEY,
	user_id        INTEGER NOT NULL REFERENCES users(id),
	name           TEXT NOT NULL,
	uidvalidity    INTEGER NOT NULL,
	uidnext        INTEGER NOT NULL DEFAULT 1,
	highest_modseq INTEGER NOT NULL DEFAULT 1,
	UNIQUE (user_id, name)
);
-- One row per accepted message body, shared by all its copies.
CREATE TABLE messages (
	id        INTEGER PRIMARY KEY,
	queue_id  TEXT NOT NULL,
	received  INTEGER NOT NULL,
	size      INTEGER NOT NULL,
	envelope  TEXT NOT NULL,
	from_hdr  TEXT NOT NULL DEFAULT '',
	subject   TEXT NOT NULL DEFAULT '',
	body      BLOB,          -- inline when small
	body_file TEXT           -- path under blobs/ when large
);
CREATE INDEX messages_queue_id ON messages(queue_id);
CREATE INDEX messages_body_file ON messages(body_file) WHERE body_file IS NOT NULL;
-- One row per copy of a message in a mailbox (RFC 3501 UIDs, RFC 7162 MODSEQ).
CREATE TABLE mailbox_messages (
	mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id),
	uid           INTEGER NOT NULL,
	message_id    INTEGER NOT NULL REFERENCES messages(id),
	prefix        BLOB NOT NULL,
	size          INTEGER NOT NULL,
	internal_date INTEGER NOT NULL,
	flags         TEXT NOT NULL DEFAULT '',
	modseq        INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX mailbox_messages_message ON mailbox_messages(message_id);
`,
	`
-- Application passwords: random secrets a user gives one mail client each,
-- stored as SHA-256 (they are long and random, so a slow hash adds nothing).
CREATE TABLE app_passwords (
	id        INTEGER PRIMARY KEY,
	user_id   INTEGER NOT NULL REFERENCES users(id),
	name      TEXT NOT NULL,
	hash      TEXT NOT NULL UNIQUE,
	created   INTEGER NOT NULL,
	last_used INTEGER NOT NULL DEFAULT 0,
	UNIQUE (user_id, name)
);
`,
	`
-- Addresses or whole domains ("@example.com", or "*" for any) an admin lets
-- a user send as, beyond their own addresses and aliases.
CREATE TABLE sender_grants (
	user_id INTEGER NOT NULL REFERENCES users(id),
	pattern TEXT NOT NULL,
	created INTEGER NOT NULL,
	PRIMARY KEY (user_id, pattern)
) WITHOUT ROWID;
`,
	`ALTER TABLE users ADD COLUMN scram_sha256 TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE users ADD COLUMN cram_md5 TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE users ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'`,
	`
-- The outbound queue: one row per remote recipient of a message.
CREATE TABLE queue (
	id           INTEGER PRIMARY KEY,
	message_id   INTEGER NOT NULL REFERENCES messages(id),
	address      TEXT NOT NULL,
	domain       TEXT NOT NULL,
	notify       TEXT NOT NULL DEFAULT '',
	orcpt        TEXT NOT NULL DEFAULT '',
	state        TEXT NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	last_error   TEXT NOT NULL DEFAULT '',
	held         INTEGER NOT NULL DEFAULT 0,
	created      INTEGER NOT NULL
);
-- Only waiting entries are indexed by due time: finding the next due one
-- never scans delivered or failed rows.
CREATE INDEX queue_due ON queue(next_attempt) WHERE state IN ('pending', 'deferred') AND held = 0;
CREATE INDEX queue_message ON queue(message_id);
`,
	`
CREATE TABLE suppressions (
	address TEXT PRIMARY KEY,
	reason  TEXT NOT NULL,
	created INTEGER NOT NULL,
	until   INTEGER NOT NULL
);
`,
	`ALTER TABLE queue ADD COLUMN warned INTEGER NOT NULL DEFAULT 0`,
	`
-- Claimed by a delivery under way (next_attempt is then the claim's end).
ALTER TABLE queue ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
CREATE INDEX queue_active ON queue(id) WHERE active = 1;
`,
	`
-- Row ids are never used again (SQLite's INTEGER PRIMARY KEY takes max+1,
-- so deleting the newest row gave its id to the next one): each table's
-- next id is counted here and given explicitly.
CREATE TABLE sequences (
	name TEXT PRIMARY KEY,
	next INTEGER NOT NULL
) WITHOUT ROWID;
-- Mail access (IMAP, POP3): special-use mailboxes, subscriptions, a
-- UIDVALIDITY counter per user that never goes back, parsed summaries, and
-- tombstones of expunged messages for QRESYNC (RFC 7162 3.2.5).
ALTER TABLE mailboxes ADD COLUMN special_use TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN uidvalidity_next INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN summary BLOB;
CREATE TABLE subscriptions (
	user_id INTEGER NOT NULL REFERENCES users(id),
	name    TEXT NOT NULL,
	PRIMARY KEY (user_id, name)
) WITHOUT ROWID;
CREATE TABLE expunged (
	mailbox_id INTEGER NOT NULL,
	uid        INTEGER NOT NULL,
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);
CREATE INDEX mailbox_messages_modseq ON mailbox_messages(mailbox_id, modseq);
-- Every user has the special-use mailboxes, subscribed, with INBOX.
UPDATE users SET uidvalidity_next = coalesce((SELECT max(uidvalidity) FROM mailboxes WHERE user_id = users.id), 0) + 1;
INSERT INTO mailboxes(user_id, name, uidvalidity, special_use)
	SELECT u.id, d.name, u.uidvalidity_next + d.n, d.use
	FROM users u, (SELECT 'Drafts' AS name, '\Drafts' AS use, 0 AS n UNION ALL SELECT 'Sent', '\Sent', 1
		UNION ALL SELECT 'Junk', '\Junk', 2 UNION ALL SELECT 'Trash', '\Trash', 3 UNION ALL SELECT 'Archive', '\Archive', 4) d
	WHERE NOT EXISTS (SELECT 1 FROM mailboxes WHERE user_id = u.id AND name = d.name);
UPDATE users SET uidvalidity_next = coalesce((SELECT max(uidvalidity) FROM mailboxes WHERE user_id = users.id), 0) + 1;
INSERT INTO subscriptions(user_id, name) SELECT user_id, name FROM mailboxes;
INSERT INTO sequences(name, next) VALUES
	('messages', (SELECT coalesce(max(id), 0) + 1 FROM messages)),
	('queue', (SELECT coalesce(max(id), 0) + 1 FROM queue)),
	('mailboxes', (SELECT coalesce(max(id), 0) + 1 FROM mailboxes));
`,
	`
-- IMAP4rev1's \Recent (RFC 3501 2.3.2): the first UID of a mailbox that no
-- session has claimed yet.
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
UPDATE mailboxes SET recent_uid = uidnext;
`,
	`
-- Summaries in their own table: a column after an inline body is read by
-- walking the body's overflow pages, which made listing a mailbox read
-- every message.
CREATE TABLE message_summaries (
	message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	summary    BLOB NOT NULL
);
INSERT INTO message_summaries(message_id, summary) SELECT id, summary FROM messages WHERE summary IS NOT NULL;
ALTER TABLE messages DROP COLUMN summary;
`,
	`
-- The search index (store.SearchIndex): trigrams of each message's text,
-- without positions or the text itself; a search reads candidates from it
-- and checks them. text_indexed is NULL for a message in no mailbox (only
-- queued), 0 until the indexer has read it, 1 after.
CREATE VIRTUAL TABLE search_text USING fts5(header, body,
	tokenize = 'trigram case_sensitive 0 remove_diacritics 1', detail = 'column', content = '', contentless_delete = 1);
ALTER TABLE messages ADD COLUMN text_indexed INTEGER;
UPDATE messages SET text_indexed = 0 WHERE id IN (SELECT message_id FROM mailbox_messages);
CREATE INDEX messages_unindexed ON messages(id) WHERE text_indexed = 0;
CREATE TRIGGER mailbox_messages_index AFTER INSERT ON mailbox_messages BEGIN
	UPDATE messages SET text_indexed = 0 WHERE id = NEW.message_id AND text_indexed IS NULL;
END;
CREATE TRIGGER messages_unindex AFTER DELETE ON messages WHEN OLD.text_indexed = 1 BEGIN
	DELETE FROM search_text WHERE rowid = OLD.id;
END;
`,
	`
-- How many messages hold each trigram: a search asks the index for its
-- rarest ones only (an AND walks every term's list of messages).
CREATE VIRTUAL TABLE search_vocab USING fts5vocab(search_text, row);
`,
	`
-- SORT's keys of each indexed message (message.SortKeys), written with its
-- index entry; what was indexed before them is indexed again.
CREATE TABLE sort_keys (
	message_id   INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	sent         INTEGER,
	subject      TEXT NOT NULL,
	from_addr    TEXT NOT NULL,
	to_addr      TEXT NOT NULL,
	cc_addr      TEXT NOT NULL,
	display_from TEXT NOT NULL,
	display_to   TEXT NOT NULL
);
INSERT INTO search_text(search_text) VALUES ('delete-all');
UPDATE messages SET text_indexed = 0 WHERE text_indexed = 1;
`,
	`
-- What the IMAP server saved of a large mailbox's state (Mail.SaveSnapshot),
-- to start from after a restart instead of reading every message.
CREATE TABLE mailbox_snapshots (
	mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
	modseq     INTEGER NOT NULL,
	data       BLOB NOT NULL
);
`,
	`
-- The order snapshots were saved in (1, 2, ...): a server preloads the most
-- recently saved first after a start (Mail.Snapshots).
ALTER TABLE mailbox_snapshots ADD COLUMN saved INTEGER NOT NULL DEFAULT 0;
CREATE INDEX mailbox_snapshots_saved ON mailbox_snapshots(saved);
`,
	`
-- The domains' DKIM keys (store.DKIMKey): times in unix seconds, retire_at
-- 0 while the key is published for good.
CREATE TABLE dkim_keys (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	domain      TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
	selector    TEXT NOT NULL,
	algorithm   TEXT NOT NULL,
	private_key BLOB NOT NULL,
	created     INTEGER NOT NULL,
	sign_from   INTEGER NOT NULL,
	retire_at   INTEGER NOT NULL DEFAULT 0,
	UNIQUE (domain, selector)
);
`,
	`
-- DMARC aggregate reports received (store.DMARCReport): the rows as JSON.
CREATE TABLE dmarc_reports (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	received  INTEGER NOT NULL,
	org       TEXT NOT NULL,
	email     TEXT NOT NULL,
	report_id TEXT NOT NULL,
	domain    TEXT NOT NULL,
	policy    TEXT NOT NULL,
	begin_at  INTEGER NOT NULL,
	end_at    INTEGER NOT NULL,
	rows      TEXT NOT NULL,
	UNIQUE (org, report_id)
);
CREATE INDEX dmarc_reports_domain ON dmarc_reports(domain, end_at);
`,
	`
-- Receiving domains' MTA-STS policies (store.MTASTSPolicy), times in unix
-- seconds.
CREATE TABLE mta_sts_policies (
	domain  TEXT PRIMARY KEY,
	id      TEXT NOT NULL,
	policy  TEXT NOT NULL,
	fetched INTEGER NOT NULL,
	expires INTEGER NOT NULL
);
`,
	`
-- Keys the server makes once and every node shares (store.SharedSecrets).
CREATE TABLE secrets (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
`,
	`
-- Counts toward the reports this server sends (store.Tally): TLS-RPT and
-- DMARC aggregate rows, per period (unix seconds) and domain.
CREATE TABLE report_tallies (
	kind   TEXT NOT NULL,
	period INTEGER NOT NULL,
	domain TEXT NOT NULL,
	key    TEXT NOT NULL,
	count  INTEGER NOT NULL,
	PRIMARY KEY (kind, period, domain, key)
) WITHOUT ROWID;
`,
	`
-- The message log and what happened to each message (store.Events), and
-- the events counted per minute, domain, tag ('' for all) and kind. A
-- message's status is its latest event's kind, read when asked.
CREATE TABLE message_log (
	queue_id   TEXT PRIMARY KEY,
	created    INTEGER NOT NULL,
	direction  TEXT NOT NULL,
	sent_by    TEXT NOT NULL DEFAULT '',
	domain     TEXT NOT NULL,
	sender     TEXT NOT NULL DEFAULT '',
	from_hdr   TEXT NOT NULL DEFAULT '',
	subject    TEXT NOT NULL DEFAULT '',
	message_id TEXT NOT NULL DEFAULT '',
	size       INTEGER NOT NULL DEFAULT 0,
	recipients TEXT NOT NULL DEFAULT '[]',
	stream     TEXT NOT NULL DEFAULT '',
	tags       TEXT NOT NULL DEFAULT '[]',
	metadata   TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE INDEX message_log_created ON message_log(created);
CREATE TABLE events (
	id        INTEGER PRIMARY KEY,
	time      INTEGER NOT NULL,
	kind      TEXT NOT NULL,
	queue_id  TEXT NOT NULL DEFAULT '',
	recipient TEXT NOT NULL DEFAULT '',
	domain    TEXT NOT NULL DEFAULT '',
	detail    TEXT NOT NULL DEFAULT '',
	remote    TEXT NOT NULL DEFAULT '',
	class     TEXT NOT NULL DEFAULT '',
	attempt   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_queue_id ON events(queue_id, id);
CREATE INDEX events_recipient ON events(recipient, id);
CREATE INDEX events_time ON events(time);
-- The last event counted into event_counts: ids grow in commit order here
-- (one writer), so the counter goes on after it.
INSERT INTO sequences(name, next) VALUES ('events_counted', 0);
CREATE TABLE event_counts (
	minute INTEGER NOT NULL,
	domain TEXT NOT NULL,
	tag    TEXT NOT NULL,
	kind   TEXT NOT NULL,
	count  INTEGER NOT NULL,
	PRIMARY KEY (minute, domain, tag, kind)
) WITHOUT ROWID;
`,
	`
-- Keys of the HTTP API (store.APIKeys): the SHA-256 of each token, and the
-- requests made with an Idempotency-Key (status 0 while under way).
CREATE TABLE api_keys (
	id        TEXT PRIMARY KEY,
	hash      TEXT NOT NULL UNIQUE,
	name      TEXT NOT NULL,
	owner     TEXT NOT NULL,
	scopes    TEXT NOT NULL,
	rate      INTEGER NOT NULL DEFAULT 0,
	created   INTEGER NOT NULL,
	last_used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE idempotency_keys (
	key_id   TEXT NOT NULL,
	key      TEXT NOT NULL,
	request  TEXT NOT NULL,
	status   INTEGER NOT NULL DEFAULT 0,
	response BLOB NOT NULL DEFAULT x'',
	created  INTEGER NOT NULL,
	PRIMARY KEY (key_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys(created);
`,
	`
-- Webhooks (store.Webhooks): endpoints, each event kind they take between
-- commas (",delivered,bounced,"), their secrets (JSON); the deliveries of
-- events to them, made as events are counted; each attempt.
CREATE TABLE webhooks (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	owner   TEXT NOT NULL,
	url     TEXT NOT NULL,
	events  TEXT NOT NULL,
	secrets TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE TABLE hook_deliveries (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	webhook_id   INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
	event_id     INTEGER NOT NULL,
	kind         TEXT NOT NULL,
	state        TEXT NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	created      INTEGER NOT NULL,
	last_status  INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX hook_deliveries_due ON hook_deliveries(next_attempt) WHERE state = 'pending';
CREATE INDEX hook_deliveries_webhook ON hook_deliveries(webhook_id, id);
CREATE INDEX hook_deliveries_created ON hook_deliveries(created);
CREATE TABLE hook_attempts (
	delivery_id INTEGER NOT NULL REFERENCES hook_deliveries(id) ON DELETE CASCADE,
	time        INTEGER NOT NULL,
	status      INTEGER NOT NULL,
	error       TEXT NOT NULL DEFAULT '',
	duration    INTEGER NOT NULL
);
CREATE INDEX hook_attempts_delivery ON hook_attempts(delivery_id);
`,
	`
-- Dashboard sessions (store.Sessions), by the SHA-256 of their token.
CREATE TABLE sessions (
	hash      TEXT PRIMARY KEY,
	username  TEXT NOT NULL,
	csrf      TEXT NOT NULL,
	created   INTEGER NOT NULL,
	last_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(username);
`,
}
