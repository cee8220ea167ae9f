package imapserver

import (
	"encoding/binary"
	"errors"
)

// A view is saved in the store as a snapshot (store.Mail.SaveSnapshot), so
// that the first SELECT of a large mailbox after a start reads one row and
// the changes since, not every message (100,000 rows: 100-150 ms).
//
// The encoding: a version octet; UIDVALIDITY; the flag sets (a count, then
// each set's flags, each a length and its octets); the messages (a count,
// then each message's UID as the difference from the previous one, its
// flag set's index and its MODSEQ). Every number is a uvarint.
const snapshotVersion = 1

// snapshotLag is how far (in MODSEQs) a kept view may move past its saved
// snapshot before it is saved again.
const snapshotLag = 5000

var errSnapshot = errors.New("imap: a mailbox snapshot that does not decode")

// encodeView returns the snapshot of a view.
func encodeView(v *view) []byte {
	b := make([]byte, 0, 16+len(v.msgs)*6)
	b = append(b, snapshotVersion)
	b = binary.AppendUvarint(b, uint64(v.uidValidity))
	b = binary.AppendUvarint(b, uint64(len(v.flags.sets)))
	for _, set := range v.flags.sets {
		b = binary.AppendUvarint(b, uint64(len(set)))
		for _, f := range set {
			b = binary.AppendUvarint(b, uint64(len(f)))
			b = append(b, f...)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(v.msgs)))
	prev := uint32(0)
	for _, m := range v.msgs {
		b = binary.AppendUvarint(b, uint64(m.UID-prev))
		b = binary.AppendUvarint(b, uint64(m.fs))
		b = binary.AppendUvarint(b, uint64(m.ModSeq))
		prev = m.UID
	}
	return b
}

// decodeView reads a snapshot of mailbox id taken at modseq. Whatever the
// octets, it returns a view whose UIDs ascend and whose flag set indexes
// hold, or errSnapshot.
func decodeView(data []byte, id, modseq int64) (*view, error) {
	d := snapshotDecoder{b: data}
	if len(data) == 0 || data[0] != snapshotVersion {
		return nil, errSnapshot
	}
	d.i = 1
	v := &view{id: id, highest: modseq, snapModSeq: modseq}
	uv := d.uint(1<<32 - 1)
	v.uidValidity = uint32(uv)
	nsets := d.count()
	for range nsets {
		n := d.count()
		var set []string
		for range n {
			set = append(set, string(d.octets(d.count())))
		}
		if d.err != nil || int(v.flags.lookup(set)) != len(v.flags.sets)-1 {
			return nil, errSnapshot // a set twice would leave an index pointing nowhere
		}
	}
	n := d.count()
	v.msgs = make([]msg, 0, n)
	uid := uint64(0)
	for range n {
		delta := d.uint(1<<32 - 1)
		fs := d.uint(uint64(len(v.flags.sets)) - 1)
		ms := d.uint(1<<63 - 1)
		uid += delta
		if delta == 0 || uid > 1<<32-1 || len(v.flags.sets) == 0 || d.err != nil {
			return nil, errSnapshot
		}
		v.msgs = append(v.msgs, msg{UID: uint32(uid), fs: uint32(fs), ModSeq: int64(ms)})
	}
	if d.err != nil || d.i != len(data) {
		return nil, errSnapshot
	}
	return v, nil
}

type snapshotDecoder struct {
	b   []byte
	i   int
	err error
}

// uint reads a uvarint no larger than max.
func (d *snapshotDecoder) uint(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 || x > max {
		d.err = errSnapshot
		return 0
	}
	d.i += n
	return x
}

// count reads a count of things of at least an octet each: no more than
// are left.
func (d *snapshotDecoder) count() int {
	return int(d.uint(uint64(len(d.b) - d.i)))
}

func (d *snapshotDecoder) octets(n int) []byte {
	if d.err != nil || n > len(d.b)-d.i {
		d.err = errSnapshot
		return nil
	}
	b := d.b[d.i : d.i+n]
	d.i += n
	return b
}
