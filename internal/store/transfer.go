package store

import "context"

// A store moves to another backend (mailroom store copy) as the rows of
// the logical tables below, the same for every backend: what IMAP clients
// and the queue know (UIDVALIDITY, UIDs, MODSEQs, flags, ids, claims) is
// carried as it is, below the Store interface, which would give new ones.
// What a backend derives (its search index, SORT's keys) is rebuilt by the
// destination; what is only a node's (leases, shared counts) is not
// carried.

// Kind is what a column of a transferred table holds, and so the Go type
// of its values in a Row.
type Kind int

const (
	KindInt   Kind = iota // int64
	KindText              // string
	KindBytes             // []byte
	KindJSON              // string holding a JSON document (compared by its value)
	KindBool              // bool
)

// Column is a column of a transferred table.
type Column struct {
	Name string
	Kind Kind
}

// Table is a logical table: its first Key columns identify a row, and
// rows are read in the order of those columns.
type Table struct {
	Name    string
	Key     int
	Columns []Column
}

// Row is one row of a Table, a value per column of its Kind's type (never
// nil).
type Row []any

func cols(spec ...any) []Column {
	var c []Column
	for i := 0; i < len(spec); i += 2 {
		c = append(c, Column{spec[i].(string), spec[i+1].(Kind)})
	}
	return c
}

// Tables are the logical tables, each after those it refers to.
// "sequences" holds each identity's next value (users, mailboxes,
// messages, queue, dkim_keys, dmarc_reports, mailbox_snapshots' saved,
// events, webhooks, hook_deliveries).
var Tables = []Table{
	{"domains", 1, cols("name", KindText, "catch_all", KindText, "created", KindInt)},
	{"users", 1, cols("id", KindInt, "address", KindText, "domain", KindText, "password_hash", KindText,
		"scram_sha256", KindText, "cram_md5", KindText, "settings", KindJSON, "quota_bytes", KindInt,
		"used_bytes", KindInt, "uidvalidity_next", KindInt, "created", KindInt)},
	{"aliases", 1, cols("address", KindText, "domain", KindText, "targets", KindJSON, "created", KindInt)},
	{"mailboxes", 1, cols("id", KindInt, "user_id", KindInt, "name", KindText, "special_use", KindText,
		"uidvalidity", KindInt, "uidnext", KindInt, "highest_modseq", KindInt, "recent_uid", KindInt)},
	{"subscriptions", 2, cols("user_id", KindInt, "name", KindText)},
	{"app_passwords", 2, cols("user_id", KindInt, "name", KindText, "hash", KindText, "created", KindInt, "last_used", KindInt)},
	{"sender_grants", 2, cols("user_id", KindInt, "pattern", KindText, "created", KindInt)},
	{"api_keys", 1, cols("id", KindText, "hash", KindText, "name", KindText, "owner", KindText, "scopes", KindText,
		"rate", KindInt, "created", KindInt, "last_used", KindInt)},
	{"suppressions", 1, cols("address", KindText, "reason", KindText, "created", KindInt, "until", KindInt)},
	{"dkim_keys", 1, cols("id", KindInt, "domain", KindText, "selector", KindText, "algorithm", KindText,
		"private_key", KindBytes, "created", KindInt, "sign_from", KindInt, "retire_at", KindInt)},
	{"dmarc_reports", 1, cols("id", KindInt, "received", KindInt, "org", KindText, "email", KindText,
		"report_id", KindText, "domain", KindText, "policy", KindText, "begin_at", KindInt, "end_at", KindInt, "rows", KindJSON)},
	{"mta_sts_policies", 1, cols("domain", KindText, "id", KindText, "policy", KindText, "fetched", KindInt, "expires", KindInt)},
	{"secrets", 1, cols("name", KindText, "value", KindBytes)},
	{"messages", 1, cols("id", KindInt, "queue_id", KindText, "received", KindInt, "size", KindInt,
		"envelope", KindJSON, "from_hdr", KindText, "subject", KindText, "body", KindBytes)},
	{"message_summaries", 1, cols("message_id", KindInt, "summary", KindBytes)},
	{"mailbox_messages", 2, cols("mailbox_id", KindInt, "uid", KindInt, "message_id", KindInt, "prefix", KindBytes,
		"size", KindInt, "internal_date", KindInt, "flags", KindText, "modseq", KindInt)},
	{"expunged", 2, cols("mailbox_id", KindInt, "uid", KindInt, "modseq", KindInt)},
	{"mailbox_snapshots", 1, cols("mailbox_id", KindInt, "modseq", KindInt, "data", KindBytes, "saved", KindInt)},
	{"queue", 1, cols("id", KindInt, "message_id", KindInt, "address", KindText, "domain", KindText,
		"notify", KindText, "orcpt", KindText, "state", KindText, "attempts", KindInt, "next_attempt", KindInt,
		"last_error", KindText, "held", KindBool, "warned", KindBool, "active", KindBool, "created", KindInt)},
	{"message_log", 1, cols("queue_id", KindText, "created", KindInt, "direction", KindText, "sent_by", KindText, "domain", KindText,
		"sender", KindText, "from_hdr", KindText, "subject", KindText, "message_id", KindText, "size", KindInt, "recipients", KindJSON,
		"stream", KindText, "tags", KindJSON, "metadata", KindJSON)},
	{"events", 1, cols("id", KindInt, "time", KindInt, "kind", KindText, "queue_id", KindText, "recipient", KindText, "domain", KindText,
		"detail", KindText, "remote", KindText, "class", KindText, "attempt", KindInt, "counted", KindBool)},
	{"webhooks", 1, cols("id", KindInt, "owner", KindText, "url", KindText, "events", KindText, "secrets", KindJSON, "created", KindInt)},
	{"hook_deliveries", 1, cols("id", KindInt, "webhook_id", KindInt, "event_id", KindInt, "kind", KindText, "state", KindText,
		"attempts", KindInt, "next_attempt", KindInt, "created", KindInt, "last_status", KindInt, "last_error", KindText)},
	{"hook_attempts", 2, cols("delivery_id", KindInt, "time", KindInt, "status", KindInt, "error", KindText, "duration", KindInt)},
	{"event_counts", 4, cols("minute", KindInt, "domain", KindText, "tag", KindText, "kind", KindText, "count", KindInt)},
	{"report_tallies", 4, cols("kind", KindText, "period", KindInt, "domain", KindText, "key", KindText, "count", KindInt)},
	{"sequences", 1, cols("name", KindText, "next", KindInt)},
}

