package imapserver

import (
	"context"
	"maps"
	"slices"
	"sync"

	"mailroom/internal/store"
)

// A view is the state of a mailbox's messages at one MODSEQ, as SELECT
// hands it to a session: UIDs, flag sets and MODSEQs. The server keeps
// the views of large mailboxes (views) so that SELECT reads from the
// store only what changed since, not every message again: SELECT of a
// 100,000-message mailbox read 100,000 rows (60-110 ms) each time.
//
// A view is never changed once made: sessions copy it, and a newer view
// replaces it.
type view struct {
	id          int64
	uidValidity uint32
	highest     int64 // the MODSEQ it is at
	msgs        []msg // ascending UID
	flags       flagSets
	used        uint64 // views.clock when last read
	snapModSeq  int64  // the MODSEQ of the snapshot saved of it (0: none)
}

// viewMin is the smallest mailbox whose view the server keeps: below it,
// reading the mailbox costs less than the memory.
const viewMin = 1000

// viewMaxMessages bounds the messages of all views kept (16 octets each):
// beyond it the least recently used go.
const viewMaxMessages = 2_000_000

type viewKey struct {
	user int64
	name string
}

// views are the views the server keeps, by user and mailbox name (the
// mailbox's ID and UIDVALIDITY tell a re-created or renamed one apart).
type views struct {
	mu    sync.Mutex
	m     map[viewKey]*view
	held  int
	clock uint64
	max   int // viewMaxMessages; tests lower it
}

// load returns the view of a mailbox at its current state, with the
// mailbox's status (not its counts), from the view kept if any and the
// store's changes since it.
func (vs *views) load(ctx context.Context, st store.Mail, userID int64, name string) (*view, store.MailboxStatus, error) {
	key := viewKey{userID, name}
	if old := vs.get(key); old != nil {
		v, status, ok, err := old.upToDate(ctx, st, userID, name)
		if err != nil {
			return nil, status, err
		}
		if ok {
			if v != old {
				vs.keep(ctx, st, key, v, true)
			}
			return v, status, nil
		}
	}
	if sn, err := st.Snapshot(ctx, userID, name); err == nil {
		if saved, err := decodeView(sn.Data, sn.MailboxID, sn.ModSeq); err == nil && saved.uidValidity == sn.UIDValidity {
			if v, status, ok, _ := saved.upToDate(ctx, st, userID, name); ok {
				vs.keep(ctx, st, key, v, false)
				return v, status, nil
			}
		}
	}
	ms, err := st.MailboxState(ctx, userID, name)
	if err != nil {
		return nil, ms.MailboxStatus, err
	}
	v := &view{id: ms.ID, uidValidity: ms.UIDValidity, highest: ms.HighestModSeq, msgs: make([]msg, len(ms.States))}
	for i, m := range ms.States {
		v.msgs[i] = msg{UID: m.UID, fs: v.flags.of(m.Flags), ModSeq: m.ModSeq}
	}
	vs.keep(ctx, st, key, v, false)
	return v, ms.MailboxStatus, nil
}

// preload keeps the views of the mailboxes whose snapshots were saved
// last, as many as the bound holds, brought up to date: after a start the
// first SELECT of a large mailbox then finds its state kept, as after it
// the server has run a while (PostgreSQL's pg_prewarm refills its buffers
// after a restart alike). Without it that SELECT read and decoded the
// snapshot into fresh memory: 15-17 ms for 100,000 messages on a VM whose
// page faults cost 15 µs each. Views already kept are left as they are.
func (vs *views) preload(ctx context.Context, st store.Mail) (mailboxes, messages int, err error) {
	type saved struct {
		key viewKey
		v   *view
	}
	var found []saved
	room := vs.room()
	err = st.Snapshots(ctx, func(userID int64, name string, sn store.Snapshot) bool {
		v, err := decodeView(sn.Data, sn.MailboxID, sn.ModSeq)
		if err != nil || v.uidValidity != sn.UIDValidity || len(v.msgs) < viewMin {
			return ctx.Err() == nil
		}
		if len(v.msgs) > room {
			return false
		}
		room -= len(v.msgs)
		found = append(found, saved{viewKey{userID, name}, v})
		return ctx.Err() == nil
	})
	for _, f := range found {
		if err != nil || ctx.Err() != nil {
			break
		}
		if vs.get(f.key) != nil {
			continue // a session was quicker
		}
		v, _, ok, uerr := f.v.upToDate(ctx, st, f.key.user, f.key.name)
		if uerr != nil || !ok {
			continue // gone or made again: its first SELECT reads it
		}
		if len(v.msgs) >= viewMin {
			vs.keep(ctx, st, f.key, v, false)
			mailboxes++
			messages += len(v.msgs)
		}
	}
	return mailboxes, messages, err
}

// room is how many more messages the views kept may hold.
func (vs *views) room() int {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return vs.limit() - vs.held
}

// limit is the bound on the messages of all views kept.
func (vs *views) limit() int {
	if vs.max == 0 {
		vs.max = viewMaxMessages
	}
	return vs.max
}

