package imapserver

import (
	"slices"
	"sync"

	"mailroom/internal/message"
	"mailroom/internal/store"
)

// fetchInfo is what FETCH knows of a message without reading its body: the
// store's summary (store.Mail.Summaries; its flags and MODSEQ are the
// session's, not these), and, decoded once, the header section with the
// root's offsets, which listing a mailbox's headers reads.
type fetchInfo struct {
	store.MessageInfo
	head   *message.Part // the root's offsets, prefix counted; nil without a summary
	header []byte        // the prefix and the header section
}

// newInfo makes a fetchInfo from what the store has.
func newInfo(mi store.MessageInfo) *fetchInfo {
	in := &fetchInfo{MessageInfo: mi}
	if root, header, ok := message.DecodeHeader(mi.Summary); ok {
		root.Prefixed(int64(mi.PrefixSize))
		in.head = root
		in.header = append(slices.Clip(mi.Prefix), header...)
	}
	// The prefix is in header now (and in the message ReadMessages reads);
	// the flags are the session's.
	in.Prefix, in.Flags = nil, nil
	return in
}

// cost is what an info holds in memory, roughly.
func (in *fetchInfo) cost() int {
	return 320 + len(in.Summary) + len(in.header)
}

// infoCacheBytes bounds the infos the server keeps for all sessions.
const infoCacheBytes = 64 << 20

type infoKey struct {
	mailbox int64
	uid     uint32
}

// infoCache keeps the infos FETCH read, by mailbox ID and UID (neither is
// ever given to another message, and what an info holds never changes:
// only infos with a summary are kept, since a message without one gets it
// later). Clients list the same headers again and again (every new
// session of a mail client, every poll): with the infos kept, FETCH of the
// headers of 1,000 messages does not ask the store at all. Two generations
// bound it: when the newer is full it becomes the older, and the infos
// read from the older move to the newer.
type infoCache struct {
	mu       sync.Mutex
	cur, old map[infoKey]*fetchInfo
	curBytes int
	max      int // of one generation; half of infoCacheBytes unless a test sets it
}

// get fills out[k] with the info of uids[k] when kept, and returns the
// UIDs it does not have.
func (c *infoCache) get(mailbox int64, uids []uint32, out []*fetchInfo) (missing []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, uid := range uids {
		key := infoKey{mailbox, uid}
		in := c.cur[key]
		if in == nil {
			if in = c.old[key]; in != nil {
				delete(c.old, key)
				c.addLocked(key, in)
			}
		}
		if in == nil {
			missing = append(missing, uid)
		}
		out[k] = in
	}
	return missing
}

// put keeps infos that have a summary.
func (c *infoCache) put(mailbox int64, infos []*fetchInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, in := range infos {
		if in.head != nil {
			c.addLocked(infoKey{mailbox, in.UID}, in)
		}
	}
}

func (c *infoCache) addLocked(key infoKey, in *fetchInfo) {
	if c.max == 0 {
		c.max = infoCacheBytes / 2
	}
	if c.cur == nil {
		c.cur = map[infoKey]*fetchInfo{}
	}
	if _, ok := c.cur[key]; ok {
		return
	}
	if c.curBytes+in.cost() > c.max {
		c.old, c.cur, c.curBytes = c.cur, map[infoKey]*fetchInfo{}, 0
	}
	c.cur[key] = in
	c.curBytes += in.cost()
}

// infosOf returns what is known of the selected mailbox's messages uids
// without reading their bodies, in the same order: nil for one the store
// no longer has.
func (s *session) infosOf(uids []uint32) ([]*fetchInfo, error) {
	out := make([]*fetchInfo, len(uids))
	missing := s.srv.infos.get(s.sel.id, uids, out)
	if len(missing) == 0 {
		return out, nil
	}
	got := make(map[uint32]*fetchInfo, len(missing))
	var read []*fetchInfo
	err := s.srv.store.Summaries(s.ctx(), s.user.ID, s.sel.name, missing, func(mi store.MessageInfo) error {
		in := newInfo(mi)
		got[mi.UID] = in
		read = append(read, in)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.srv.infos.put(s.sel.id, read)
	for k, uid := range uids {
		if out[k] == nil {
			out[k] = got[uid]
		}
	}
	return out, nil
}
