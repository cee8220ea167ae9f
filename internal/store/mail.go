package store

import (
	"context"
	"io"
	"slices"
	"time"
)

// This file is the part of the contract that mail access (IMAP and POP3)
// needs: a hierarchy of mailboxes per user, messages with flags and
// MODSEQs (RFC 7162), expunge tombstones for QRESYNC, atomic APPEND, COPY
// and MOVE, and a change feed that wakes sessions.

// Separator is the hierarchy delimiter of mailbox names (RFC 9051 5.1.1):
// "Archive/2024" is the mailbox 2024 inside Archive. INBOX is spelled in
// capitals whatever case it is given in; every other name is kept as given
// and compared exactly.
const Separator = "/"

// System flags (RFC 9051 2.3.2). Keywords are any other atoms without a
// backslash; the store keeps flags as given, and sessions compare system
// flags case-insensitively before passing them in their canonical case.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// Special-use attributes (RFC 6154) of the mailboxes every user has.
const (
	UseDrafts  = `\Drafts`
	UseSent    = `\Sent`
	UseJunk    = `\Junk`
	UseTrash   = `\Trash`
	UseArchive = `\Archive`
	UseAll     = `\All`
	UseFlagged = `\Flagged`
)

// DefaultMailboxes are made for every new user, beside INBOX, and for
// users who lack them when they first log in to IMAP.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"Drafts", UseDrafts}, {"Sent", UseSent}, {"Junk", UseJunk}, {"Trash", UseTrash}, {"Archive", UseArchive},
}

// MailboxInfo describes one mailbox of a user's hierarchy.
type MailboxInfo struct {
	ID          int64  `json:"id"` // never used again for another mailbox
	Name        string `json:"name"`
	SpecialUse  string `json:"special_use,omitempty"`
	UIDValidity uint32 `json:"uidvalidity"`
	Subscribed  bool   `json:"subscribed"`
}

// MessageState is what a session keeps of each message in a mailbox.
type MessageState struct {
	UID    uint32
	Flags  []string // as stored, in the order set; may be shared with other messages': not to be changed
	ModSeq int64    // of the last change to this message (RFC 7162 3.1.1)
}

// MailboxState is a consistent snapshot of a mailbox: its status and
// every message's state, in ascending UID order.
type MailboxState struct {
	MailboxStatus
	States []MessageState
}

// Snapshot is what a mail server saved of a mailbox's state, to start from
// after a restart rather than read every message: opaque to the store,
// described by the MODSEQ it was taken at (the changes after it come from
// Changes).
type Snapshot struct {
	MailboxID   int64
	UIDValidity uint32 // the mailbox's (Snapshot fills it; SaveSnapshot ignores it)
	ModSeq      int64
	Data        []byte
}

// Changes are what happened in a mailbox after a MODSEQ: messages added or
// whose flags changed (their state now), and UIDs expunged (RFC 7162 3.2.5
// VANISHED), each in ascending UID order. Its MailboxStatus has the
// mailbox's ID, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and RecentUID, not the
// counts (Messages, Unseen, Size...): counting a mailbox costs a read of
// every message, and every session asks for Changes after every change
// (MailboxStatus counts).
type Changes struct {
	MailboxStatus
	Changed  []MessageState
	Vanished []uint32
}

// AppendMessage is one message given to Append.
type AppendMessage struct {
	Body         io.Reader
	Size         int64 // a hint; the octets read are what counts
	Flags        []string
	InternalDate time.Time // the zero time means now
	// Summary is the message's parsed structure, opaque to the store
	// (see MessageInfo.Summary); nil when the caller has none.
	Summary []byte
	// From and Subject are the decoded header fields, for listings.
	From, Subject string
}

// AppendResult says where appended or copied messages went (RFC 4315).
type AppendResult struct {
	UIDValidity uint32
	UIDs        []uint32 // in the order of the messages given
}

// CopyResult is a COPY or MOVE: the source UIDs that existed, and the UIDs
// their copies got, pairwise (RFC 4315 COPYUID).
type CopyResult struct {
	UIDValidity uint32 // of the destination
	From, To    []uint32
}

