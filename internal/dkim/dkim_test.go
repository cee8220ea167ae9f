package dkim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailroom/internal/store"
)

type memKeys map[string][]store.DKIMKey

func (m memKeys) DKIMKeysOf(_ context.Context, domain string) ([]store.DKIMKey, error) {
	return m[domain], nil
}

const sampleMsg = "From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hello\r\n" +
	"Date: Sun, 06 Dec 2026 12:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nHello Bob,  \r\nsee you.\r\n\r\n\r\n"

func newKeys(t *testing.T, domain string, now time.Time) []store.DKIMKey {
	t.Helper()
	var ks []store.DKIMKey
	for _, alg := range Algorithms {
		k, err := NewKey(domain, Selector(alg, now, ks), alg, now, now)
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
	}
	return ks
}

// TestSignVerifies: both signatures verify (go-msgauth's verifier reading
// the records Record makes), relaxed/relaxed, From oversigned; a changed
// body or an added From fails them.
func TestSignVerifies(t *testing.T) {
	now := time.Now()
	keys := newKeys(t, "example.test", now)
	records := map[string]string{}
	for _, k := range keys {
		rec, err := Record(k)
		if err != nil {
			t.Fatal(err)
		}
		records[Name(k)] = rec
	}
	s := NewSigner(memKeys{"example.test": keys})
	fields, err := s.Sign(t.Context(), "example.test", strings.NewReader(sampleMsg))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(fields), "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", n, fields)
	}
	for _, want := range []string{"a=ed25519-sha256", "a=rsa-sha256", "c=relaxed/relaxed", "d=example.test", "s=" + keys[0].Selector} {
		if !strings.Contains(string(fields), want) {
			t.Errorf("no %q in\n%s", want, fields)
		}
	}
	lookup := func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, fmt.Errorf("no TXT record at %s", name)
	}
	verify := func(msg string) []*msgdkim.Verification {
		t.Helper()
		vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: lookup})
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	for _, v := range verify(string(fields) + sampleMsg) {
		if v.Err != nil {
			t.Errorf("a signature does not verify: %v", v.Err)
		}
		if from := slices.IndexFunc(v.HeaderKeys, func(k string) bool { return strings.EqualFold(k, "from") }); from != 0 ||
			!slices.ContainsFunc(v.HeaderKeys[1:], func(k string) bool { return strings.EqualFold(k, "from") }) {
			t.Errorf("From is not signed first and oversigned: h=%v", v.HeaderKeys)
		}
	}
	for name, changed := range map[string]string{
		"a changed body":   strings.Replace(sampleMsg, "see you", "see me", 1),
		"a From put above": "From: mallory@evil.test\r\n" + sampleMsg,
		"a second Subject": strings.Replace(sampleMsg, "\r\n\r\n", "\r\nSubject: pay now\r\n\r\n", 1),
	} {
		for _, v := range verify(string(fields) + changed) {
			if v.Err == nil {
				t.Errorf("%s: a signature still verifies", name)
			}
		}
	}
	// Relaxed canonicalization: whitespace changes in transit do not matter.
	for _, v := range verify(string(fields) + strings.Replace(sampleMsg, "Subject: hello", "Subject:   hello ", 1)) {
		if v.Err != nil {
			t.Errorf("relaxed header canonicalization: %v", v.Err)
		}
	}
}

// TestSignerDomain: an author's domain signs with its own keys or its
// nearest parent's; without any, nothing signs.
func TestSignerDomain(t *testing.T) {
	now := time.Now()
	s := NewSigner(memKeys{"example.test": newKeys(t, "example.test", now), "deep.sub.example.test": newKeys(t, "deep.sub.example.test", now)})
	for author, want := range map[string]string{
		"example.test": "example.test", "Mail.Example.Test.": "example.test", "deep.sub.example.test": "deep.sub.example.test",
		"x.deep.sub.example.test": "deep.sub.example.test", "other.test": "", "test": "",
	} {
		if got, err := s.Domain(t.Context(), author); err != nil || got != want {
			t.Errorf("Domain(%q) = %q, %v; want %q", author, got, err, want)
		}
	}
	if _, err := s.Sign(t.Context(), "other.test", strings.NewReader(sampleMsg)); !errors.Is(err, ErrNoKeys) {
		t.Errorf("Sign for a domain without keys: %v, want ErrNoKeys", err)
	}
}

// TestStates: the newest key of each algorithm past its SignFrom signs;
// one not yet is next, older ones old, past RetireAt retired.
func TestStates(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	k := func(sel, alg string, created, from, retire int) store.DKIMKey {
		key := store.DKIMKey{Selector: sel, Algorithm: alg, Created: h(created), SignFrom: h(from)}
		if retire > 0 {
			key.RetireAt = h(retire)
		}
		return key
	}
	keys := []store.DKIMKey{
		k("e1", "ed25519", 0, 0, 100), k("r1", "rsa", 0, 0, 100),
		k("e2", "ed25519", 10, 50, 0), k("r2", "rsa", 10, 50, 0),
	}
	for _, tc := range []struct {
		at   int
		want []State
	}{
		{1, []State{Signing, Signing, Next, Next}},
		{50, []State{Old, Old, Signing, Signing}},
		{100, []State{Retired, Retired, Signing, Signing}},
	} {
		if got := States(keys, h(tc.at)); !slices.Equal(got, tc.want) {
			t.Errorf("at %dh: %v, want %v", tc.at, got, tc.want)
		}
	}
	// Without a newer one past SignFrom, a key past RetireAt does not sign.
	if got := States([]store.DKIMKey{k("e1", "ed25519", 0, 0, 5)}, h(6)); got[0] != Retired {
		t.Errorf("a retired key alone: %v", got)
	}
}

