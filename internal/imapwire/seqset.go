package imapwire

import (
	"strconv"
	"strings"
)

// Star is '*' in a sequence set: the largest number in use (RFC 9051 9).
// It is 0, which no message number or UID is, so that 4294967295 stays a
// number.
const Star = uint32(0)

// SeqRange is Lo:Hi, Lo <= Hi unless one of them is Star.
type SeqRange struct{ Lo, Hi uint32 }

// SeqSet is a sequence set of message numbers or UIDs, or the result
// saved by SEARCH RETURN (SAVE) (RFC 5182), which the session resolves.
type SeqSet struct {
	Ranges []SeqRange
	Saved  bool
}

// Resolve replaces Star with largest (the last message number or UID in
// use; 0 in an empty mailbox, where "*" then matches nothing below 1).
func (s SeqSet) Resolve(largest uint32) SeqSet {
	out := SeqSet{Saved: s.Saved, Ranges: make([]SeqRange, 0, len(s.Ranges))}
	for _, r := range s.Ranges {
		lo, hi := r.Lo, r.Hi
		if lo == Star {
			lo = largest
		}
		if hi == Star {
			hi = largest
		}
		out.Ranges = append(out.Ranges, SeqRange{Lo: min(lo, hi), Hi: max(lo, hi)})
	}
	return out
}

// Contains reports whether n is in the set (Star resolved first).
func (s SeqSet) Contains(n uint32) bool {
	for _, r := range s.Ranges {
		if n >= r.Lo && n <= r.Hi {
			return true
		}
	}
	return false
}

// String writes the set as a client would (for responses such as COPYUID).
func (s SeqSet) String() string {
	if s.Saved {
		return "$"
	}
	var b strings.Builder
	for i, r := range s.Ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(seqNumber(r.Lo))
		if r.Hi != r.Lo {
			b.WriteByte(':')
			b.WriteString(seqNumber(r.Hi))
		}
	}
	return b.String()
}

func seqNumber(n uint32) string {
	if n == Star {
		return "*"
	}
	return strconv.FormatUint(uint64(n), 10)
}

// Compact writes ascending numbers as a sequence set, runs as ranges
// ("1:3,7"), for COPYUID, APPENDUID, VANISHED and ESEARCH ALL.
func Compact(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}
