package imapserver

import (
	"slices"
	"strings"

	"mailroom/internal/store"
)

// msg is one message as a session knows it. A session holds one per
// message of its mailbox, so it is kept to 16 octets: the flags are an
// index into the session's distinct flag sets (a mailbox has few: most
// messages are \Seen, some also \Answered or \Flagged). With the flags
// inline (a slice of strings each) a session on a 5,000-message mailbox
// held 414 kB.
type msg struct {
	UID    uint32
	fs     uint32 // index into selected.flagSets
	ModSeq int64
}

// flagSets interns the flag sets of a session's messages.
type flagSets struct {
	sets  [][]string
	index map[string]uint32
	// the last slice looked up: the store shares one slice among messages
	// with the same flags, so a mailbox's messages mostly hit it.
	last    []string
	lastIdx uint32
}

// of returns the index of a flag set, adding it if new.
func (f *flagSets) of(flags []string) uint32 {
	if len(flags) > 0 && len(flags) == len(f.last) && &flags[0] == &f.last[0] {
		return f.lastIdx
	}
	i := f.lookup(flags)
	f.last, f.lastIdx = flags, i
	return i
}

func (f *flagSets) lookup(flags []string) uint32 {
	key := strings.Join(flags, " ")
	if i, ok := f.index[key]; ok {
		return i
	}
	if f.index == nil {
		f.index = map[string]uint32{}
	}
	f.sets = append(f.sets, slices.Clip(slices.Clone(flags)))
	f.index[key] = uint32(len(f.sets) - 1)
	return uint32(len(f.sets) - 1)
}

// msgOf makes a session's message from the store's.
func (m *selected) msgOf(st store.MessageState) msg {
	return msg{UID: st.UID, fs: m.flags.of(st.Flags), ModSeq: st.ModSeq}
}

// flagsOf returns a message's flags (shared: not to be changed).
func (m *selected) flagsOf(ms msg) []string { return m.flags.sets[ms.fs] }

// has reports whether a message has a flag.
func (m *selected) has(ms msg, flag string) bool { return slices.Contains(m.flags.sets[ms.fs], flag) }

// state returns a message as the store describes it.
func (m *selected) state(ms msg) store.MessageState {
	return store.MessageState{UID: ms.UID, Flags: m.flags.sets[ms.fs], ModSeq: ms.ModSeq}
}

// uidRange is the UIDs lo up to hi-1.
type uidRange struct{ lo, hi uint32 }

// recentSince records that the session's messages from UID from up to
// (not including) next are \Recent to it (RFC 3501 2.3.2). The ranges
// claimed are kept, not each message: SELECT of a large new mailbox would
// otherwise hold a map entry per message.
func (m *selected) recentSince(from, next uint32) {
	if from >= next {
		return
	}
	if n := len(m.recent); n > 0 && m.recent[n-1].hi >= from {
		m.recent[n-1].hi = max(m.recent[n-1].hi, next)
		return
	}
	m.recent = append(m.recent, uidRange{from, next})
}

// isRecent reports whether a message is \Recent to the session.
func (m *selected) isRecent(uid uint32) bool {
	for _, r := range m.recent {
		if uid >= r.lo && uid < r.hi {
			return true
		}
	}
	return false
}

// recentCount returns how many of the session's messages are \Recent.
func (m *selected) recentCount() int {
	n := 0
	for _, r := range m.recent {
		lo, _ := slices.BinarySearchFunc(m.msgs, r.lo, func(ms msg, u uint32) int { return cmpUID(ms.UID, u) })
		hi, _ := slices.BinarySearchFunc(m.msgs, r.hi, func(ms msg, u uint32) int { return cmpUID(ms.UID, u) })
		n += hi - lo
	}
	return n
}
