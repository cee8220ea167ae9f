package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
		code  int
		body  string
	}{
		{"alive", failing, "/healthz", 200, "ok\n"},
		{"ready", fine, "/readyz", 200, "ready\n"},
		{"not ready, and the store's error is not shown", failing, "/readyz", 503, "not ready: the store does not answer\n"},
		{"metrics", fine, "/metrics", 200, "# TYPE go_goroutines gauge"},
		{"nothing else", fine, "/", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			Handler(tc.ready).ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) || strings.Contains(w.Body.String(), "secret") {
				t.Errorf("%s: %d %q", tc.path, w.Code, w.Body.String())
			}
		})
	}
}
