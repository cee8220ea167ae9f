package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailroom/internal/dns"
	"mailroom/internal/dns/dnstest"
	"mailroom/internal/store"
)

func TestParse(t *testing.T) {
	p, err := Parse("example.test", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmx: *.backup.example.test\r\nmax_age: 604800\r\nfuture: x\r\n")
	if err != nil || p.Mode != Enforce || len(p.MX) != 2 || p.MaxAge != 7*24*time.Hour {
		t.Fatalf("Parse = %+v, %v", p, err)
	}
	for host, want := range map[string]bool{"mail.example.test": true, "MAIL.example.test.": true, "a.backup.example.test": true,
		"a.b.backup.example.test": false, "backup.example.test": false, "evil.test": false} {
		if p.Matches(host) != want {
			t.Errorf("Matches(%s) = %v", host, !want)
		}
	}
	for name, doc := range map[string]string{
		"no version":           "mode: enforce\nmx: a.test\nmax_age: 10\n",
		"another version":      "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 10\n",
		"an unknown mode":      "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 10\n",
		"enforce without mx":   "version: STSv1\nmode: enforce\nmax_age: 10\n",
		"no max_age":           "version: STSv1\nmode: enforce\nmx: a.test\n",
		"a bad max_age":        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: soon\n",
		"mode twice":           "version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 10\n",
		"a line without a key": "version: STSv1\nmode: enforce\nmx a.test\nmax_age: 10\n",
	} {
		if _, err := Parse("example.test", doc); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if p, err := Parse("x.test", "version: STSv1\nmode: none\nmax_age: 9999999999\n"); err != nil || p.MaxAge != MaxAge {
		t.Errorf("mode none and a max_age beyond a year: %+v, %v", p, err)
	}
}

// policyServer serves HTTPS for mta-sts.remote.test on loopback with a
// certificate the returned pool trusts; handler answers.
func policyServer(t *testing.T, handler http.HandlerFunc) (int, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, DNSNames: []string{"mta-sts.remote.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port, pool
}

func TestFetcher(t *testing.T) {
	var fetches atomic.Int32
	var body atomic.Value
	body.Store("version: STSv1\nmode: enforce\nmx: mx.remote.test\nmax_age: 86400\n")
	port, pool := policyServer(t, func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		switch r.URL.Path {
		case "/.well-known/mta-sts.txt":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte(body.Load().(string)))
		default:
			http.NotFound(w, r)
		}
	})
	zone := dnstest.Start(t, map[string][]string{
		"_mta-sts.remote.test. TXT": {`"v=STSv1; id=20261206"`},
		"mta-sts.remote.test. A":    {"127.0.0.1"},
	})
	r, _ := dns.New(zone.Addr, "")
	f := NewFetcher(r, pool, port)
	now := time.Now()
	f.now = func() time.Time { return now }
	ctx := t.Context()

	p, err := f.Policy(ctx, "remote.test")
	if err != nil || p == nil || p.Mode != Enforce || !p.Matches("mx.remote.test") || p.ID != "20261206" {
		t.Fatalf("Policy = %+v, %v", p, err)
	}
	if p, _ := f.Policy(ctx, "Remote.Test."); p == nil || fetches.Load() != 1 {
		t.Errorf("the same id fetched again (%d fetches)", fetches.Load())
	}
	// A new id: fetched again; a fetch that fails keeps the policy kept.
	zone.Zone.Set("_mta-sts.remote.test.", "TXT", `"v=STSv1; id=2"`)
	now = now.Add(recheck)
	body.Store("version: STSv1\nmode: testing\nmx: mx.remote.test\nmax_age: 86400\n")
	if p, _ := f.Policy(ctx, "remote.test"); p == nil || p.Mode != Testing || fetches.Load() != 2 {
		t.Errorf("a new id: %+v after %d fetches", p, fetches.Load())
	}
	zone.Zone.Set("_mta-sts.remote.test.", "TXT", `"v=STSv1; id=3"`)
	now = now.Add(recheck)
	body.Store("this is not a policy")
	if p, err := f.Policy(ctx, "remote.test"); p == nil || p.Mode != Testing || err == nil {
		t.Errorf("a policy that does not parse: %+v, %v; want the kept one and the error", p, err)
	}
	// Without the TXT record the kept policy stands until it expires.
	zone.Zone.Delete("_mta-sts.remote.test.", "TXT")
	now = now.Add(retryAfterFailure)
	if p, _ := f.Policy(ctx, "remote.test"); p == nil {
		t.Error("the kept policy was dropped when the TXT record went")
	}
	now = now.Add(25 * time.Hour)
	if p, _ := f.Policy(ctx, "remote.test"); p != nil {
		t.Errorf("an expired policy is still in force: %+v", p)
	}
	// A domain without a record has no policy; one whose host does not
	// answer HTTPS gets an error, and no policy.
	if p, err := f.Policy(ctx, "none.test"); p != nil || err != nil {
		t.Errorf("no record: %+v, %v", p, err)
	}
	zone.Zone.Set("_mta-sts.down.test.", "TXT", `"v=STSv1; id=1"`)
	if p, err := f.Policy(ctx, "down.test"); p != nil || err == nil {
		t.Errorf("no policy host: %+v, %v", p, err)
	}
}

func TestFetchRefuses(t *testing.T) {
	for name, handler := range map[string]http.HandlerFunc{
		"a redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.test/", http.StatusFound)
		},
		"not text/plain": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("version: STSv1\n"))
		},
		"a 404": http.NotFound,
		"a huge policy": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("version: STSv1\nmode: enforce\nmax_age: 10\n" + strings.Repeat("mx: a.test\n", MaxPolicySize/10)))
		},
	} {
		port, pool := policyServer(t, handler)
		zone := dnstest.Start(t, map[string][]string{
			"_mta-sts.remote.test. TXT": {`"v=STSv1; id=` + strconv.Itoa(port) + `"`},
			"mta-sts.remote.test. A":    {"127.0.0.1"},
		})
		r, _ := dns.New(zone.Addr, "")
		if p, err := NewFetcher(r, pool, port).Policy(t.Context(), "remote.test"); p != nil || err == nil {
			t.Errorf("%s: %+v, %v; want an error", name, p, err)
		}
	}
}

