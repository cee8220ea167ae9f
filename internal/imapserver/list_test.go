package imapserver

import (
	"strings"
	"testing"
)

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a/b/c", true},
		{"%", "a", true},
		{"%", "a/b", false},
		{"a/%", "a/b", true},
		{"a/%", "a/b/c", false},
		{"a/*", "a/b/c", true},
		{"a*c", "a/b/c", true},
		{"a%c", "a/b/c", false},
		{"%3/%", "test3/test4", true},
		{"%t*4", "test3/test4", true},
		{"inbox", "INBOX", true},
		{"Inbox/%", "INBOX/x", true},
		{"", "", true},
		{"x", "", false},
		{"%", "", true},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

// A pattern of many wildcards against a long name takes time linear in
// their lengths' product, not exponential (a client's LIST could
// otherwise stall a session).
func TestMatchPatternManyWildcards(t *testing.T) {
	pattern := strings.Repeat("*%", 200) + "z"
	name := strings.Repeat("a", 500)
	if matchPattern(pattern, name) {
		t.Error("matched a name without the 'z'")
	}
}
