// Package httpapi is the JSON API under /api/v1 on the HTTP listener:
// sending mail (a JSON message, a raw one, batches; with Idempotency-Key)
// through the same transaction as SMTP submission, reading the message
// log, events and statistics, and managing the queue and the suppression
// list. Clients authenticate with API keys (package apikey) whose scopes
// say what they may do; every answer is JSON, errors as
// {"error": {"code": "...", "message": "..."}}. openapi.json describes it.
package httpapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"mailroom/internal/apikey"
	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
	"mailroom/internal/tracking"
)

// Config is what the API reads of the server's configuration.
type Config struct {
	Hostname       string
	MaxMessageSize int64
	// RatePerMinute is a key's rate when the key sets none.
	RatePerMinute int
	// SpoolDir is where a large message waits while it is taken.
	SpoolDir string
	// MaxRecipients bounds a message's recipients, as SMTP's RCPT does.
	MaxRecipients int
	// HideClientIP leaves the client's address out of the Received field,
	// as for SMTP submission.
	HideClientIP bool
	// Tracking of HTML messages (package tracking): through TrackingBase,
	// for the senders' domains and streams listed.
	TrackingBase               string
	TrackOpens, TrackClicks    bool
	TrackDomains, TrackStreams []string
}

// Deps is what the API works with.
type Deps struct {
	Store store.Store
	// Backend takes messages as SMTP submission does (sender rights,
	// sending limits, DKIM signing, the queue).
	Backend smtpserver.Backend
	Config  func() Config
	Log     *slog.Logger
	// Tracking signs the links of tracked messages (nil: none tracked).
	Tracking *tracking.Signer
}

// route is one operation: the mux pattern, the scope it needs ("" for
// none), and the handler. openapi.json describes exactly these (a test
// checks).
type route struct {
	method, path, scope string
	handle              func(a *api, w http.ResponseWriter, r *http.Request, k *caller)
}

var routes = []route{
	{"POST", "/api/v1/messages", store.ScopeSend, (*api).send},
	{"POST", "/api/v1/messages/batch", store.ScopeSend, (*api).sendBatch},
	{"POST", "/api/v1/messages/raw", store.ScopeSend, (*api).sendRaw},
	{"GET", "/api/v1/messages", store.ScopeRead, (*api).listMessages},
	{"GET", "/api/v1/messages/{id}", store.ScopeRead, (*api).getMessage},
	{"GET", "/api/v1/events", store.ScopeRead, (*api).listEvents},
	{"GET", "/api/v1/stats", store.ScopeRead, (*api).stats},
	{"GET", "/api/v1/queue", store.ScopeAdmin, (*api).listQueue},
	{"POST", "/api/v1/queue/{id}/{action}", store.ScopeAdmin, (*api).queueAction},
	{"DELETE", "/api/v1/queue/{id}", store.ScopeAdmin, (*api).deleteQueued},
	{"GET", "/api/v1/suppressions", store.ScopeAdmin, (*api).listSuppressions},
	{"POST", "/api/v1/suppressions", store.ScopeAdmin, (*api).addSuppression},
	{"DELETE", "/api/v1/suppressions/{address}", store.ScopeAdmin, (*api).deleteSuppression},
	{"GET", "/api/v1/webhooks", store.ScopeRead, (*api).listWebhooks},
	{"POST", "/api/v1/webhooks", store.ScopeWebhooks, (*api).addWebhook},
	{"DELETE", "/api/v1/webhooks/{id}", store.ScopeWebhooks, (*api).deleteWebhook},
	{"POST", "/api/v1/webhooks/{id}/rotate", store.ScopeWebhooks, (*api).rotateWebhook},
	{"GET", "/api/v1/webhooks/{id}/deliveries", store.ScopeRead, (*api).hookDeliveries},
	{"GET", "/api/v1/webhooks/{id}/deliveries/{delivery}/attempts", store.ScopeRead, (*api).hookAttempts},
	{"POST", "/api/v1/webhooks/{id}/deliveries/{delivery}/retry", store.ScopeWebhooks, (*api).retryDelivery},
}

//go:embed openapi.json
var openAPI []byte

type api struct {
	Deps
	limits  sync.Map // key ID -> *keyLimit
	failing *failures
	// sending bounds the sending requests under way (each holds its
	// messages in memory): more wait for a place.
	sending chan struct{}
}

// keyLimit is a key's token bucket at the rate it was made with.
type keyLimit struct {
	perMinute int
	*rate.Limiter
}

// Register mounts the API on mux.
func Register(mux *http.ServeMux, d Deps) {
	a := &api{Deps: d, failing: newFailures(), sending: make(chan struct{}, 4*runtime.GOMAXPROCS(0))}
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.path, a.authenticated(rt))
	}
	// Anything else under /api/ is a JSON 404, not the mux's text.
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "No such endpoint: see /api/v1/openapi.json for the API's paths")
	})
}

