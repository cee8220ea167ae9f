package store

import (
	"context"
	"time"

	"mailroom/internal/message"
)

// TextField is the part of a message a text search looks in.
type TextField int

// The fields of a text search.
const (
	TextAll    TextField = iota // header and body (SEARCH TEXT), the per-copy prefix too
	TextHeader                  // the header fields (SEARCH FROM, SUBJECT...)
	TextBody                    // the body (SEARCH BODY)
)

// IndexedText is the searchable text of one stored message (message.Text),
// with its sort keys.
type IndexedText struct {
	MessageID int64
	Header    []byte
	Body      []byte
	SortKeys  message.SortKeys
}

// SortFields says which of message.SortKeys a SORT compares.
type SortFields uint16

// The sort keys, for SortRows: those of message.SortKeys, then the
// internal date and the size.
const (
	SortSent SortFields = 1 << iota
	SortSubject
	SortFrom
	SortTo
	SortCc
	SortDisplayFrom
	SortDisplayTo
	SortArrival
	SortSize
)

// SortRow is what SORT reads of one message of a mailbox: only the fields
// asked for, dates to the second (IMAP's precision).
type SortRow struct {
	UID     uint32
	Date    time.Time // internal date
	Size    int64
	Indexed bool             // Keys holds the fields asked for; otherwise the caller derives them
	Keys    message.SortKeys // only the fields asked for
}

// SearchIndex is the index of the text of the messages in mailboxes (the
// indexer reads a message's body with Queue.OpenQueued). It is
// filled after delivery (by internal/textindex), not as mail is accepted:
// a message not indexed yet is always a candidate, so a search is never
// wrong, only slower until the indexer has caught up.
type SearchIndex interface {
	// Unindexed returns up to limit messages stored in a mailbox whose text
	// is not indexed yet, oldest first.
	Unindexed(ctx context.Context, limit int) ([]int64, error)
	// IndexTexts indexes messages' text, in one transaction. A message
	// removed meanwhile is skipped.
	IndexTexts(ctx context.Context, texts []IndexedText) error
	// TextCandidates returns, in ascending order, the UIDs of the
	// mailbox's messages that may hold text in field (compared without
	// regard to case): a superset of those that do, to be checked, with
	// every message not indexed yet. text shorter than three characters
	// narrows nothing (all UIDs).
	TextCandidates(ctx context.Context, userID int64, mailbox string, field TextField, text string) ([]uint32, error)
	// SortRows returns what SORT reads of each message of uids in the
	// mailbox, with the keys in fields, in ascending UID order (UIDs not in
	// it are skipped).
	SortRows(ctx context.Context, userID int64, mailbox string, uids []uint32, fields SortFields) ([]SortRow, error)
}
