package sqlite

import (
	"sync"

	"mailroom/internal/store"
)

// watchers are the channels of Watch, by user. A wake-up that finds its
// channel full is dropped: the one pending already makes the session read
// the changes, which include the later ones.
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
		select {
		case ch <- c:
		default:
		}
	}
}

// notifyAll wakes every watcher: mail changed in another process, and
// which user's is not known.
func (w *watchers) notifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for user, chans := range w.m {
		for ch := range chans {
			select {
			case ch <- store.MailChange{UserID: user}:
			default:
			}
		}
	}
}
