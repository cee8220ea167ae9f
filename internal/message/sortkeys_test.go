package message

import (
	"strings"
	"testing"
	"time"
)

func TestBaseSubject(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a", "a"},
		{"Re: a", "a"},
		{"RE: Re: re: a", "a"},
		{"Fwd: a", "a"},
		{"fw: a (fwd)", "a"},
		{"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b"},
		{"Re: [FWD: c]", "c"},
		{"[xyz]", "[xyz]"},
		{"=?iso-8859-1?q?RE:_C?=", "C"},
		{"=?us-ascii?b?UmU6IGM=?=", "c"},
		{"Ad: Re: Ad: Re: Ad: x", "Ad: Re: Ad: Re: Ad: x"},
		{"re: [fwd: [fwd: re: [fwd: babylon]]]", "babylon"},
		{"  lots\t of   space  ", "lots of space"},
		{"Re[2]: a", "a"},
		{"", ""},
	}
	for _, tt := range tests {
		if got, _ := BaseSubject(tt.in); got != tt.want {
			t.Errorf("BaseSubject(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSortKeys(t *testing.T) {
	h, _ := splitHeader([]byte("Date: Tue, 2 Jan 2024 03:04:05 +0100\r\nSubject: Re: [list] =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
		"From: \"Doe, Jane\" <jane@example.org>\r\nTo: undisclosed:;\r\nCc: bob@example.org\r\n\r\n"))
	k := KeysOf(envelope(h))
	want := SortKeys{Sent: time.Date(2024, 1, 2, 2, 4, 5, 0, time.UTC), Subject: "Grüße", From: "jane", To: "undisclosed", Cc: "bob",
		DisplayFrom: "Doe, Jane", DisplayTo: "undisclosed"}
	if !k.Sent.Equal(want.Sent) || k.Subject != want.Subject || k.From != want.From || k.To != want.To || k.Cc != want.Cc ||
		k.DisplayFrom != want.DisplayFrom || k.DisplayTo != want.DisplayTo {
		t.Errorf("KeysOf = %+v, want %+v", k, want)
	}
	if k := KeysOf(nil); !k.Sent.IsZero() || k.Subject != "" {
		t.Errorf("KeysOf(nil) = %+v", k)
	}
}

// FuzzSortKeys: any header gives keys without control characters.
func FuzzSortKeys(f *testing.F) {
	f.Add("Subject: a\x1fb\r\nFrom: =?utf-8?q?x=1Ey?= <a@b>\r\nTo: g:;\r\n\r\n")
	f.Fuzz(func(t *testing.T, hdr string) {
		h, _ := splitHeader([]byte(hdr))
		k := KeysOf(envelope(h))
		for _, v := range []string{k.Subject, k.From, k.To, k.Cc, k.DisplayFrom, k.DisplayTo} {
			if strings.ContainsFunc(v, isControl) {
				t.Fatalf("a key with a control character: %q", v)
			}
		}
	})
}
