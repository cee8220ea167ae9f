package auth

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"mailroom/internal/authlimit"
)

// FuzzAuthenticate feeds random client responses to every mechanism: it
// must never panic, never log in without the right secret, and always end
// the attempt it began (no attempt stays under way in the limiter).
func FuzzAuthenticate(f *testing.F) {
	for _, seed := range []struct {
		mech    string
		initial []byte
		answers []byte // NUL-separated responses to challenges
	}{
		{"PLAIN", []byte("\x00alice@example.test\x00right"), nil},
		{"PLAIN", []byte("bob\x00alice@example.test\x00right"), nil},
		{"LOGIN", nil, []byte("alice@example.test\x00wrong")},
		{"SCRAM-SHA-256", []byte("n,,n=alice@example.test,r=abc"), []byte("c=biws,r=abcdef,p=AAAA")},
		{"SCRAM-SHA-256", []byte("y,a=bob,n=alice@example.test,r=x"), nil},
		{"CRAM-MD5", nil, []byte("alice@example.test 0123456789abcdef0123456789abcdef")},
		{"SCRAM-SHA-256-PLUS", nil, nil},
	} {
		f.Add(seed.mech, seed.initial, seed.initial != nil, seed.answers)
	}
	creds := newCreds(f)
	f.Fuzz(func(t *testing.T, mech string, initial []byte, hasInitial bool, answers []byte) {
		policy := authlimit.Policy{MaxFailures: 1000, MaxPairFailures: 1000, Window: 1 << 40}
		svc := New(creds, policy, nil, quiet)
		responses := bytes.Split(answers, []byte{0})
		ask := func([]byte) ([]byte, error) {
			if len(responses) == 0 {
				return nil, ErrCancelled
			}
			r := responses[0]
			responses = responses[1:]
			return r, nil
		}
		c := client("192.0.2.9")
		login, err := svc.Authenticate(context.Background(), c, mech, initial, hasInitial, Options{CRAMMD5: true, Hostname: "h"}, ask)
		if err == nil && login == "" {
			t.Fatalf("a login without a name (mechanism %q)", mech)
		}
		if err == nil && !bytes.Contains(append(initial, answers...), []byte("right")) && mech != "SCRAM-SHA-256" && mech != "SCRAM-SHA-256-PLUS" {
			t.Fatalf("logged in as %q without the password", login)
		}
		var lim *LimitedError
		if errors.As(err, &lim) {
			t.Fatalf("limited with a generous policy: %v", err)
		}
		if n := svc.limiter.UnderWay(); n != 0 {
			t.Fatalf("the exchange (mechanism %q, error %v) left %d attempts under way", mech, err, n)
		}
	})
}
