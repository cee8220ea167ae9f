package store

import "sync"

// Watchers are the channels of Mail.Watch, by user, for a backend to
// wake. A wake-up that finds its channel full is merged with the one
// pending (only Notify sends, under the lock, so the channel has room once
// the pending one is taken). The zero value is ready.
type Watchers struct {
	mu sync.Mutex
	m  map[int64]map[chan MailChange]struct{}
}

// Add returns a new watcher's channel for a user and the function that
// stops it.
func (w *Watchers) Add(userID int64) (<-chan MailChange, func()) {
	ch := make(chan MailChange, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = map[int64]map[chan MailChange]struct{}{}
	}
	if w.m[userID] == nil {
		w.m[userID] = map[chan MailChange]struct{}{}
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

// Notify wakes the user's watchers.
func (w *Watchers) Notify(c MailChange) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[c.UserID] {
		send(ch, c)
	}
}

// NotifyAll wakes every watcher: mail changed elsewhere (another process,
// another node), and whose is not known.
func (w *Watchers) NotifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for user, chans := range w.m {
		for ch := range chans {
			send(ch, MailChange{UserID: user})
		}
	}
}

// send puts c on a watcher's channel, merged with the wake-up pending
// there. Called with the watchers' lock held.
func send(ch chan MailChange, c MailChange) {
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
