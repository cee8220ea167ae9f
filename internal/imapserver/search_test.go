package imapserver

import (
	"bytes"
	"strings"
	"testing"
)

func TestContainsFold(t *testing.T) {
	tests := []struct {
		text, s string
		want    bool
	}{
		{"Hello World", "world", true},
		{"Hello World", "hello", true},
		{"Hello World", "lo w", true},
		{"Hello World", "worlds", false},
		{"Hello", "", true},
		{"", "a", false},
		{"ab", "abc", false},
		{"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeE", "ex", false},
		{"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeEX", "ex", true},
		{"xxxQUARTZ", "quartz", true},
		{"12345", "345", true},
		{"Grüße aus Köln", "köln", true},
		{"GRÜSSE", "grü", true},
	}
	for _, tt := range tests {
		if got := containsFold([]byte(tt.text), tt.s); got != tt.want {
			t.Errorf("containsFold(%q, %q) = %v, want %v", tt.text, tt.s, got, tt.want)
		}
	}
}

// FuzzContainsFold: the same answer as lower-casing the text.
func FuzzContainsFold(f *testing.F) {
	f.Add([]byte("Hello World"), "o w")
	f.Fuzz(func(t *testing.T, text []byte, s string) {
		if !isASCII(text) || !isASCII([]byte(s)) {
			return
		}
		s = strings.ToLower(s)
		if got, want := containsFold(text, s), bytes.Contains(bytes.ToLower(text), []byte(s)); got != want {
			t.Fatalf("containsFold(%q, %q) = %v, want %v", text, s, got, want)
		}
	})
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
