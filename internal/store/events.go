package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Event kinds: what happened to a message, for one recipient or for the
// whole message (Recipient "").
const (
	EventAccepted   = "accepted"   // taken for delivery to a remote recipient
	EventReceived   = "received"   // stored in a local mailbox
	EventDelivered  = "delivered"  // the next hop took it (Detail: its reply)
	EventDeferred   = "deferred"   // an attempt failed for now; tried again
	EventDelayed    = "delayed"    // deferred, and waiting long enough that the sender was warned (a delay DSN)
	EventBounced    = "bounced"    // failed for good (Class: hard or soft)
	EventExpired    = "expired"    // given up after the queue's lifetime
	EventSuppressed = "suppressed" // not sent: the address is on the suppression list
	EventComplained = "complained" // the recipient reported it as spam (ARF)
	EventOpened     = "opened"
	EventClicked    = "clicked"
)

// EventKinds are the kinds, in the order a timeline shows them.
var EventKinds = []string{EventAccepted, EventReceived, EventDelivered, EventDeferred, EventDelayed, EventBounced, EventExpired,
	EventSuppressed, EventComplained, EventOpened, EventClicked}

// Event is one thing that happened to a message.
type Event struct {
	ID        int64     `json:"id"` // ascending in the order events were written on one node
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	QueueID   string    `json:"queue_id,omitempty"`
	Recipient string    `json:"recipient,omitempty"`
	// Domain is whose statistics the event counts in: the sender's domain
	// for mail sent, the recipient's for mail received.
	Domain string `json:"domain"`
	Detail string `json:"detail,omitempty"` // the remote server's reply, or the reason
	Remote string `json:"remote,omitempty"` // the next hop that answered
	Class  string `json:"class,omitempty"`  // of a bounce: hard (the address) or soft (the message, the server)
	// Attempt is the delivery attempt's number (1 for the first).
	Attempt int `json:"attempt,omitempty"`
}

// Message directions in the message log.
const (
	Outbound = "outbound" // sent by a user or an application
	Inbound  = "inbound"  // received from outside for a local user
)

// LoggedMessage is a message's entry in the message log: what it was, for
// searching and for its events' timeline. It outlives the message itself
// (a relayed message is removed once delivered) until the log's
// retention.
type LoggedMessage struct {
	QueueID    string            `json:"queue_id"`
	Created    time.Time         `json:"created"`
	Direction  string            `json:"direction"`      // Outbound or Inbound
	User       string            `json:"user,omitempty"` // who sent it (logged in, or an API key's user)
	Domain     string            `json:"domain"`         // as Event.Domain
	Sender     string            `json:"sender"`         // the envelope sender, "" for the null sender
	From       string            `json:"from,omitempty"` // the From field, decoded
	Subject    string            `json:"subject"`        // decoded
	MessageID  string            `json:"message_id,omitempty"`
	Size       int64             `json:"size"`
	Recipients []string          `json:"recipients"`
	Stream     string            `json:"stream,omitempty"` // "transactional", "broadcast"...
	Tags       []string          `json:"tags,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// Status is the kind of its latest event.
	Status string `json:"status"`
}

// EventQuery selects events, newest first.
type EventQuery struct {
	QueueID   string
	Recipient string
	Kind      string
	// Domains limits the events to these domains (a user's own); nil: all.
	Domains      []string
	Since, Until time.Time // zero: unbounded
	Before       int64     // only events with smaller IDs (the next page); 0: from the newest
	Limit        int       // 0: 100
}

// MessageQuery selects logged messages, newest first.
type MessageQuery struct {
	QueueID   string
	Recipient string // one of its recipients, exactly
	Sender    string // the envelope sender, exactly
	Subject   string // a part of the subject, any case
	Tag       string
	Status    string
	Direction string
	// Domains limits the messages to these domains; nil: all.
	Domains      []string
	Since, Until time.Time
	// Before pages: only messages logged before it (their Created); zero:
	// from the newest.
	Before time.Time
	Limit  int // 0: 100
}

// EventCount is how many events of one kind one period counted.
type EventCount struct {
	Time  time.Time `json:"time"` // the period's start
	Kind  string    `json:"kind"`
	Count int64     `json:"count"`
}

// CountQuery selects counts: of one domain or tag (or all), from Since to
// Until, added up in periods of Step (a whole number of minutes).
type CountQuery struct {
	Domains      []string // nil: all
	Tag          string   // "": every message
	Since, Until time.Time
	Step         time.Duration
}

// Events keeps the message log and what happened to each message, and
// counts events per minute for statistics. The events of acceptance come
// with the message (Accept writes Message.Log and Message.Events in its
// transaction) and those of delivery with the results (RecordResults
// writes QueueResult.Event): an event is on record exactly when what it
// tells is.
type Events interface {
	// AddEvents records events of no acceptance or attempt (a complaint,
	// a recipient refused as suppressed, an open).
	AddEvents(ctx context.Context, events []Event) error
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	LoggedMessages(ctx context.Context, q MessageQuery) ([]LoggedMessage, error)
	// CountEvents adds up to limit events not yet counted into the counts
	// per minute, domain, tag and kind, and returns how many it added:
	// counting apart from writing keeps the hot rows of the counts out of
	// every delivery's transaction. Concurrent calls count each event once.
	CountEvents(ctx context.Context, limit int) (int, error)
	// EventCounts returns the counts of each period with any, by time
	// then kind.
	EventCounts(ctx context.Context, q CountQuery) ([]EventCount, error)
	// DeleteEvents removes up to limit events, logged messages and counts
	// from before before (retention), and returns how many rows went.
	DeleteEvents(ctx context.Context, before time.Time, limit int) (int, error)
}

// CountKey is a row of the counts per minute: tag "" counts every
// message of the domain, each tag its own.
type CountKey struct {
	Minute int64 // unix minutes
	Domain string
	Tag    string
	Kind   string
}

// AddCount counts one event of kind at t for domain, under "" and under
// each of its message's tags (for CountEvents' implementations).
func AddCount(into map[CountKey]int64, t time.Time, domain, kind string, tags []string) {
	m := t.Unix() / 60
	into[CountKey{m, domain, "", kind}]++
	for _, tag := range tags {
		if tag != "" {
			into[CountKey{m, domain, tag, kind}]++
		}
	}
}

// StepMinutes is a CountQuery's step in whole minutes, at least one.
func (q CountQuery) StepMinutes() int64 {
	return max(1, int64(q.Step/time.Minute))
}

// DecodeLogged fills a logged message's lists from their JSON columns.
func DecodeLogged(m *LoggedMessage, recipients, tags, metadata string) error {
	if err := json.Unmarshal([]byte(recipients), &m.Recipients); err != nil {
		return fmt.Errorf("recipients of %s: %w", m.QueueID, err)
	}
	if err := json.Unmarshal([]byte(tags), &m.Tags); err != nil {
		return fmt.Errorf("tags of %s: %w", m.QueueID, err)
	}
	if err := json.Unmarshal([]byte(metadata), &m.Metadata); err != nil {
		return fmt.Errorf("metadata of %s: %w", m.QueueID, err)
	}
	if len(m.Tags) == 0 {
		m.Tags = nil
	}
	if len(m.Metadata) == 0 {
		m.Metadata = nil
	}
	return nil
}