// upToDate returns v with the mailbox's changes since it (v itself when
// there are none), and the mailbox's status; ok is false when the mailbox
// under the name is no longer v's (deleted and made again), or is behind
// it (a snapshot that cannot be right).
func (v *view) upToDate(ctx context.Context, st store.Mail, userID int64, name string) (*view, store.MailboxStatus, bool, error) {
	ch, err := st.Changes(ctx, userID, name, v.highest)
	if err != nil {
		return nil, ch.MailboxStatus, false, err
	}
	if ch.ID != v.id || ch.UIDValidity != v.uidValidity || ch.HighestModSeq < v.highest {
		return nil, ch.MailboxStatus, false, nil
	}
	if len(ch.Changed) > 0 || len(ch.Vanished) > 0 || ch.HighestModSeq != v.highest {
		v = v.apply(ch)
	}
	return v, ch.MailboxStatus, true, nil
}

// keep keeps the view of a large mailbox (or replaces the one kept), and
// saves its snapshot first when the one saved is missing or far behind
// (before the view is shared: it is not changed after). A snapshot that
// fails to save costs only time.
func (vs *views) keep(ctx context.Context, st store.Mail, key viewKey, v *view, replacing bool) {
	if len(v.msgs) < viewMin {
		if replacing {
			vs.put(key, v)
		}
		return
	}
	if v.snapModSeq == 0 || v.highest-v.snapModSeq > snapshotLag {
		v.snapModSeq = v.highest
		_ = st.SaveSnapshot(ctx, key.user, store.Snapshot{MailboxID: v.id, ModSeq: v.highest, Data: encodeView(v)})
	}
	vs.put(key, v)
}

func (vs *views) get(key viewKey) *view {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	v := vs.m[key]
	if v != nil {
		vs.clock++
		v.used = vs.clock
	}
	return v
}

// put keeps v for key unless a view of the same mailbox at a later MODSEQ
// is there already, and drops the least recently used beyond the bound.
func (vs *views) put(key viewKey, v *view) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.m == nil {
		vs.m = map[viewKey]*view{}
	}
	max := vs.limit()
	if old := vs.m[key]; old != nil {
		if old.id == v.id && old.uidValidity == v.uidValidity && old.highest > v.highest {
			return
		}
		vs.held -= len(old.msgs)
	}
	vs.clock++
	v.used = vs.clock
	vs.m[key] = v
	vs.held += len(v.msgs)
	for vs.held > max && len(vs.m) > 1 {
		var lru viewKey
		first := true
		for k, o := range vs.m {
			if k != key && (first || o.used < vs.m[lru].used) {
				lru, first = k, false
			}
		}
		vs.held -= len(vs.m[lru].msgs)
		delete(vs.m, lru)
	}
}

// apply returns a new view: v with a mailbox's changes since its MODSEQ.
func (v *view) apply(ch store.Changes) *view {
	n := &view{id: v.id, uidValidity: v.uidValidity, highest: max(v.highest, ch.HighestModSeq), flags: v.flags.clone(), snapModSeq: v.snapModSeq}
	n.msgs = removeUIDs(slices.Clone(v.msgs), ch.Vanished)
	last := uint32(0)
	if len(n.msgs) > 0 {
		last = n.msgs[len(n.msgs)-1].UID
	}
	for _, m := range ch.Changed {
		ms := msg{UID: m.UID, fs: n.flags.of(m.Flags), ModSeq: m.ModSeq}
		if m.UID > last {
			n.msgs = append(n.msgs, ms)
			last = m.UID
			continue
		}
		if i, ok := slices.BinarySearchFunc(n.msgs, m.UID, func(x msg, u uint32) int { return cmpUID(x.UID, u) }); ok {
			n.msgs[i] = ms
		}
	}
	return n
}

// removeUIDs removes the messages of uids (ascending or not) from msgs in
// one pass, keeping the order.
func removeUIDs(msgs []msg, uids []uint32) []msg {
	if len(uids) == 0 {
		return msgs
	}
	gone := make(map[uint32]struct{}, len(uids))
	for _, u := range uids {
		gone[u] = struct{}{}
	}
	return slices.DeleteFunc(msgs, func(m msg) bool {
		_, ok := gone[m.UID]
		return ok
	})
}

// clone returns a copy that may grow without changing f.
func (f *flagSets) clone() flagSets {
	return flagSets{sets: slices.Clip(slices.Clone(f.sets)), index: maps.Clone(f.index)}
}

// own gives the session its own copy of the state it shares with a view,
// before it changes it: SELECT shares the view's (copying 1.6 MB for
// 100,000 messages cost 0.2 ms, and 4.5 ms while the process was young
// and every copy faulted its pages in afresh), and most sessions on a large
// mailbox never change it.
func (m *selected) own() {
	if m.shared {
		m.msgs, m.flags, m.shared = slices.Clone(m.msgs), m.flags.clone(), false
	}
}