// caller is who made a request: the key, and the domains it sees (nil:
// all).
type caller struct {
	key     store.APIKey
	domains []string
}

// authenticated checks the key, its scope and its rate, then runs the
// route (under the request's context: a handler that must finish what it
// began detaches from it).
func (a *api) authenticated(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r)
		if a.failing.blocked(ip) {
			w.Header().Set("Retry-After", "60")
			writeError(w, http.StatusTooManyRequests, "too_many_failures", "Too many requests with a wrong API key from this address: wait a minute")
			return
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailroom"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", `Send an API key as "Authorization: Bearer KEY" (make one with 'mailroom apikey add')`)
			return
		}
		token = strings.TrimSpace(token)
		invalid := func(msg string) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailroom", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid_key", msg)
		}
		if err := apikey.Check(token); err != nil {
			a.failing.add(ip)
			invalid(err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		k, err := a.Store.APIKeyByHash(ctx, apikey.Hash(token), time.Now())
		if errors.Is(err, store.ErrNotFound) {
			a.failing.add(ip)
			invalid("This API key does not exist or was revoked")
			return
		}
		if err != nil {
			a.internal(w, "reading the API key", err)
			return
		}
		c, err := a.callerOf(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			invalid("The owner of this API key (" + k.Owner + ") no longer exists: make a new key")
			return
		}
		if err != nil {
			a.internal(w, "reading the API key's owner", err)
			return
		}
		// Admin keys are the server's (apikey.CheckKey), checked again here
		// for a key written by other means.
		if rt.scope != "" && (!apikey.Has(k, rt.scope) || rt.scope == store.ScopeAdmin && k.Owner != "*" ||
			rt.scope == store.ScopeWebhooks && k.Owner != "*" && !strings.HasPrefix(k.Owner, "@")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailroom", error="insufficient_scope", scope="`+rt.scope+`"`)
			writeError(w, http.StatusForbidden, "insufficient_scope", "This API key lacks the "+rt.scope+" scope this request needs (it has: "+strings.Join(k.Scopes, ", ")+")")
			return
		}
		if wait, ok := a.allow(k); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			writeError(w, http.StatusTooManyRequests, "rate_limited", "This API key made more requests than its rate allows: slow down and try again")
			return
		}
		rt.handle(a, w, r, c)
	}
}

// callerOf resolves a key's owner: a user (who must still exist) sees
// their domain, a domain its own, the server every one.
func (a *api) callerOf(ctx context.Context, k store.APIKey) (*caller, error) {
	switch {
	case k.Owner == "*":
		return &caller{key: k}, nil
	case strings.HasPrefix(k.Owner, "@"):
		d, err := a.Store.Domain(ctx, k.Owner[1:])
		if err != nil {
			return nil, err
		}
		return &caller{key: k, domains: []string{d.Name}}, nil
	}
	u, err := a.Store.User(ctx, k.Owner)
	if err != nil {
		return nil, err
	}
	_, domain, _ := strings.Cut(u.Address, "@")
	return &caller{key: k, domains: []string{domain}}, nil
}

// allow takes a token of the key's bucket: its rate per minute, with a
// burst of a tenth of a minute's (at least 10); else how long until one.
func (a *api) allow(k store.APIKey) (time.Duration, bool) {
	perMinute := k.RatePerMinute
	if perMinute <= 0 {
		perMinute = a.Config().RatePerMinute
	}
	if perMinute <= 0 {
		return 0, true
	}
	v, _ := a.limits.Load(k.ID)
	l, _ := v.(*keyLimit)
	if l == nil || l.perMinute != perMinute {
		l = &keyLimit{perMinute, rate.NewLimiter(rate.Limit(float64(perMinute)/60), max(10, perMinute/10))}
		a.limits.Store(k.ID, l)
	}
	r := l.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return d, false
	}
	return 0, true
}

// failures counts requests with a wrong key per client address, so that
// guessing costs the store nothing past a few: 20 a minute, then 429.
type failures struct {
	mu   sync.Mutex
	seen map[netip.Addr]*rate.Limiter
}

func newFailures() *failures { return &failures{seen: map[netip.Addr]*rate.Limiter{}} }

func (f *failures) blocked(ip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.seen[ip]
	return l != nil && l.Tokens() < 1
}

func (f *failures) add(ip netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) > 10000 { // bounded: start over rather than grow
		clear(f.seen)
	}
	l := f.seen[ip]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(20.0/60), 20)
		f.seen[ip] = l
	}
	l.Allow()
}

func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// apiError is the body of every error.
type apiError struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Details: what was wrong with each part (a recipient, a message of a
	// batch), when there is more than one thing to say.
	Details any `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{errorBody{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v)
}

// internal answers 503 for a failure of ours, logged and not shown: the
// client may try again.
func (a *api) internal(w http.ResponseWriter, what string, err error) {
	a.Log.Error("HTTP API: "+what, "err", err)
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "temporary_failure", "The server could not do this now (the store did not answer): try again shortly")
}
