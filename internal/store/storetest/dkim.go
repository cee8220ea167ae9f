package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"mailroom/internal/store"
)

func dkimTests() []test {
	return []test{
		{"DKIM keys are kept per domain, oldest first, retired and deleted one by one, and go with their domain", testDKIMKeys},
		{"DMARC reports are kept once per reporter and ID, read back by domain and period, the newest first", testDMARCReports},
		{"MTA-STS policies are kept per domain, the last saved in place of the one before", testMTASTSPolicies},
		{"a shared secret is made once, the same for every caller, one per name", testSharedSecrets},
		{"report tallies add up per kind, period, domain and key, and go per period and domain", testTallies},
	}
}

func testTallies(t *testing.T, s store.Store) {
	ctx := t.Context()
	day := func(n int) time.Time { return time.Unix(1_800_000_000+int64(n)*86400, 0) }
	add := func(ts ...store.Tally) {
		t.Helper()
		if err := s.AddTallies(ctx, ts); err != nil {
			t.Fatal(err)
		}
	}
	add(store.Tally{Kind: store.TallyTLSRPT, Period: day(0), Domain: "a.example", Key: "ok", Count: 2},
		store.Tally{Kind: store.TallyTLSRPT, Period: day(0), Domain: "a.example", Key: "fail", Count: 1},
		store.Tally{Kind: store.TallyTLSRPT, Period: day(0), Domain: "b.example", Key: "ok", Count: 1},
		store.Tally{Kind: store.TallyTLSRPT, Period: day(1), Domain: "a.example", Key: "ok", Count: 7},
		store.Tally{Kind: store.TallyDMARC, Period: day(0), Domain: "a.example", Key: "ok", Count: 5})
	add(store.Tally{Kind: store.TallyTLSRPT, Period: day(0), Domain: "a.example", Key: "ok", Count: 3}) // adds up
	got := func(kind string, before time.Time, limit ...int) []string {
		t.Helper()
		ts, err := s.TalliesOf(ctx, kind, before, append(limit, 0)[0])
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range ts {
			out = append(out, fmt.Sprintf("%d %s %s %d", x.Period.Sub(day(0))/(24*time.Hour), x.Domain, x.Key, x.Count))
		}
		return out
	}
	if g, want := got(store.TallyTLSRPT, day(1)), []string{"0 a.example fail 1", "0 a.example ok 5", "0 b.example ok 1"}; !slices.Equal(g, want) {
		t.Errorf("TalliesOf(before day 1) = %q, want %q", g, want)
	}
	if g, want := got(store.TallyTLSRPT, day(1), 1), []string{"0 a.example ok 5", "0 b.example ok 1"}; !slices.Equal(g, want) {
		t.Errorf("TalliesOf(before day 1, 1 row per domain) = %q, want the largest count of each: %q", g, want)
	}
	if g := got(store.TallyDMARC, day(9)); !slices.Equal(g, []string{"0 a.example ok 5"}) {
		t.Errorf("DMARC tallies = %q", g)
	}
	if err := s.DeleteTallies(ctx, store.TallyTLSRPT, day(0), "a.example"); err != nil {
		t.Fatal(err)
	}
	if g, want := got(store.TallyTLSRPT, day(9)), []string{"0 b.example ok 1", "1 a.example ok 7"}; !slices.Equal(g, want) {
		t.Errorf("after deleting a.example's day 0: %q, want %q", g, want)
	}
	if err := s.DeleteTallies(ctx, store.TallyTLSRPT, day(0), ""); err != nil {
		t.Fatal(err)
	}
	if g, want := got(store.TallyTLSRPT, day(9)), []string{"1 a.example ok 7"}; !slices.Equal(g, want) {
		t.Errorf("after deleting day 0: %q, want %q", g, want)
	}
	if g := got(store.TallyDMARC, day(9)); len(g) != 1 {
		t.Errorf("deleting TLS-RPT tallies touched the DMARC ones: %q", g)
	}
}

func testDKIMKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	addDomain(t, s, "b.example")
	base := time.Unix(1_800_000_000, 0)
	key := func(domain, selector, alg string, age int) store.DKIMKey {
		return store.DKIMKey{Domain: domain, Selector: selector, Algorithm: alg, PrivateKey: []byte("secret of " + selector),
			Created: base.Add(time.Duration(age) * time.Hour), SignFrom: base.Add(time.Duration(age+1) * time.Hour)}
	}
	for _, k := range []store.DKIMKey{
		key("a.example", "new-ed", store.DKIMEd25519, 10),
		key("a.example", "old-ed", store.DKIMEd25519, 0),
		key("a.example", "old-rsa", store.DKIMRSA, 0),
		key("b.example", "new-ed", store.DKIMEd25519, 5), // a selector is per domain
	} {
		if err := s.AddDKIMKey(ctx, k); err != nil {
			t.Fatalf("AddDKIMKey(%s %s): %v", k.Domain, k.Selector, err)
		}
	}
	if err := s.AddDKIMKey(ctx, key("a.example", "old-ed", store.DKIMRSA, 20)); !errors.Is(err, store.ErrExists) {
		t.Errorf("a selector the domain has already: %v, want ErrExists", err)
	}
	if err := s.AddDKIMKey(ctx, key("nowhere.example", "s", store.DKIMRSA, 0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a key of no domain: %v, want ErrNotFound", err)
	}
	names := func(domain string) []string {
		t.Helper()
		ks, err := s.DKIMKeysOf(ctx, domain)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range ks {
			out = append(out, fmt.Sprintf("%s %s %s %s %d %d %d", k.Domain, k.Selector, k.Algorithm, k.PrivateKey,
				k.Created.Sub(base)/time.Hour, k.SignFrom.Sub(base)/time.Hour, max(0, k.RetireAt.Sub(base)/time.Hour)))
		}
		return out
	}
	want := []string{"a.example old-ed ed25519 secret of old-ed 0 1 0", "a.example old-rsa rsa secret of old-rsa 0 1 0",
		"a.example new-ed ed25519 secret of new-ed 10 11 0"}
	if got := names("a.example"); !slices.Equal(got, want) {
		t.Errorf("DKIMKeysOf(a.example) = %q, want %q", got, want)
	}
	if got := names(""); len(got) != 4 || got[3] != "b.example new-ed ed25519 secret of new-ed 5 6 0" {
		t.Errorf("DKIMKeysOf(\"\") = %q, want a.example's three, then b.example's", got)
	}
	if err := s.RetireDKIMKey(ctx, "a.example", "old-ed", base.Add(30*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := names("a.example"); got[0] != "a.example old-ed ed25519 secret of old-ed 0 1 30" {
		t.Errorf("after RetireDKIMKey: %q", got[0])
	}
	if err := s.RetireDKIMKey(ctx, "a.example", "none", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RetireDKIMKey of no such key: %v, want ErrNotFound", err)
	}
	if err := s.DeleteDKIMKey(ctx, "a.example", "old-ed"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDKIMKey(ctx, "a.example", "old-ed"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteDKIMKey twice: %v, want ErrNotFound", err)
	}
	if got := names("a.example"); len(got) != 2 {
		t.Errorf("after DeleteDKIMKey: %q", got)
	}
	if err := s.DeleteDomain(ctx, "b.example"); err != nil {
		t.Fatal(err)
	}
	addDomain(t, s, "b.example")
	if got := names("b.example"); len(got) != 0 {
		t.Errorf("a domain deleted and added again has the old one's keys: %q", got)
	}
}

func testDMARCReports(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := time.Unix(1_800_000_000, 0)
	report := func(org, id, domain string, day int) store.DMARCReport {
		return store.DMARCReport{Received: base, Org: org, Email: "dmarc@" + org, ReportID: id, Domain: domain, Policy: "quarantine",
			Begin: base.Add(time.Duration(day) * 24 * time.Hour), End: base.Add(time.Duration(day+1) * 24 * time.Hour),
			Rows: []store.DMARCRow{{SourceIP: "192.0.2.1", Count: 3, Disposition: "none", DKIM: "pass", SPF: "fail", HeaderFrom: domain},
				{SourceIP: "198.51.100.9", Count: 2, Disposition: "quarantine", DKIM: "fail", SPF: "fail", HeaderFrom: domain}}}
	}
	for _, r := range []store.DMARCReport{report("google.com", "1", "a.example", 0), report("outlook.com", "1", "a.example", 1), report("google.com", "2", "b.example", 2)} {
		if err := s.AddDMARCReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddDMARCReport(ctx, report("google.com", "1", "a.example", 5)); !errors.Is(err, store.ErrExists) {
		t.Errorf("a report sent again: %v, want ErrExists", err)
	}
	got, err := s.DMARCReportsOf(ctx, "a.example", time.Time{})
	if err != nil || len(got) != 2 || got[0].Org != "outlook.com" || got[1].Org != "google.com" {
		t.Fatalf("DMARCReportsOf(a.example) = %+v, %v; want outlook.com's, then google.com's", got, err)
	}
	if total, passed := got[0].Messages(); total != 5 || passed != 3 || got[0].Rows[1].SourceIP != "198.51.100.9" || !got[0].End.Equal(base.Add(48*time.Hour)) {
		t.Errorf("a report read back: %+v (%d messages, %d passed)", got[0], total, passed)
	}
	if got, _ := s.DMARCReportsOf(ctx, "", base.Add(49*time.Hour)); len(got) != 1 || got[0].Domain != "b.example" {
		t.Errorf("reports of every domain ending after a time: %+v", got)
	}
}

func testMTASTSPolicies(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.MTASTSPolicy(ctx, "remote.example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a policy never saved: %v, want ErrNotFound", err)
	}
	base := time.Unix(1_800_000_000, 0)
	for _, p := range []store.MTASTSPolicy{
		{Domain: "remote.example", ID: "1", Text: "version: STSv1\nmode: testing\n", Fetched: base, Expires: base.Add(time.Hour)},
		{Domain: "remote.example", ID: "2", Text: "version: STSv1\nmode: enforce\n", Fetched: base.Add(time.Minute), Expires: base.Add(2 * time.Hour)},
		{Domain: "other.example", ID: "9", Text: "other", Fetched: base, Expires: base},
	} {
		if err := s.SaveMTASTSPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.MTASTSPolicy(ctx, "remote.example")
	if err != nil || p.ID != "2" || p.Text != "version: STSv1\nmode: enforce\n" || !p.Fetched.Equal(base.Add(time.Minute)) || !p.Expires.Equal(base.Add(2*time.Hour)) {
		t.Errorf("the policy saved last: %+v, %v", p, err)
	}
}

func testSharedSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, err := s.Secret(ctx, "srs", 32)
	if err != nil || len(a) != 32 {
		t.Fatalf("Secret = %d octets, %v", len(a), err)
	}
	again, err := s.Secret(ctx, "srs", 16)
	if err != nil || string(again) != string(a) {
		t.Errorf("asked again, the secret changed (%v)", err)
	}
	other, err := s.Secret(ctx, "other", 32)
	if err != nil || string(other) == string(a) {
		t.Errorf("two names share a secret (%v)", err)
	}
}
