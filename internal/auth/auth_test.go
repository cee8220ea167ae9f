package auth

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"
	"golang.org/x/crypto/argon2"

	"mailroom/internal/authlimit"
	"mailroom/internal/password"
	"mailroom/internal/store"
)

// cheapHash is an argon2id hash of pw with tiny parameters, so that tests
// stay fast (password.Check reads the parameters from the hash).
func cheapHash(pw string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, 1, 8, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=8,t=1,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
}

// creds holds alice (password "right", SCRAM and CRAM-MD5 states) and
// scram-only carol (password "right").
type creds map[string]store.User

func newCreds(t testing.TB) creds {
	_, verifiers, cram, err := password.Derive("right", true)
	if err != nil {
		t.Fatal(err)
	}
	return creds{
		"alice@example.test": {Address: "alice@example.test", PasswordHash: cheapHash("right"), SCRAMSHA256: verifiers, CRAMMD5: cram},
		"carol@example.test": {Address: "carol@example.test", PasswordHash: cheapHash("right"), Settings: store.UserSettings{RequireSCRAM: true}},
	}
}

func (c creds) User(_ context.Context, addr string) (store.User, error) {
	if u, ok := c[addr]; ok {
		return u, nil
	}
	return store.User{}, store.ErrNotFound
}

func (c creds) UserByAppPassword(_ context.Context, hash string) (store.User, string, error) {
	if hash == password.AppHash("app-password-for-alice") {
		return c["alice@example.test"], "phone", nil
	}
	return store.User{}, "", store.ErrNotFound
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func client(ip string) Client {
	a := netip.MustParseAddr(ip)
	return Client{Addr: a, Prefix: netip.PrefixFrom(a, 32), Protocol: "test"}
}

// script answers challenges from a list, recording them.
type script struct {
	answers    [][]byte
	challenges []string
}

func (s *script) ask(challenge []byte) ([]byte, error) {
	s.challenges = append(s.challenges, string(challenge))
	if len(s.answers) == 0 {
		return nil, ErrCancelled
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a, nil
}

func TestPasswordMechanisms(t *testing.T) {
	svc := New(newCreds(t), authlimit.Policy{}, nil, quiet)
	plain := func(authz, user, pw string) []byte { return []byte(authz + "\x00" + user + "\x00" + pw) }
	cases := []struct {
		name      string
		mech      string
		initial   []byte
		answers   [][]byte
		wantLogin string
		wantErr   error
	}{
		{"PLAIN with the right password logs in", "PLAIN", plain("", "alice@example.test", "right"), nil, "alice@example.test", nil},
		{"PLAIN with another spelling logs in under the canonical name", "PLAIN", plain("", "Alice@example.test", "right"), nil, "alice@example.test", nil},
		{"PLAIN with a wrong password fails", "PLAIN", plain("", "alice@example.test", "wrong"), nil, "", ErrBadCredentials},
		{"PLAIN for a name that does not exist fails the same way", "PLAIN", plain("", "nobody@example.test", "right"), nil, "", ErrBadCredentials},
		{"PLAIN acting for another user fails", "PLAIN", plain("bob@example.test", "alice@example.test", "right"), nil, "", ErrBadCredentials},
		{"PLAIN without its NULs is malformed", "PLAIN", []byte("alice"), nil, "", ErrMalformed},
		{"PLAIN asks for its response when none was given", "PLAIN", nil, [][]byte{plain("", "alice@example.test", "right")}, "alice@example.test", nil},
		{"an app password logs in", "PLAIN", plain("", "alice@example.test", "app-password-for-alice"), nil, "alice@example.test", nil},
		{"the main password of a SCRAM-only account is too weak", "PLAIN", plain("", "carol@example.test", "right"), nil, "carol@example.test", ErrTooWeak},
		{"LOGIN asks for the name and the password", "LOGIN", nil, [][]byte{[]byte("alice@example.test"), []byte("right")}, "alice@example.test", nil},
		{"LOGIN cancelled by the client", "LOGIN", nil, nil, "", ErrCancelled},
		{"CRAM-MD5 is not offered unless turned on", "CRAM-MD5", nil, nil, "", ErrUnknownMechanism},
		{"an unknown mechanism", "GSSAPI", nil, nil, "", ErrUnknownMechanism},
		{"SCRAM-SHA-256-PLUS without TLS 1.3", "SCRAM-SHA-256-PLUS", nil, nil, "", ErrNeedsTLS13},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc := &script{answers: c.answers}
			login, err := svc.Authenticate(context.Background(), client("192.0.2.1"), c.mech, c.initial, c.initial != nil, Options{}, sc.ask)
			if !errors.Is(err, c.wantErr) || c.wantErr == nil && err != nil {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if login != c.wantLogin {
				t.Errorf("login = %q, want %q", login, c.wantLogin)
			}
		})
	}
}

func TestCRAMMD5(t *testing.T) {
	svc := New(newCreds(t), authlimit.Policy{}, nil, quiet)
	o := Options{CRAMMD5: true, Hostname: "mx.example.test"}
	respond := func(pw string) Ask {
		return func(challenge []byte) ([]byte, error) {
			if !regexp.MustCompile(`^<[0-9a-f]{24}\.[0-9]+@mx\.example\.test>$`).Match(challenge) {
				t.Errorf("challenge %q is not <random.time@host>", challenge)
			}
			m := hmac.New(md5.New, []byte(pw))
			m.Write(challenge)
			return []byte("alice@example.test " + hex.EncodeToString(m.Sum(nil))), nil
		}
	}
	if login, err := svc.Authenticate(context.Background(), client("192.0.2.1"), "CRAM-MD5", nil, false, o, respond("right")); err != nil || login != "alice@example.test" {
		t.Errorf("the right digest: %q, %v", login, err)
	}
	if _, err := svc.Authenticate(context.Background(), client("192.0.2.1"), "CRAM-MD5", nil, false, o, respond("wrong")); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("a wrong digest: %v", err)
	}
	if _, err := svc.Authenticate(context.Background(), client("192.0.2.1"), "CRAM-MD5", []byte("x"), true, o, respond("right")); !errors.Is(err, ErrMalformed) {
		t.Errorf("an initial response: %v", err)
	}
}

