// Package store defines Mailroom's storage interface: the directory of
// domains, users and aliases, the mailboxes that IMAP and POP3 read, and the
// durable acceptance of messages. Implementations live beneath it
// (store/sqlite is the embedded default) and must all pass the conformance
// suite in store/storetest.
//
// The store knows nothing of SMTP: it is handed envelopes, bodies and
// mailbox targets, and promises that Accept returns only once they are on
// stable storage.
package store

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Errors that callers match with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInUse    = errors.New("still in use")
	// ErrStorage marks a failure of the storage itself (disk full, I/O
	// error): the SMTP layer answers 451/452 and keeps running.
	ErrStorage = errors.New("storage failure")
)

// Store is everything an embedded or shared store provides.
type Store interface {
	Directory
	Credentials
	Mailboxes
	Mail
	SearchIndex
	Queue
	Suppressions
	DKIMKeys
	DMARCReports
	MTASTSPolicies
	SharedSecrets
	Tallies
	Events
	APIKeys
	Webhooks
	Sessions
	// Usage says how much the store holds, for metrics and status.
	Usage(ctx context.Context) (Usage, error)
	Close() error
}

// Usage is how much a store holds.
type Usage struct {
	Users int64 `json:"users"`
	// MailboxBytes is the size of the messages in users' mailboxes, as
	// their quotas count it.
	MailboxBytes int64 `json:"mailbox_bytes"`
	// DatabaseBytes is the space everything the store keeps takes: the
	// embedded store's files (database, write-ahead log, large bodies),
	// or the PostgreSQL database's size.
	DatabaseBytes int64 `json:"database_bytes"`
}

// Suppression is an address that failed for good: outbound mail to it is
// refused until Until, so that a dead address is not tried again and again.
type Suppression struct {
	Address string    `json:"address"` // lower case
	Reason  string    `json:"reason"`
	Created time.Time `json:"created"`
	Until   time.Time `json:"until"`
}

// Suppressions keeps the suppression list.
type Suppressions interface {
	Suppress(ctx context.Context, s Suppression) error // replaces an earlier entry
	Suppressed(ctx context.Context, address string, now time.Time) (Suppression, bool, error)
	SuppressionList(ctx context.Context) ([]Suppression, error)
	Unsuppress(ctx context.Context, address string) error
}

