package sqlite

import (
	"sync"

	"mailroom/internal/store"
)

// watchers are the channels of Watch, by user. A wake-up that finds its
// channel full is merged with the one pending (only notify sends, under
// the lock, so the channel has room once the pending one is taken).
type watchers struct {
	mu sync.Mutex
	m  map[int64]map[chan store.MailChange]struct{}
}

// Watch returns a channel that receives a value after each committed
// change to the user's mailboxes made through this store.
func (s *Store) Watch(userID int64) (<-chan store.MailChange, func()) {
	return s.watchers.add(userID)
}

func (w *watchers) add(userID int64) (<-chan store.MailChange, func()) {
	ch := make(chan store.MailChange, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[int64]map[chan store.MailChange]struct{}{}
	}
	if w.m[userID] == nil {
		w.m[userID] = map[chan store.MailChange]struct{}{}
	}
	w.m[userID][ch] = struct{}{}
	w.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			w.mu.Lock()
			delete(w.m[userID], ch)
			if len(w.m[userID]) == 0 {
				delete(w.m, userID)
			}
			w.mu.Unlock()
		})
	}
}

// notify wakes the user's watchers.
func (w *watchers) notify(c store.MailChange) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[c.UserID] {
		send(ch, c)
	}
}

// notifyAll wakes every watcher: mail changed in another process, and
// which user's is not known.
func (w *watchers) notifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for user, chans := range w.m {
		for ch := range chans {
			send(ch, store.MailChange{UserID: user})
		}
	}
}

// send puts c on a watcher's channel, merged with the wake-up pending
// there. Called with the watchers' lock held.
func send(ch chan store.MailChange, c store.MailChange) {
	select {
	case ch <- c:
		return
	default:
	}
	select {
	case old := <-ch:
		c = old.Merge(c)
	default: // the session took it meanwhile
	}
	ch <- c
}
