package sqlite

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"mailroom/internal/store"
)

// dirCache keeps the domains, users and aliases that lookups have found (or
// not found) in memory, so that the RCPT path reads nothing from the
// database: in WAL mode every read after a commit starts with a cold page
// cache, and under load those reads were a sixth of the server's CPU
// (docs/performance.md). A second dirCache, with a stamp of its own,
// keeps suppressions (asked for every relayed recipient), so that a bounce
// that adds one does not empty the directory's entries.
//
// Every change to what a cache keeps, by this process or another one (the
// CLI while the server runs), grows its stamp file after its commit. Where
// inotify works, a watch on the stamp's directory counts changes and a
// lookup compares that count with the one its entries were read under (no
// system call); elsewhere it compares the stamp's identity (one stat). It
// starts over when they differ. A lookup that missed records what it read
// only if nothing changed meanwhile, so an entry read before a change
// cannot outlive it.
//
// Used bytes change with every accepted message: the committer updates the
// cached users after each commit (setUsed), and a user read while a commit
// happened takes the newer figure (lastUsed). Only the server accepts mail;
// the accept transaction checks the quota against the database anyway.
type dirCache struct {
	stampPath string
	onReset   func()        // also forget this (the body cache) when starting over
	watching  atomic.Bool   // the watch (watchCaches) works: changes counts every change
	changes   atomic.Uint64 // changes seen by the watch
	local     atomic.Uint64 // changes made by this process, counted before the stamp is written
	// onChange, when set, is called from the watch at each change of the
	// stamp by any process (the queue stamp wakes the runner with it).
	onChange atomic.Pointer[func()]

	mu      sync.Mutex
	stamp   stampID
	domains map[string]cached[store.Domain]
	users   map[string]cached[store.User]
	aliases map[string]cached[store.Alias]
	// suppressions is not the directory, but as often asked (every relayed
	// recipient) and as rarely changed.
	suppressions map[string]cached[store.Suppression] // in the suppressions' cache only
	byID         map[int64]string                     // user ID -> address, for setUsed
	// lastUsed is the used bytes of the latest commit per user, so that a
	// lookup that read a user before that commit stores the newer figure.
	lastUsed map[int64]int64
}

// cached is a lookup's outcome: a value, or not found.
type cached[T any] struct {
	v     T
	found bool
}

// maxCached bounds the entries kept (found and not found: a dictionary
// attack asks for many addresses that do not exist); past it the cache
// starts over.
const maxCached = 100_000

// stampID identifies one version of the stamp file: each change appends
// an octet, so the size changes even within one mtime tick.
type stampID struct {
	ino   uint64
	size  int64
	mtime int64
	local uint64 // dirCache.local: this process's own changes count at once
	ok    bool   // the stamp could be read
}

// noStamp never equals a stamp that was read: entries are neither found nor
// recorded under it.
var noStamp = stampID{ino: ^uint64(0)}

// stampDir (under the data directory) holds the stamps and nothing else,
// so that a watch on it wakes only for changes: "directory" for domains,
// users and aliases (and, for the body cache, queue deletions by another
// process), "suppressions" for suppressions.
const (
	stampDir          = "stamps"
	stampDirectory    = "directory"
	stampSuppressions = "suppressions"
	stampQueue        = "queue"
	stampMail         = "mail"
)

