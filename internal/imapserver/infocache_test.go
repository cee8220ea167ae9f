package imapserver

import (
	"fmt"
	"testing"

	"mailroom/internal/message"
	"mailroom/internal/store"
)

func testInfo(uid uint32) *fetchInfo {
	body := []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", uid))
	root := message.Parse(body)
	return newInfo(store.MessageInfo{UID: uid, Size: int64(len(body)), Summary: message.Encode(root, body[:root.BodyStart])})
}

// TestInfoCache: infos are found by mailbox and UID, those without a
// summary are not kept, and the cache stays within its bound, keeping
// what was read lately.
func TestInfoCache(t *testing.T) {
	one := testInfo(1)
	if one.head == nil || string(one.header) != "Subject: 1\r\n\r\n" {
		t.Fatalf("info of a message with a summary: head %v, header %q", one.head, one.header)
	}
	c := infoCache{max: 10 * one.cost()}
	c.put(7, []*fetchInfo{one, newInfo(store.MessageInfo{UID: 2})})
	out := make([]*fetchInfo, 3)
	missing := c.get(7, []uint32{1, 2, 3}, out)
	if out[0] != one || out[1] != nil || out[2] != nil || fmt.Sprint(missing) != "[2 3]" {
		t.Fatalf("get: %v, missing %v", out, missing)
	}
	if missing := c.get(8, []uint32{1}, out[:1]); len(missing) != 1 {
		t.Fatal("an info was found under another mailbox")
	}
	for uid := uint32(100); uid < 200; uid++ {
		c.put(7, []*fetchInfo{testInfo(uid)})
		if uid%5 == 0 { // read often: stays
			c.get(7, []uint32{1}, out[:1])
		}
	}
	if n := len(c.cur) + len(c.old); n > 20 {
		t.Fatalf("the cache holds %d infos, bound to about 20", n)
	}
	if c.get(7, []uint32{1}, out[:1]); out[0] != one {
		t.Fatal("an info read again and again was dropped")
	}
	if missing := c.get(7, []uint32{100}, out[:1]); len(missing) != 1 {
		t.Fatal("an info never read again was kept")
	}
}
