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
	back, ok := DecodeSortKeys(k.Encode())
	if !ok || !back.Sent.Equal(k.Sent) || back.Subject != k.Subject || back.DisplayFrom != k.DisplayFrom {
		t.Errorf("DecodeSortKeys(Encode) = %+v, %v; want %+v", back, ok, k)
	}
	if _, ok := DecodeSortKeys("k0\x1f\x1f\x1f\x1f\x1f\x1f\x1f"); ok {
		t.Error("keys of another version decoded")
	}
	if k := KeysOf(nil); !k.Sent.IsZero() || k.Subject != "" {
		t.Errorf("KeysOf(nil) = %+v", k)
	}
}

// FuzzSortKeys: any text decodes or is refused, and keys with any
// characters survive Encode and DecodeSortKeys (control characters as
// spaces).
func FuzzSortKeys(f *testing.F) {
	f.Add("k1\x1f123\x1fsubject\x1ffrom\x1fto\x1fcc\x1fdf\x1fdt", "a\x1fb\x1e", int64(5))
	f.Fuzz(func(t *testing.T, s, field string, sent int64) {
		DecodeSortKeys(s)
		k := SortKeys{Sent: time.Unix(0, sent), Subject: field, From: field, DisplayTo: field}
		back, ok := DecodeSortKeys(k.Encode())
		if !ok || back.Subject != back.From || strings.ContainsAny(back.Subject, "\x1e\x1f") ||
			(sent != 0 && !back.Sent.Equal(k.Sent)) {
			t.Fatalf("%+v came back as %+v, %v", k, back, ok)
		}
	})
}
