package metrics

import (
	"fmt"
	"testing"
)

func TestLabel(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"pass", "pass"},
		{"5.7.1", "5.7.1"},
		{"temperror", "temperror"},
		{"", "other"},
		{"fail\n", "other"},
		{"a b", "other"},
		{"x{y}", "other"},
		{"0123456789012345678901234567890123", "other"}, // over 32
	} {
		if got := Label(c.in); got != c.want {
			t.Errorf("Label(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestDestination: the first maxDestinations domains keep their names
// (lower case); later ones, and malformed ones, are "other".
func TestDestination(t *testing.T) {
	if got := Destination("Gmail.COM"); got != "gmail.com" {
		t.Errorf("Destination(Gmail.COM) = %q", got)
	}
	if got := Destination("bad domain"); got != "other" {
		t.Errorf("Destination(bad domain) = %q", got)
	}
	for i := range maxDestinations {
		Destination(fmt.Sprintf("d%d.example", i))
	}
	if got := Destination("late.example"); got != "other" {
		t.Errorf("a domain beyond the limit = %q, want other", got)
	}
	if got := Destination("gmail.com"); got != "gmail.com" {
		t.Errorf("a domain seen early = %q after the limit", got)
	}
}
