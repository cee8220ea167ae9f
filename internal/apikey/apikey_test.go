package apikey

import (
	"strings"
	"testing"

	"mailroom/internal/store"
)

func TestNew(t *testing.T) {
	tok, id, hash := New()
	if err := Check(tok); err != nil {
		t.Fatalf("a new token %q: %v", tok, err)
	}
	if !strings.HasPrefix(tok, "mr_"+id+"_") || Hash(tok) != hash || len(hash) != 64 {
		t.Errorf("token %q, id %q, hash %q", tok, id, hash)
	}
	if tok2, _, _ := New(); tok2 == tok {
		t.Error("two tokens are the same")
	}
}

func TestCheck(t *testing.T) {
	good, _, _ := New()
	for _, c := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{"", false},
		{"mr_" + good[3:len(good)-1], false}, // short
		{strings.Replace(good, "mr_", "xx_", 1), false}, // prefix
		{good[:11] + "-" + good[12:], false},            // separator
		{good[:len(good)-1] + "1", false},               // not base32
		{strings.ToUpper(good), false},
	} {
		if err := Check(c.in); (err == nil) != c.ok {
			t.Errorf("Check(%q) = %v, want ok %v", c.in, err, c.ok)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, c := range []struct {
		k    store.APIKey
		want string // part of the error, "" for none
	}{
		{store.APIKey{Owner: "@a.example", Scopes: []string{"send", "read"}}, ""},
		{store.APIKey{Owner: "*", Scopes: []string{"admin"}}, ""},
		{store.APIKey{Owner: "@a.example", Scopes: []string{"admin"}}, "server's keys only"},
		{store.APIKey{Owner: "alice@a.example", Scopes: []string{"write"}}, "unknown scope"},
		{store.APIKey{Owner: "alice@a.example"}, "at least one scope"},
		{store.APIKey{Scopes: []string{"send"}}, "needs an owner"},
		{store.APIKey{Owner: "*", Scopes: []string{"send"}, RatePerMinute: -1}, "requests per minute"},
	} {
		err := CheckKey(c.k)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckKey(%+v) = %v, want %q", c.k, err, c.want)
		}
	}
}