func TestSelector(t *testing.T) {
	now := time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	taken := []store.DKIMKey{{Selector: "mr20261206e"}, {Selector: "mr20261206e-2"}}
	for _, tc := range []struct {
		alg  string
		want string
	}{{"ed25519", "mr20261206e-3"}, {"rsa", "mr20261206r"}} {
		if got := Selector(tc.alg, now, taken); got != tc.want {
			t.Errorf("Selector(%s) = %q, want %q", tc.alg, got, tc.want)
		}
	}
}

func TestRecord(t *testing.T) {
	now := time.Now()
	for _, k := range newKeys(t, "example.test", now) {
		rec, err := Record(k)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(rec, "v=DKIM1; k="+k.Algorithm+"; p=") {
			t.Errorf("record of %s: %q", k.Algorithm, rec)
		}
		zone := ZoneText(rec)
		parts := Split(rec)
		if strings.Join(parts, "") != rec || slices.ContainsFunc(parts, func(p string) bool { return len(p) > 255 }) {
			t.Errorf("Split(%d octets) = %d parts that do not make it up", len(rec), len(parts))
		}
		if k.Algorithm == "rsa" && (len(parts) < 2 || !strings.HasPrefix(zone, `( "v=DKIM1`)) {
			t.Errorf("an RSA key's record in a zone file: %s", zone)
		}
		if k.Algorithm == "ed25519" && zone != `"`+rec+`"` {
			t.Errorf("an ed25519 key's record in a zone file: %s", zone)
		}
	}
	bad := store.DKIMKey{Domain: "example.test", Selector: "s", Algorithm: "rsa", PrivateKey: []byte("nonsense")}
	if _, err := Record(bad); err == nil || !strings.Contains(err.Error(), "selector s of example.test") {
		t.Errorf("a key that does not decode: %v", err)
	}
	ed := newKeys(t, "example.test", now)[0]
	ed.Algorithm = "rsa"
	if _, err := Record(ed); err == nil {
		t.Error("an ed25519 key stored as RSA was published")
	}
}

// BenchmarkSign: what signing costs a message of 10 KiB, both keys.
func BenchmarkSign(b *testing.B) {
	now := time.Now()
	var ks []store.DKIMKey
	for _, alg := range Algorithms {
		k, err := NewKey("example.test", Selector(alg, now, ks), alg, now, now)
		if err != nil {
			b.Fatal(err)
		}
		ks = append(ks, k)
	}
	s := NewSigner(memKeys{"example.test": ks})
	msg := sampleMsg + strings.Repeat("a line of text of some sixty octets, as mail bodies have\r\n", 170)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := s.Sign(context.Background(), "example.test", strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestResign: a message changed after signing is signed anew, our old
// signatures dropped, another domain's kept; a message whose author's
// domain has no keys here is left alone.
func TestResign(t *testing.T) {
	now := time.Now()
	keys := newKeys(t, "example.test", now)
	s := NewSigner(memKeys{"example.test": keys})
	old, err := s.Sign(t.Context(), "example.test", strings.NewReader(sampleMsg))
	if err != nil {
		t.Fatal(err)
	}
	foreign := "DKIM-Signature: v=1; a=rsa-sha256; d=list.test; s=x; h=from; bh=AAAA; b=BBBB\r\n"
	changed := strings.Replace(string(old)+foreign+sampleMsg, "see you", "see=20you", 1)
	var out strings.Builder
	ok, err := s.Resign(t.Context(), strings.NewReader(changed), &out)
	if err != nil || !ok {
		t.Fatalf("Resign = %v, %v", ok, err)
	}
	got := out.String()
	if n := strings.Count(got, "d=example.test"); n != 2 || !strings.Contains(got, "d=list.test") || strings.Contains(got, string(old)) {
		t.Errorf("after Resign: %d signatures of ours, list.test's kept: %v\n%s", n, strings.Contains(got, "d=list.test"), got)
	}
	records := map[string]string{}
	for _, k := range keys {
		rec, _ := Record(k)
		records[Name(k)] = rec
	}
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(got), &msgdkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, errors.New("no record")
	}})
	if err != nil {
		t.Fatal(err)
	}
	passed := 0
	for _, v := range vs {
		if v.Err == nil {
			passed++
		}
	}
	if passed != 2 {
		t.Errorf("%d of our new signatures verify, want 2", passed)
	}
	out.Reset()
	if ok, err := s.Resign(t.Context(), strings.NewReader(strings.Replace(sampleMsg, "alice@example.test", "alice@elsewhere.test", 1)), &out); ok || err != nil || out.Len() != 0 {
		t.Errorf("a sampleMsg of a domain without keys: %v, %v, %d octets written", ok, err, out.Len())
	}
}