// FlagOp says how SetFlags combines the flags given with those a message
// has (RFC 9051 6.4.6: FLAGS, +FLAGS, -FLAGS).
type FlagOp int

// The flag operations.
const (
	FlagsReplace FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// FlagChange is one call of SetFlags.
type FlagChange struct {
	UIDs  []uint32
	Op    FlagOp
	Flags []string
	// UnchangedSince, when positive, changes only messages whose MODSEQ is
	// not above it; the others are reported as Modified (RFC 7162 3.1.3).
	UnchangedSince int64
}

// FlagResult is what SetFlags did: the messages whose flags changed (their
// state now) and those left alone because UnchangedSince failed.
type FlagResult struct {
	Changed  []MessageState
	Modified []uint32
}

// MailChange tells a session that something in a user's mailboxes changed:
// it then asks for the Changes of the mailbox it has selected.
type MailChange struct {
	UserID    int64
	MailboxID int64 // 0: any mailbox of the user may have changed
	// HighestModSeq is the mailbox's HIGHESTMODSEQ once the change was
	// committed, when only its messages changed (0: not known, or the
	// mailbox itself changed): a session that has seen the changes up to
	// it need not ask for them (its own STORE).
	HighestModSeq int64
}

// Merge returns the wake-up that stands for c and a later d: the same
// mailbox's latest HIGHESTMODSEQ, or, for different mailboxes, any.
func (c MailChange) Merge(d MailChange) MailChange {
	if c.MailboxID != d.MailboxID {
		return MailChange{UserID: d.UserID}
	}
	if c.HighestModSeq == 0 || d.HighestModSeq == 0 {
		d.HighestModSeq = 0
	} else {
		d.HighestModSeq = max(c.HighestModSeq, d.HighestModSeq)
	}
	return d
}

// Mail is the part of the store that mail access needs. Every method that
// changes messages commits durably before it returns, takes the next MODSEQ
// of the mailbox for each message it changes, and wakes the user's
// watchers (Watch) once it has committed.
type Mail interface {
	// Mailbox describes one mailbox (ErrNotFound).
	Mailbox(ctx context.Context, userID int64, name string) (MailboxInfo, error)
	// ListMailboxes lists a user's mailboxes by name.
	ListMailboxes(ctx context.Context, userID int64) ([]MailboxInfo, error)
	// CreateMailbox makes a mailbox with a UIDVALIDITY this user has never
	// had for any mailbox (ErrExists if the name is taken).
	CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (MailboxInfo, error)
	// DeleteMailbox removes a mailbox and its messages, giving their space
	// back to the quota (ErrNotFound; ErrInUse for INBOX). Its subscription
	// stays, as RFC 9051 6.3.9 wants.
	DeleteMailbox(ctx context.Context, userID int64, name string) error
	// RenameMailbox renames a mailbox and every mailbox below it (from/...),
	// keeping their UIDVALIDITY (ErrNotFound, ErrExists). Renaming INBOX
	// moves its messages to a new mailbox and leaves INBOX empty (RFC 9051
	// 6.3.6).
	RenameMailbox(ctx context.Context, userID int64, from, to string) error
	// SetSubscribed subscribes or unsubscribes a name, which need not be a
	// mailbox that exists.
	SetSubscribed(ctx context.Context, userID int64, name string, subscribed bool) error
	// Subscriptions lists the names a user subscribed to, sorted.
	Subscriptions(ctx context.Context, userID int64) ([]string, error)

	// MailboxState reads a mailbox's status and the state of all its
	// messages in one consistent snapshot.
	MailboxState(ctx context.Context, userID int64, mailbox string) (MailboxState, error)
	// Changes returns what changed in a mailbox after sinceModSeq (0: the
	// whole mailbox, with no Vanished).
	Changes(ctx context.Context, userID int64, mailbox string, sinceModSeq int64) (Changes, error)
	// Summaries calls fn, in ascending UID order, with what is known of each
	// message of uids in the mailbox without reading its body (UID, Date,
	// Size, Flags, ModSeq, Summary, Prefix; not From, Subject or QueueID):
	// UIDs not in the mailbox are skipped. An error from fn stops it and is
	// returned. It is what listing a mailbox reads for every message.
	Summaries(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(MessageInfo) error) error
	// SaveSummary records the parsed structure of a message stored without
	// one (before Summary existed) or with one an older parser made,
	// replacing it.
	SaveSummary(ctx context.Context, userID int64, mailbox string, uid uint32, summary []byte) error

	// Append stores messages in a mailbox atomically: all of them, durably,
	// or none (RFC 3502 MULTIAPPEND). It fails with a *QuotaError rather
	// than go over the user's quota.
	Append(ctx context.Context, userID int64, mailbox string, msgs []AppendMessage) (AppendResult, error)
	// SetFlags changes the flags of messages.
	SetFlags(ctx context.Context, userID int64, mailbox string, c FlagChange) (FlagResult, error)
	// Copy copies messages to another mailbox of the same user, with their
	// flags and internal dates, atomically and within the quota; with move,
	// it also expunges them from the source in the same transaction
	// (RFC 6851).
	Copy(ctx context.Context, userID int64, from string, uids []uint32, to string, move bool) (CopyResult, error)

	// ReadMessages calls fn, in ascending UID order, with each message of
	// uids in the mailbox as OpenMessage reads it (the per-copy prefix, then
	// the body); UIDs not in the mailbox are skipped. r is valid during the
	// call only. An error from fn stops it and is returned. It is how many
	// messages are read at once (SEARCH on their text): one read of the
	// store, not one per message.
	ReadMessages(ctx context.Context, userID int64, mailbox string, uids []uint32, fn func(uid uint32, r io.Reader) error) error
	// Snapshot returns the snapshot last saved of a mailbox (ErrNotFound:
	// none, or no such mailbox), with the mailbox's ID and UIDVALIDITY.
	Snapshot(ctx context.Context, userID int64, mailbox string) (Snapshot, error)
	// Snapshots calls fn with every snapshot saved (with its mailbox's
	// user, name, ID and UIDVALIDITY), the most recently saved first,
	// until fn returns false: what a server preloads after a start. Data
	// is fn's to keep.
	Snapshots(ctx context.Context, fn func(userID int64, mailbox string, sn Snapshot) bool) error
	// SaveSnapshot keeps a snapshot of a mailbox, unless one of a later
	// MODSEQ is there already (one of the same MODSEQ is replaced: the
	// caller may write it anew, say in a newer encoding; one beyond the
	// mailbox's HIGHESTMODSEQ cannot be right and is replaced too). It goes
	// with the mailbox, and is committed without its own fsync, like flag
	// changes: losing it costs only time.
	SaveSnapshot(ctx context.Context, userID int64, s Snapshot) error
	// ClaimRecent gives the caller the messages no session has claimed
	// yet, for IMAP4rev1's \Recent (RFC 3501 2.3.2): it returns the first
	// UID of them (all from it are the caller's), and no later call returns
	// them again.
	ClaimRecent(ctx context.Context, userID int64, mailbox string) (uint32, error)

	// Watch returns a channel that receives a value after each committed
	// change to the user's mailboxes, and the function that stops it.
	// Changes that arrive while one is pending are merged into it
	// (MailChange.Merge): a session that reads Changes after each wake-up
	// that may concern it misses nothing.
	Watch(userID int64) (<-chan MailChange, func())
}

// ApplyFlags returns the flags a message has after the operation; the
// order of old flags is kept, new ones follow in the order given.
func ApplyFlags(old []string, op FlagOp, flags []string) []string {
	var out []string
	switch op {
	case FlagsReplace:
		for _, f := range flags {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	case FlagsAdd:
		out = slices.Clone(old)
		for _, f := range flags {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	case FlagsRemove:
		for _, f := range old {
			if !slices.Contains(flags, f) {
				out = append(out, f)
			}
		}
	}
	return out
}
