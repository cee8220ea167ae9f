package delivery

import (
	"context"
	"sync"
	"time"

	"mailroom/internal/smtpclient"
)

// conn is an open connection to a next hop, ready for a transaction.
type conn struct {
	c     *smtpclient.Client
	host  string // the exchanger's name, for Remote-MTA
	tls   string // "TLS1.3 ..." or ""
	born  time.Time
	uses  int
	timer *time.Timer // closes the connection when it has been idle too long
}

// pool keeps connections open between messages to the same destination
// for a short while, so that a burst of messages to one domain shares
// connections (and their TLS handshakes) instead of opening one each.
type pool struct {
	idleTime time.Duration // close a connection idle this long
	maxAge   time.Duration // do not reuse a connection older than this
	maxUses  int           // nor one that has carried this many messages

	mu   sync.Mutex
	idle map[string][]*conn
	// held counts connections per key out of the pool while their last
	// transaction's outcome is recorded; back, they serve the next message
	// (Job.Held). changed is closed and replaced whenever one comes back.
	held    map[string]int
	changed chan struct{}
	closed  bool
}

// heldWait bounds how long a message waits for a connection whose outcome
// is being recorded (a group commit: milliseconds) before it dials anew.
const heldWait = time.Second

func newPool(idleTime, maxAge time.Duration, maxUses int) *pool {
	return &pool{idleTime: idleTime, maxAge: maxAge, maxUses: maxUses, idle: map[string][]*conn{}, held: map[string]int{}, changed: make(chan struct{})}
}

// setIdleTime changes how long connections put back from now on wait.
func (p *pool) setIdleTime(d time.Duration) {
	p.mu.Lock()
	p.idleTime = d
	p.mu.Unlock()
}

// get takes an idle connection to key, waiting a while for one held for
// recording, or returns nil.
func (p *pool) get(ctx context.Context, key string) *conn {
	deadline := time.NewTimer(heldWait)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		c, held, changed := p.take(key), p.held[key], p.changed
		p.mu.Unlock()
		if c != nil || held == 0 {
			return c // held: only connections that will come back to the pool
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// take takes an idle connection to key, or returns nil; p.mu is held.
func (p *pool) take(key string) *conn {
	for cs := p.idle[key]; len(cs) > 0; cs = p.idle[key] {
		c := cs[len(cs)-1]
		p.idle[key] = cs[:len(cs)-1]
		if len(cs) == 1 {
			delete(p.idle, key)
		}
		if c.timer.Stop() {
			return c
		}
		// Its idle timer fired and is closing it.
	}
	return nil
}

// hold marks a connection to key as out for recording, when the pool will
// keep it once it comes back: messages to key then wait for it (briefly)
// rather than dial. It reports whether it did; a held connection must come
// back with putHeld.
func (p *pool) hold(key string, c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.keeps(c, c.uses+1) {
		return false
	}
	p.held[key]++
	return true
}

// putHeld gives back a connection marked with hold.
func (p *pool) putHeld(key string, c *conn) {
	p.mu.Lock()
	if p.held[key]--; p.held[key] <= 0 {
		delete(p.held, key)
	}
	p.mu.Unlock()
	p.put(key, c)
}

// keeps reports whether a connection that has carried uses messages may
// serve another; p.mu is held.
func (p *pool) keeps(c *conn, uses int) bool {
	return !p.closed && p.idleTime > 0 && uses < p.maxUses && time.Since(c.born) < p.maxAge
}

// put keeps c for the next message to key, or closes it when it has
// served long enough or the pool is closed; waiting messages are told.
func (p *pool) put(key string, c *conn) {
	c.uses++
	p.mu.Lock()
	defer func() {
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}()
	if !p.keeps(c, c.uses) {
		go c.c.Close()
		return
	}
	c.timer = time.AfterFunc(p.idleTime, func() { p.drop(key, c) })
	p.idle[key] = append(p.idle[key], c)
}

// drop removes c after its idle time and closes it.
func (p *pool) drop(key string, c *conn) {
	p.mu.Lock()
	cs := p.idle[key]
	for i, x := range cs {
		if x == c {
			p.idle[key] = append(cs[:i:i], cs[i+1:]...)
			if len(p.idle[key]) == 0 {
				delete(p.idle, key)
			}
			break
		}
	}
	p.mu.Unlock()
	c.c.Close()
}

// close ends every idle connection; later ones are closed when put back.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*conn
	for _, cs := range p.idle {
		for _, c := range cs {
			if c.timer.Stop() {
				all = append(all, c)
			}
		}
	}
	p.idle = map[string][]*conn{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(func() { c.c.Close() })
	}
	wg.Wait()
}
