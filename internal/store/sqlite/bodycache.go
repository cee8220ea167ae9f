package sqlite

import "sync"

// bodyCache hands the bodies of messages just queued for relay to their
// first delivery attempt, so that it does not read them back from the
// database (a cold read of several overflow pages each: ~8% of the
// server's CPU when relaying, docs/performance.md). It holds inline
// bodies only, up to a total size; the oldest go first. An entry is
// dropped when its message is deleted in this process; deletions by other
// processes (the CLI) replace the directory stamp, which empties the cache
// (dirCache.reset).
type bodyCache struct {
	mu    sync.Mutex
	limit int
	size  int
	m     map[int64][]byte
	order []int64 // insertion order, oldest first (may name evicted IDs)
}

// bodyCacheLimit is the default total size of cached bodies.
const bodyCacheLimit = 32 << 20

func newBodyCache(limit int) *bodyCache {
	return &bodyCache{limit: limit, m: map[int64][]byte{}}
}

// put records body as message id's. A nil body only forgets.
func (c *bodyCache) put(id int64, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
	if body == nil || len(body) > c.limit {
		return
	}
	for c.size+len(body) > c.limit && len(c.order) > 0 {
		c.dropLocked(c.order[0])
		c.order = c.order[1:]
	}
	c.m[id] = body
	c.size += len(body)
	c.order = append(c.order, id)
	if len(c.order) > 2*len(c.m)+64 { // forget the IDs already dropped
		live := c.order[:0]
		for _, o := range c.order {
			if _, ok := c.m[o]; ok {
				live = append(live, o)
			}
		}
		c.order = live
	}
}

// get returns message id's body if it is cached; the caller must not
// change it.
func (c *bodyCache) get(id int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[id]
	return b, ok
}

// drop forgets message id.
func (c *bodyCache) drop(id int64) {
	c.mu.Lock()
	c.dropLocked(id)
	c.mu.Unlock()
}

func (c *bodyCache) dropLocked(id int64) {
	if b, ok := c.m[id]; ok {
		c.size -= len(b)
		delete(c.m, id)
	}
}

// clear forgets everything.
func (c *bodyCache) clear() {
	c.mu.Lock()
	c.m = map[int64][]byte{}
	c.order = nil
	c.size = 0
	c.mu.Unlock()
}