// AppPassword is a per-application secret of a user (its hash only).
type AppPassword struct {
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Credentials manages the secrets users log in with besides their main
// password hash (which is in User).
type Credentials interface {
	// AddAppPassword stores the hash of a new app password; a name may
	// be used once per user (ErrExists).
	AddAppPassword(ctx context.Context, address, name, hash string) error
	AppPasswords(ctx context.Context, address string) ([]AppPassword, error)
	DeleteAppPassword(ctx context.Context, address, name string) error
	// UserByAppPassword finds the user an app password hash belongs to
	// and records the use.
	UserByAppPassword(ctx context.Context, hash string) (User, string, error)

	// Sender grants: addresses ("a@example.com"), whole domains
	// ("@example.com") or anything ("*") a user may send as, besides
	// their own addresses.
	AddSenderGrant(ctx context.Context, address, pattern string) error
	SenderGrants(ctx context.Context, address string) ([]string, error)
	DeleteSenderGrant(ctx context.Context, address, pattern string) error
}

// Domain is a domain Mailroom receives mail for.
type Domain struct {
	Name string `json:"name"`
	// CatchAll, when set, is the local address that receives mail for
	// unknown local parts of the domain.
	CatchAll string    `json:"catch_all,omitempty"`
	Created  time.Time `json:"created"`
}

// User is a mailbox owner who can log in.
type User struct {
	ID           int64  `json:"id"`
	Address      string `json:"address"` // lower case local@domain
	PasswordHash string `json:"-"`
	// SCRAMSHA256 holds the SCRAM-SHA-256 verifiers (RFC 5802 3, RFC 7677):
	// "iterations:salt:stored-key:server-key" in base64, made when the
	// password is set. Empty: SCRAM is not available for this user.
	SCRAMSHA256 string `json:"-"`
	// CRAMMD5 holds the HMAC-MD5 states CRAM-MD5 needs (password
	// equivalent for that mechanism only); empty unless it was enabled
	// when the password was set.
	CRAMMD5    string       `json:"-"`
	Settings   UserSettings `json:"settings"`
	QuotaBytes int64        `json:"quota_bytes"` // 0: the server's default, negative: none
	// Quota is the quota in force, resolved by the store: QuotaBytes, or
	// the store's default for 0; 0 or less means none.
	Quota     int64     `json:"quota"`
	UsedBytes int64     `json:"used_bytes"`
	Created   time.Time `json:"created"`
}

// Alias maps an address to one or more target addresses.
type Alias struct {
	Address string    `json:"address"`
	Targets []string  `json:"targets"`
	Created time.Time `json:"created"`
}

// UserSettings are per-user policies set by an admin; zero values mean
// the server's defaults.
type UserSettings struct {
	// RequireSCRAM refuses the main password over PLAIN, LOGIN and
	// CRAM-MD5 (534 5.7.9 once the password is proven right): only SCRAM
	// and app passwords log in.
	RequireSCRAM bool `json:"require_scram,omitempty"`
	// Admin: the web dashboard shows this user every domain, the queue,
	// the suppression list, users and keys, and lets them act on them.
	Admin bool `json:"admin,omitempty"`
	// Sending limits for this user instead of the server's.
	MaxMessagesPerHour   int `json:"max_messages_per_hour,omitempty"`
	MaxMessagesPerDay    int `json:"max_messages_per_day,omitempty"`
	MaxRecipientsPerHour int `json:"max_recipients_per_hour,omitempty"`
	MaxRecipientsPerDay  int `json:"max_recipients_per_day,omitempty"`
}

// Secrets is everything stored of a main password.
type Secrets struct {
	Hash        string // argon2id
	SCRAMSHA256 string
	CRAMMD5     string
}

// Directory manages domains, users and aliases. Addresses and domains are
// passed in canonical lower case form; the caller normalises them.
type Directory interface {
	AddDomain(ctx context.Context, d Domain) error
	DeleteDomain(ctx context.Context, name string) error
	Domain(ctx context.Context, name string) (Domain, error)
	Domains(ctx context.Context) ([]Domain, error)

	// AddUser creates the user with an INBOX.
	AddUser(ctx context.Context, u User) (User, error)
	DeleteUser(ctx context.Context, address string) error
	User(ctx context.Context, address string) (User, error)
	Users(ctx context.Context, domain string) ([]User, error) // "" for all
	// SetUserSettings replaces a user's settings.
	SetUserSettings(ctx context.Context, address string, s UserSettings) error
	// SetPassword replaces everything stored of the user's main password.
	SetPassword(ctx context.Context, address string, s Secrets) error

	AddAlias(ctx context.Context, a Alias) error
	DeleteAlias(ctx context.Context, address string) error
	Alias(ctx context.Context, address string) (Alias, error)
	Aliases(ctx context.Context, domain string) ([]Alias, error) // "" for all
}

// Inbox is the name of every user's first mailbox (RFC 3501 5.1).
const Inbox = "INBOX"

// SMTPEnvelope is the SMTP envelope kept with an accepted message, for
// later bounces and for the record.
type SMTPEnvelope struct {
	MailFrom string `json:"mail_from"` // "" for the null sender
	Ret      string `json:"ret,omitempty"`
	EnvID    string `json:"envid,omitempty"`
	Body     string `json:"body,omitempty"`
	// SMTPUTF8: the message needs SMTPUTF8 (RFC 6531): it was given, and
	// the envelope or the header holds UTF-8.
	SMTPUTF8 bool `json:"smtputf8,omitempty"`
	// RequireTLS: REQUIRETLS was given (RFC 8689); TLSOptional: the
	// message says "TLS-Required: No" (RFC 8689 5), and the recipients'
	// TLS policies (MTA-STS) are not to hold it back.
	RequireTLS  bool            `json:"requiretls,omitempty"`
	TLSOptional bool            `json:"tls_optional,omitempty"`
	Recipients  []SMTPRecipient `json:"recipients"`
	Client      string          `json:"client,omitempty"` // IP of the sending client
	Extra       map[string]bool `json:"extra,omitempty"`
}

// SMTPRecipient is one RCPT TO with its DSN parameters (RFC 3461).
type SMTPRecipient struct {
	Address string   `json:"address"`
	Notify  []string `json:"notify,omitempty"`
	ORcpt   string   `json:"orcpt,omitempty"`
}

// LocalTarget is one copy of a message for a local user's mailbox.
type LocalTarget struct {
	UserID  int64
	Mailbox string // Inbox unless a rule says otherwise
	// Prefix is prepended to the body for this copy only: the
	// Return-Path and Delivered-To header fields of final delivery.
	Prefix []byte
}

// QuotaError is a copy that did not fit in its user's quota.
type QuotaError struct {
	UserID      int64
	Used, Quota int64 // before this message
	Size        int64 // of the copy
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("user %d: a copy of %d octets does not fit (%d of %d used)", e.UserID, e.Size, e.Used, e.Quota)
}

// Message is a message to commit durably: one body, its envelope, and
// where it goes.
type Message struct {
	QueueID      string
	SMTPEnvelope SMTPEnvelope
	// Received is every copy's internal date; the zero time means now.
	Received time.Time
	Body     io.Reader
	// Size is the body's length as announced, a hint: the store records
	// the octets it reads from Body (0 when unknown).
	Size  int64
	Local []LocalTarget
	// Remote are recipients in other domains, for the outbound queue.
	Remote []QueuedRecipient
	// From and Subject are the decoded header fields, for listings.
	From    string
	Subject string
	// Summary is the parsed structure of Body (ENVELOPE, BODYSTRUCTURE and
	// what SEARCH reads), computed once at delivery by the caller and opaque
	// to the store; nil when there is none.
	Summary []byte
	// Log, when set, enters the message in the message log, and Events
	// are recorded with it (accepted for each remote recipient, received
	// for the local ones), in the transaction that accepts it.
	Log    *LoggedMessage
	Events []Event
}

// MessageInfo describes one message in a mailbox.
type MessageInfo struct {
	UserID  int64     `json:"-"`
	Mailbox string    `json:"mailbox"`
	UID     uint32    `json:"uid"`
	QueueID string    `json:"queue_id"`
	Date    time.Time `json:"date"` // internal date (RFC 3501 2.3.3)
	Size    int64     `json:"size"` // octets including the per-copy prefix
	Flags   []string  `json:"flags,omitempty"`
	ModSeq  int64     `json:"modseq"`
	From    string    `json:"from"`
	Subject string    `json:"subject"`
	// Summary is Message.Summary (nil for messages stored before it
	// existed: see Mail.SaveSummary). PrefixSize is the length of the
	// per-copy prefix before the body, which the summary does not count.
	Summary    []byte `json:"-"`
	PrefixSize int    `json:"-"`
	// Prefix is the per-copy prefix itself (Mail.Summaries fills it).
	Prefix       []byte       `json:"-"`
	SMTPEnvelope SMTPEnvelope `json:"-"`
}

// MailboxStatus describes a mailbox for IMAP SELECT and STATUS.
type MailboxStatus struct {
	ID            int64
	Name          string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq int64
	Messages      int
	Unseen        int   // messages without \Seen
	Deleted       int   // messages with \Deleted (RFC 9051 STATUS DELETED)
	Size          int64 // octets of all messages (RFC 8438 STATUS=SIZE)
	// RecentUID is the first UID no session has claimed as recent yet
	// (Mail.ClaimRecent); Recent counts the messages from it.
	RecentUID uint32
	Recent    int
}

// Mailboxes stores and reads messages.
type Mailboxes interface {
	// Accept commits m durably: when it returns nil, the body, envelope
	// and every mailbox copy are on stable storage; when it returns an
	// error, nothing of m remains. Concurrent calls share fsyncs.
	Accept(ctx context.Context, m *Message) error
	// Messages lists a mailbox in ascending UID order.
	Messages(ctx context.Context, userID int64, mailbox string) ([]MessageInfo, error)
	// OpenMessage returns the raw message as delivered (prefix and body).
	OpenMessage(ctx context.Context, userID int64, mailbox string, uid uint32) (io.ReadCloser, MessageInfo, error)
	// MailboxStatus describes one mailbox.
	MailboxStatus(ctx context.Context, userID int64, mailbox string) (MailboxStatus, error)
	// Expunge removes messages from a mailbox for good, gives their space
	// back to the user's quota and drops bodies nothing else uses; it
	// returns the UIDs removed (those not in the mailbox are skipped).
	Expunge(ctx context.Context, userID int64, mailbox string, uids []uint32) ([]uint32, error)
}

// NewQueueID returns a new message ID: 16 characters of base32, sortable by
// time of creation to the millisecond, unique across nodes with
// overwhelming probability.
func NewQueueID() string {
	var b [10]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	crand.Read(b[6:])
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// QueuedRecipient is a recipient in another domain, with its DSN
// parameters (RFC 3461), to be delivered by the outbound queue.
type QueuedRecipient struct {
	Address string   `json:"address"`
	Domain  string   `json:"domain"` // lower case, the routing key
	Notify  []string `json:"notify,omitempty"`
	ORcpt   string   `json:"orcpt,omitempty"`
}

// Recipient states in the queue.
const (
	StatePending   = "pending"   // not tried yet
	StateDeferred  = "deferred"  // tried, failed for now, tried again at NextAttempt
	StateDelivered = "delivered" // a next hop took it (final)
	StateFailed    = "failed"    // refused for good or expired (final)
)

// QueueEntry is one recipient of a queued message.
type QueueEntry struct {
	ID           int64  `json:"id"`
	QueueID      string `json:"queue_id"`
	MessageID    int64  `json:"-"`
	Recipient    QueuedRecipient
	State        string       `json:"state"`
	Attempts     int          `json:"attempts"`
	NextAttempt  time.Time    `json:"next_attempt"`
	LastError    string       `json:"last_error,omitempty"`
	Held         bool         `json:"held,omitempty"`
	Created      time.Time    `json:"created"`
	MailFrom     string       `json:"mail_from"`
	Size         int64        `json:"size"`
	SMTPEnvelope SMTPEnvelope `json:"-"`                // as accepted (RET, ENVID, the client)
	Warned       bool         `json:"warned,omitempty"` // a delay warning was sent
	Active       bool         `json:"active,omitempty"` // claimed by a delivery under way
}

// QueueStats counts queue entries: by state, the held ones and the ones a
// delivery has claimed, and all of them (final entries stay until their
// message is removed).
type QueueStats struct {
	Pending, Deferred, Delivered, Failed int
	Held, Sending, Total                 int
	// Oldest is when the oldest entry still to be delivered (pending or
	// deferred) was queued; zero when there is none.
	Oldest time.Time
}

// QueueResult is the outcome of one delivery attempt for one entry.
type QueueResult struct {
	ID          int64
	State       string    // StateDelivered, StateDeferred or StateFailed
	NextAttempt time.Time // for StateDeferred
	Error       string    // the reply or failure, for the record and the DSN
	Warned      bool      // a delay warning was sent now
	// Event, when set, is recorded with the result, in its transaction.
	Event *Event
}

// Queue is the durable outbound queue. Entries are added by Accept
// (Message.Remote) in the same transaction as the message.
type Queue interface {
	// ClaimDue claims up to limit waiting entries that are not held and
	// whose NextAttempt is not after now, oldest due first: they become
	// Active, and NextAttempt moves to now+lease, so that no other claim
	// takes them until their results are recorded or they are released. It
	// uses an index: a large deferred queue costs nothing until it is due.
	ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]QueueEntry, error)
	// ReleaseClaims makes active entries (those listed, or all for nil)
	// wait again, due at at; their attempts do not count. A node releases
	// all its claims when it starts: deliveries that were under way when
	// it stopped are made again (at least once).
	ReleaseClaims(ctx context.Context, ids []int64, at time.Time) error
	// RenewClaims extends active claims (of this node) until until: a
	// delivery under way renews its claims, so that a lease can be short
	// (another node takes a dead node's entries soon) and a delivery long.
	RenewClaims(ctx context.Context, ids []int64, until time.Time) error
	// NextDue returns the earliest NextAttempt of a waiting entry.
	NextDue(ctx context.Context) (time.Time, bool, error)
	// RecordResults applies attempt outcomes and ends the claims; a message
	// whose entries are all final and that no mailbox holds is removed.
	RecordResults(ctx context.Context, results []QueueResult) error
	// QueueEntries lists entries (all, or those of one queue ID).
	QueueEntries(ctx context.Context, queueID string) ([]QueueEntry, error)
	// QueueStats counts the entries without reading them.
	QueueStats(ctx context.Context) (QueueStats, error)
	// OpenQueued returns a queued message's body.
	OpenQueued(ctx context.Context, messageID int64) (io.ReadCloser, error)
	// OpenByQueueID returns the body of the message accepted under a
	// queue ID (without a mailbox copy's prefix); ErrNotFound once it is
	// gone (delivered and removed, or expunged).
	OpenByQueueID(ctx context.Context, queueID string) (io.ReadCloser, error)
	// SetHeld holds or releases the waiting entries of a queue ID.
	SetHeld(ctx context.Context, queueID string, held bool) (int, error)
	// RetryNow makes waiting entries (of a queue ID, or all for "") due
	// now, except those active.
	RetryNow(ctx context.Context, queueID string) (int, error)
	// DeleteQueued removes a queue ID's waiting entries without delivery.
	DeleteQueued(ctx context.Context, queueID string) (int, error)
}

// MailError gives an error of a mail operation its context, marking any
// that is not the caller's (not found, exists, in use, over quota,
// canceled) as a storage failure (ErrStorage): what every backend's mail
// operations return.
func MailError(op, mailbox string, err error) error {
	if err == nil {
		return nil
	}
	var qe *QuotaError
	if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) && !errors.Is(err, ErrInUse) &&
		!errors.Is(err, ErrStorage) && !errors.As(err, &qe) && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return fmt.Errorf("store: %s %q: %w", op, mailbox, err)
}

// DomainOf is the domain of a stored address (local@domain).
func DomainOf(address string) string {
	_, d, _ := strings.Cut(address, "@")
	return d
}

// WithQuota fills in the quota in force for u: its own, or def (the
// store's default) for 0.
func (u User) WithQuota(def int64) User {
	u.Quota = u.QuotaBytes
	if u.Quota == 0 {
		u.Quota = def
	}
	return u
}