// Sequences are the identities "sequences" rows name.
var Sequences = []string{"users", "mailboxes", "messages", "queue", "dkim_keys", "dmarc_reports", "mailbox_snapshots", "events", "webhooks", "hook_deliveries"}

// TableNamed returns the Table of that name.
func TableNamed(name string) (Table, bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// Exporter reads a store's logical tables (the source of a copy, and
// either side of its verification).
type Exporter interface {
	// Export calls fn with each row of table whose key comes after
	// after's (all rows for nil), in key order, until the rows end or fn
	// fails. The rows come from one query (a body kept apart is read
	// beside it): a copy's source is a stopped installation.
	Export(ctx context.Context, table Table, after Row, fn func(Row) error) error
	// CountRows counts a table's rows.
	CountRows(ctx context.Context, table Table) (int64, error)
}

// Importer writes logical tables into a store (the destination of a
// copy). Each batch is written in one transaction with the key of its last
// row, so that an interrupted copy goes on after the last batch written.
type Importer interface {
	// ImportState says where an earlier copy stopped: the last key written
	// per table, and done per table finished; takes says whether the store
	// takes a copy: it holds no data, or a copy is under way.
	ImportState(ctx context.Context) (last map[string]Row, done map[string]bool, takes bool, err error)
	// Import writes rows of table, and records the last row's key.
	Import(ctx context.Context, table Table, rows []Row) error
	// ImportDone records table as finished.
	ImportDone(ctx context.Context, table Table) error
	// FinishImport forgets the copy's progress, once it is verified.
	FinishImport(ctx context.Context) error
}

// After is the condition for rows whose key comes after key's, and its
// arguments, for SQL whose n-th placeholder is ph(n) (n from 1): keyset
// paging, so that a copy goes on where it stopped.
func (t Table) After(key Row, ph func(int) string) (string, []any) {
	if key == nil {
		return "true", nil
	}
	names, marks := "", ""
	for i := 0; i < t.Key; i++ {
		if i > 0 {
			names, marks = names+", ", marks+", "
		}
		names += t.Columns[i].Name
		marks += ph(i + 1)
	}
	return "(" + names + ") > (" + marks + ")", []any(key[:t.Key])
}

// OrderBy is the table's key order, for ORDER BY.
func (t Table) OrderBy() string {
	s := ""
	for i := 0; i < t.Key; i++ {
		if i > 0 {
			s += ", "
		}
		s += t.Columns[i].Name
	}
	return s
}

// Names are the table's column names, for a SELECT or INSERT list.
func (t Table) Names() []string {
	n := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		n[i] = c.Name
	}
	return n
}