// scramExchange runs the client side of SCRAM-SHA-256 through Ask.
func scramExchange(t *testing.T, svc *Service, user, pw string) (string, error) {
	c, err := scram.SHA256.NewClient(user, pw, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := c.NewConversation()
	first, _ := conv.Step("")
	ask := func(challenge []byte) ([]byte, error) {
		resp, err := conv.Step(string(challenge))
		if err != nil {
			return nil, ErrCancelled // the client would cancel: the server's proof is wrong
		}
		return []byte(resp), nil
	}
	return svc.Authenticate(context.Background(), client("192.0.2.1"), "SCRAM-SHA-256", []byte(first), true, Options{}, ask)
}

func TestSCRAM(t *testing.T) {
	svc := New(newCreds(t), authlimit.Policy{}, nil, quiet)
	if login, err := scramExchange(t, svc, "alice@example.test", "right"); err != nil || login != "alice@example.test" {
		t.Errorf("the right password: %q, %v", login, err)
	}
	if _, err := scramExchange(t, svc, "alice@example.test", "wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("a wrong password: %v", err)
	}
	if _, err := scramExchange(t, svc, "nobody@example.test", "right"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("a name that does not exist: %v", err)
	}
}

func TestLimits(t *testing.T) {
	p := authlimit.Policy{MaxFailures: 4, MaxPairFailures: 2, Window: time.Minute, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	svc := New(newCreds(t), p, nil, quiet)
	ctx := context.Background()
	guesser, other := client("192.0.2.5"), client("192.0.2.6")
	for i := 0; i < 2; i++ {
		if _, err := svc.Password(ctx, guesser, "alice@example.test", "wrong"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	var limited *LimitedError
	if _, err := svc.Password(ctx, guesser, "alice@example.test", "right"); !errors.As(err, &limited) || limited.Banned {
		t.Errorf("alice from the guessing address: %v, want a LimitedError without a ban", err)
	}
	if _, err := svc.Password(ctx, other, "alice@example.test", "right"); err != nil {
		t.Errorf("alice from another address: %v, want a login", err)
	}
	for _, u := range []string{"bob@example.test", "carol@example.test"} {
		svc.Password(ctx, guesser, u, "wrong")
	}
	if _, err := scramExchange(t, svc, "alice@example.test", "right"); err != nil {
		t.Errorf("SCRAM from a clean address: %v", err)
	}
	if _, err := svc.Password(ctx, guesser, "dave@example.test", "x"); !errors.As(err, &limited) || !limited.Banned {
		t.Errorf("after 4 failures from one address: %v, want a ban", err)
	}
}

// TestLoginCache: a proved login is remembered without its password,
// failures never are, and a changed password or a deleted account is never
// let in from the cache.
func TestLoginCache(t *testing.T) {
	cr := newCreds(t)
	svc := New(cr, authlimit.Policy{}, nil, quiet)
	svc.SetCacheTime(time.Minute)
	ctx, c := context.Background(), client("192.0.2.1")
	if _, err := svc.Password(ctx, c, "alice@example.test", "right"); err != nil {
		t.Fatal(err)
	}
	cache := svc.cache.Load()
	if len(cache.entries) != 1 {
		t.Fatalf("a proved login is not remembered: %d entries", len(cache.entries))
	}
	for k, e := range cache.entries {
		if strings.Contains(string(k[:]), "right") || strings.Contains(e.hash, "right") {
			t.Error("the cache keeps the password")
		}
	}
	// From the cache: the same result, with no check (a hash that no longer
	// parses would fail a real one).
	good := cr["alice@example.test"]
	if !cache.proven("alice@example.test", "right", good.PasswordHash, time.Now()) {
		t.Error("the login is not found in the cache")
	}
	if _, err := svc.Password(ctx, c, "alice@example.test", "wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("a wrong password: %v", err)
	}
	if _, err := svc.Password(ctx, c, "nobody@example.test", "right"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("an unknown account: %v", err)
	}
	if len(cache.entries) != 1 {
		t.Errorf("failures were cached: %d entries", len(cache.entries))
	}
	// A changed password: the old one no longer logs in, from the cache or not.
	changed := good
	changed.PasswordHash = cheapHash("new password here")
	cr["alice@example.test"] = changed
	if _, err := svc.Password(ctx, c, "alice@example.test", "right"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("the old password after a change: %v", err)
	}
	// An account gone.
	delete(cr, "alice@example.test")
	if _, err := svc.Password(ctx, c, "alice@example.test", "new password here"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("a deleted account: %v", err)
	}
	// Expiry.
	if cache.proven("alice@example.test", "right", good.PasswordHash, time.Now().Add(2*time.Minute)) {
		t.Error("an entry outlived the cache time")
	}
}

// TestHashGate: one client prefix cannot hold every hash slot.
func TestHashGate(t *testing.T) {
	g := newHashGate(2)
	flood, other := netip.MustParsePrefix("192.0.2.0/32"), netip.MustParsePrefix("198.51.100.7/32")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r1, err := g.acquire(ctx, flood)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.acquire(ctx, flood); err == nil {
		t.Fatal("one client took both slots")
	}
	r2, err := g.acquire(context.Background(), other)
	if err != nil {
		t.Fatalf("another client could not get the free slot: %v", err)
	}
	r1()
	r2()
	if len(g.by) != 0 || len(g.slots) != 0 {
		t.Errorf("slots left taken: %v %d", g.by, len(g.slots))
	}
}
