package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	failing := func(context.Context) error { return errors.New("postgres://user:secret@db: connection refused") }
	fine := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name  string
		ready Ready
		path  string
		from  string
		code  int
		body  string
	}{
		{"alive", failing, "/healthz", "192.0.2.1:1234", 200, "ok\n"},
		{"ready", fine, "/readyz", "192.0.2.1:1234", 200, "ready\n"},
		{"not ready, and the store's error is not shown", failing, "/readyz", "192.0.2.1:1234", 503, "not ready: the store does not answer\n"},
		{"metrics to a scraper", fine, "/metrics", "127.0.0.1:5000", 200, "# TYPE go_goroutines gauge"},
		{"no metrics to others", fine, "/metrics", "192.0.2.1:1234", 403, "metrics_from"},
		{"nothing else", fine, "/", "127.0.0.1:5000", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			r.RemoteAddr = tc.from
			Handler(tc.ready, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}).ServeHTTP(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) || strings.Contains(w.Body.String(), "secret") {
				t.Errorf("%s: %d %q", tc.path, w.Code, w.Body.String())
			}
		})
	}
}
