// Package textindex fills the store's search index (store.SearchIndex) in
// the background: it reads each message stored in a mailbox and not indexed
// yet, extracts what IMAP's SEARCH compares (message.SearchText) and what
// SORT compares (message.SortKeys), and hands them to the store in batches. Delivery never waits for it; until it has
// caught up, a search checks the messages not indexed yet one by one.
package textindex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"mailroom/internal/message"
	"mailroom/internal/store"
)

// Store is what the indexer needs of the store.
type Store interface {
	store.SearchIndex
	OpenQueued(ctx context.Context, messageID int64) (io.ReadCloser, error)
}

const (
	// batch is how many messages one write indexes.
	batch = 64
	// TextLimit bounds each half of a message's indexed text (header,
	// body): SEARCH compares the same text, so what is past it is not
	// found either way.
	TextLimit = 1 << 20
	// backlog is how many messages indexed at once are worth telling the
	// operator about.
	backlog = 500
	// idlePoll is how often an idle indexer looks for new messages.
	idlePoll = time.Second
	// retryAfter is the pause after a failure (a message that cannot be
	// read, a store that cannot write).
	retryAfter = time.Minute
	// leaseTime is how long a node of a shared store keeps the indexing
	// to itself unless it renews it (each batch): the others take over
	// that long after it dies.
	leaseTime = time.Minute
)

// Indexer indexes messages as they are stored.
type Indexer struct {
	st      Store
	maxSize int64
	log     *slog.Logger
}

// New returns an indexer over st; maxSize bounds the octets read of one
// message (the largest message the server accepts). A store shared by
// several nodes (store.Leases) is indexed by one node at a time: each
// would otherwise read and index the same messages.
func New(st Store, maxSize int64, log *slog.Logger) *Indexer {
	return &Indexer{st: st, maxSize: maxSize, log: log}
}

// mine reports whether this node may index now: always, unless the store
// is shared and another node holds the indexing's lease.
func (ix *Indexer) mine(ctx context.Context) (bool, error) {
	l, ok := ix.st.(store.Leases)
	if !ok {
		return true, nil
	}
	return l.TakeLease(ctx, "search-index", time.Now(), leaseTime)
}

// Run indexes until ctx ends: whatever waits, then what arrives, looked
// for every second.
func (ix *Indexer) Run(ctx context.Context) {
	for ctx.Err() == nil {
		wait := idlePoll
		start := time.Now()
		n, err := ix.Drain(ctx)
		if err != nil && ctx.Err() == nil {
			ix.log.Warn("search index: indexing paused for a minute; searches check the messages not indexed one by one", "err", err)
			wait = retryAfter
		}
		switch {
		case n >= backlog:
			// After an import or an upgrade: say when searches are fast.
			ix.log.Info("search index: messages indexed, caught up", "messages", n, "duration", time.Since(start).Round(time.Millisecond).String())
		case n > 0:
			ix.log.Debug("search index: messages indexed", "messages", n)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// Drain indexes every message waiting and returns how many it indexed.
func (ix *Indexer) Drain(ctx context.Context) (int, error) {
	done := 0
	for {
		ids, err := ix.st.Unindexed(ctx, batch)
		if err != nil || len(ids) == 0 {
			return done, err
		}
		// Asked only when there is work: an idle node writes nothing.
		if mine, err := ix.mine(ctx); err != nil || !mine {
			return done, err
		}
		texts := make([]store.IndexedText, 0, len(ids))
		for _, id := range ids {
			t, err := ix.text(ctx, id)
			if err != nil {
				return done, err
			}
			texts = append(texts, t)
		}
		if err := ix.st.IndexTexts(ctx, texts); err != nil {
			return done, err
		}
		done += len(texts)
	}
}

// text reads and extracts one message's text; a message removed since
// Unindexed listed it is indexed empty (the store skips it).
func (ix *Indexer) text(ctx context.Context, id int64) (store.IndexedText, error) {
	it := store.IndexedText{MessageID: id}
	rc, err := ix.st.OpenQueued(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return it, nil
	}
	if err != nil {
		return it, fmt.Errorf("open message %d: %w", id, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(rc, ix.maxSize)); err != nil {
		return it, fmt.Errorf("read message %d: %w", id, err)
	}
	msg := buf.Bytes()
	root := message.Parse(msg)
	t := message.SearchText(msg, root, TextLimit)
	it.Header, it.Body, it.SortKeys = t.Header, t.Body, message.KeysOf(root.Envelope)
	return it, nil
}
