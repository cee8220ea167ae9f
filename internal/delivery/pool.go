package delivery

import (
	"sync"
	"time"

	"mailroom/internal/smtpclient"
)

// conn is an open connection to a next hop, ready for a transaction.
type conn struct {
	c     *smtpclient.Client
	host  string // the exchanger's name, for Remote-MTA
	tls   string // "TLS1.3 ..." or ""
	auth  int    // how the next hop was authenticated (authNone, authDANE...)
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

	mu     sync.Mutex
	idle   map[string][]*conn
	closed bool
}

func newPool(idleTime, maxAge time.Duration, maxUses int) *pool {
	return &pool{idleTime: idleTime, maxAge: maxAge, maxUses: maxUses, idle: map[string][]*conn{}}
}

// setIdleTime changes how long connections put back from now on wait.
func (p *pool) setIdleTime(d time.Duration) {
	p.mu.Lock()
	p.idleTime = d
	p.mu.Unlock()
}

// get takes an idle connection to key, or returns nil. A connection out
// for recording (Job.Held) is not waited for: the next message dials a
// connection of its own rather than stall behind a commit.
func (p *pool) get(key string) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.take(key)
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

// willKeep reports whether c, once it has carried the message it carries
// now, may serve another: only such a connection is held for recording.
func (p *pool) willKeep(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keeps(c, c.uses+1)
}

// keeps reports whether a connection that has carried uses messages may
// serve another; p.mu is held.
func (p *pool) keeps(c *conn, uses int) bool {
	return !p.closed && p.idleTime > 0 && uses < p.maxUses && time.Since(c.born) < p.maxAge
}

// put keeps c for the next message to key, or closes it when it has
// served long enough or the pool is closed.
func (p *pool) put(key string, c *conn) {
	c.uses++
	p.mu.Lock()
	defer p.mu.Unlock()
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
