package sqlite

import "mailroom/internal/store"

// Watch returns a channel that receives a value after each committed
// change to the user's mailboxes made through this store (or, announced,
// by another process on it).
func (s *Store) Watch(userID int64) (<-chan store.MailChange, func()) {
	return s.watchers.Add(userID)
}