// FuzzParse: any document parses to a policy that keeps the rules (a
// known mode, mx hosts unless none, max_age within a year) or to an error.
func FuzzParse(f *testing.F) {
	f.Add("version: STSv1\nmode: enforce\nmx: mx.a.test\nmx: *.b.test\nmax_age: 86400\n")
	f.Add("version: STSv1\r\nmode: none\r\nmax_age: 0\r\n")
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := Parse("a.test", doc)
		if err != nil {
			return
		}
		if (p.Mode != Enforce && p.Mode != Testing && p.Mode != None) || (p.Mode != None && len(p.MX) == 0) || p.MaxAge > MaxAge || p.MaxAge < 0 {
			t.Errorf("Parse(%q) = %+v", doc, p)
		}
	})
}

type memKeeper map[string]store.MTASTSPolicy

func (m memKeeper) SaveMTASTSPolicy(_ context.Context, p store.MTASTSPolicy) error {
	m[p.Domain] = p
	return nil
}

func (m memKeeper) MTASTSPolicy(_ context.Context, domain string) (store.MTASTSPolicy, error) {
	p, ok := m[domain]
	if !ok {
		return p, store.ErrNotFound
	}
	return p, nil
}

// TestFetcherKeeps: a policy fetched is saved, and a fetcher started
// afresh (a restart) holds to it while its host is down and until it
// expires.
func TestFetcherKeeps(t *testing.T) {
	port, pool := policyServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("version: STSv1\nmode: enforce\nmx: mx.remote.test\nmax_age: 3600\n"))
	})
	zone := dnstest.Start(t, map[string][]string{
		"_mta-sts.remote.test. TXT": {`"v=STSv1; id=1"`},
		"mta-sts.remote.test. A":    {"127.0.0.1"},
	})
	r, _ := dns.New(zone.Addr, "")
	keeper := memKeeper{}
	f := NewFetcher(r, pool, port)
	f.KeepIn(keeper)
	if p, err := f.Policy(t.Context(), "remote.test"); p == nil || err != nil {
		t.Fatalf("Policy = %+v, %v", p, err)
	}
	if saved := keeper["remote.test"]; saved.ID != "1" || !strings.Contains(saved.Text, "mode: enforce") || saved.Expires.Sub(saved.Fetched) != time.Hour {
		t.Errorf("saved: %+v", saved)
	}
	// After a restart, an attacker removes the TXT record and the policy
	// host: the saved policy still holds.
	zone.Zone.Delete("_mta-sts.remote.test.", "TXT")
	zone.Zone.Delete("mta-sts.remote.test.", "A")
	restarted := NewFetcher(r, pool, port)
	restarted.KeepIn(keeper)
	if p, _ := restarted.Policy(t.Context(), "remote.test"); p == nil || p.Mode != Enforce {
		t.Errorf("after a restart: %+v, want the saved policy", p)
	}
	later := NewFetcher(r, pool, port)
	later.KeepIn(keeper)
	later.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if p, _ := later.Policy(t.Context(), "remote.test"); p != nil {
		t.Errorf("an expired saved policy is in force: %+v", p)
	}
}

// TestOurs: the policy we serve parses as senders read it, its id follows
// its text, and it is served for our domains only.
func TestOurs(t *testing.T) {
	o := Ours{MX: "mx.example.test.", Mode: Enforce, MaxAge: 7 * 24 * time.Hour}
	p, err := Parse("example.test", o.Text())
	if err != nil || p.Mode != Enforce || !p.Matches("mx.example.test") || p.MaxAge != 7*24*time.Hour {
		t.Fatalf("our policy as a sender reads it: %+v, %v", p, err)
	}
	trial := o
	trial.Mode = Testing
	if o.ID() == trial.ID() || !strings.HasPrefix(o.Record(), "v=STSv1; id=") {
		t.Errorf("ids %s and %s; record %q", o.ID(), trial.ID(), o.Record())
	}
	h := Handler(func() Ours { return o }, func(_ context.Context, d string) (bool, error) { return d == "example.test", nil })
	for _, tc := range []struct {
		host, path string
		code       int
	}{
		{"mta-sts.example.test", "/.well-known/mta-sts.txt", 200},
		{"MTA-STS.Example.Test:443", "/.well-known/mta-sts.txt", 200},
		{"mta-sts.other.test", "/.well-known/mta-sts.txt", 404},
		{"mta-sts.example.test", "/", 404},
		{"www.example.test", "/.well-known/mta-sts.txt", 404},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "https://"+tc.host+tc.path, nil)
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || (tc.code == 200 && (rec.Body.String() != o.Text() || rec.Header().Get("Content-Type") != "text/plain")) {
			t.Errorf("%s%s: %d %q", tc.host, tc.path, rec.Code, rec.Body.String())
		}
	}
}
