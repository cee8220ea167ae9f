package imapserver

import "testing"

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
		if got := BaseSubject(tt.in); got != tt.want {
			t.Errorf("BaseSubject(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