func newDirCache(dataDir, stamp string, onReset func()) (*dirCache, error) {
	dir := filepath.Join(dataDir, stampDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	c := &dirCache{stampPath: filepath.Join(dir, stamp), onReset: onReset}
	c.reset(noStamp)
	return c, nil
}

// watchCaches starts one watch of the stamps' directory for caches, each
// counting the changes of its own stamp; where there is no watch they stat
// their stamps. Close the result (if not nil) to end the watch.
func watchCaches(dataDir string, caches ...*dirCache) io.Closer {
	names := make([]string, len(caches))
	for i, c := range caches {
		names[i] = filepath.Base(c.stampPath)
		c.watching.Store(true) // before the watch starts: it may fail at once
	}
	w, err := watchStamps(filepath.Join(dataDir, stampDir), names,
		func(i int) {
			caches[i].changes.Add(1)
			if f := caches[i].onChange.Load(); f != nil {
				(*f)()
			}
		},
		func() {
			for _, c := range caches {
				c.watching.Store(false)
			}
		})
	if err != nil {
		for _, c := range caches {
			c.watching.Store(false)
		}
		return nil
	}
	return w
}

// stampEvent reports whether an event for the file named ev in the stamps'
// directory is a change of stamp: the stamp itself, or the new one that
// replaces it (touch).
func stampEvent(stamp, ev string) bool {
	return ev == stamp || strings.HasPrefix(ev, stamp+".tmp")
}

// close stops using the watch: lookups stat the stamp from now on.
func (c *dirCache) close() {
	c.watching.Store(false)
}

func (c *dirCache) reset(id stampID) {
	if c.onReset != nil {
		c.onReset()
	}
	c.stamp = id
	c.domains = map[string]cached[store.Domain]{}
	c.users = map[string]cached[store.User]{}
	c.aliases = map[string]cached[store.Alias]{}
	c.suppressions = map[string]cached[store.Suppression]{}
	c.byID = map[int64]string{}
	c.lastUsed = map[int64]int64{}
}

func (c *dirCache) readStamp() stampID {
	local := c.local.Load()
	if c.watching.Load() {
		return stampID{size: int64(c.changes.Load()), local: local, ok: true}
	}
	fi, err := os.Stat(c.stampPath)
	if errors.Is(err, os.ErrNotExist) {
		return stampID{local: local, ok: true} // no change made yet: a valid state
	}
	if err != nil {
		return noStamp
	}
	return stampID{ino: inode(fi), size: fi.Size(), mtime: fi.ModTime().UnixNano(), local: local, ok: true}
}

// current returns the stamp's identity, having started over if it changed.
// A stamp that cannot be read turns the cache off (every lookup reads the
// database).
func (c *dirCache) current() stampID {
	id := c.readStamp()
	c.mu.Lock()
	if id != c.stamp {
		c.reset(id)
	}
	c.mu.Unlock()
	return id
}

// lookup returns the cached outcome for key, or reads it with load and
// records it.
func lookup[T any](c *dirCache, m func() map[string]cached[T], key string, load func() (T, error), notFound func() error) (T, error) {
	id := c.current()
	if !id.ok {
		return load()
	}
	c.mu.Lock()
	e, hit := m()[key]
	c.mu.Unlock()
	if hit {
		if !e.found {
			return e.v, notFound()
		}
		return e.v, nil
	}
	v, err := load()
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return v, err // not recorded: a storage error is no answer
	}
	c.mu.Lock()
	if c.stamp == id {
		if len(c.domains)+len(c.users)+len(c.aliases)+len(c.suppressions) >= maxCached {
			c.reset(id)
		}
		if u, ok := any(v).(store.User); ok && found {
			if used, ok := c.lastUsed[u.ID]; ok && used > u.UsedBytes {
				u.UsedBytes = used
				v = any(u).(T)
			}
			c.byID[u.ID] = u.Address
		}
		m()[key] = cached[T]{v: v, found: found}
	}
	c.mu.Unlock()
	return v, err
}

// setUsed records a user's used bytes after a commit changed them.
func (c *dirCache) setUsed(userID, used int64) {
	c.mu.Lock()
	if len(c.lastUsed) >= maxCached {
		clear(c.lastUsed)
	}
	c.lastUsed[userID] = used
	if addr, ok := c.byID[userID]; ok {
		if e, ok := c.users[addr]; ok && e.found {
			e.v.UsedBytes = used
			c.users[addr] = e
		}
	}
	c.mu.Unlock()
}

// changed is called after a commit that changed the directory: it drops
// this process's entries and grows the stamp by one octet, which tells
// every other process to drop theirs.
func (c *dirCache) changed() {
	c.local.Add(1) // first: a lookup that read before this cannot record
	c.mu.Lock()
	c.reset(noStamp)
	c.mu.Unlock()
	if err := c.touch(); err != nil {
		// The change is committed; a server running beside this process
		// may answer from its old entries until the stamp can be written.
		slog.Warn("store: could not mark the directory as changed; a running server may not see the change until it restarts",
			"err", fmt.Errorf("write %s: %w", c.stampPath, err))
	}
}

// stampMax is the stamp's length at which a new one replaces it.
const stampMax = 4096

// touch appends an octet to the stamp, so its size grows with each change
// and never repeats; a full stamp is replaced by a new file (a new inode).
// How the file is reached safely is the platform's (touchStamp).
func (c *dirCache) touch() error { return touchStamp(c.stampPath) }
