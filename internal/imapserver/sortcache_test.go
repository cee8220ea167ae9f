package imapserver

import (
	"fmt"
	"testing"
)

func rowsOf(uids ...uint32) []*sortRow {
	out := make([]*sortRow, len(uids))
	for i, u := range uids {
		out[i] = &sortRow{uid: u}
	}
	return out
}

func uidsOf(rows []*sortRow) string {
	var out []uint32
	for _, r := range rows {
		if r == nil {
			out = append(out, 0)
		} else {
			out = append(out, r.uid)
		}
	}
	return fmt.Sprint(out)
}

// TestSortColumns: rows are found by UID, new ones go in order wherever
// they fall, and the least recently used mailboxes' rows go beyond the
// bound.
func TestSortColumns(t *testing.T) {
	c := sortCache{max: 12}
	cols, done := c.columns(1)
	cols.add(rowsOf(2, 4, 6))
	cols.add(rowsOf(7, 9))    // after the last: appended
	cols.add(rowsOf(1, 5, 8)) // between: merged
	out := make([]*sortRow, 5)
	missing := cols.find([]uint32{1, 3, 5, 9, 10}, out)
	done()
	if got := uidsOf(cols.rows); got != "[1 2 4 5 6 7 8 9]" {
		t.Fatalf("rows %s", got)
	}
	if uidsOf(out) != "[1 0 5 9 0]" || fmt.Sprint(missing) != "[3 10]" {
		t.Fatalf("find: %s, missing %v", uidsOf(out), missing)
	}
	other, done := c.columns(2)
	other.add(rowsOf(1, 2))
	done()
	_, done = c.columns(1) // 1 is now the most recently used
	done()
	third, done := c.columns(3)
	third.add(rowsOf(1, 2, 3))
	done()
	if c.held > c.max || c.m[2] != nil || c.m[1] == nil || c.m[3] == nil {
		t.Fatalf("held %d of %d; kept 1: %v, 2: %v, 3: %v", c.held, c.max, c.m[1] != nil, c.m[2] != nil, c.m[3] != nil)
	}
}
