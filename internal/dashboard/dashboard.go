// Package dashboard is the web dashboard on the HTTP listener: pages
// rendered on the server (html/template, everything embedded, no build
// step and no CDN), a few lines of script for live figures over
// Server-Sent Events, and charts drawn as SVG on the server. Users sign in
// with their mail password (the same login limits as every protocol);
// admins see every domain and manage the queue, users see their own
// domain. Sessions are kept in the store (any node serves them), their
// cookie __Host-, Secure, HttpOnly, SameSite=Strict; every form carries
// the session's CSRF token, and cross-origin posts are refused.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"mailroom/internal/auth"
	"mailroom/internal/dnscheck"
	"mailroom/internal/listener"
	"mailroom/internal/store"
)

//go:embed templates/*.html static/*
var files embed.FS

// Session lifetimes: idle, and in all.
const (
	idleTimeout = 2 * time.Hour
	maxLifetime = 12 * time.Hour
	cookieName  = "__Host-mailroom"
)

// Logins checks passwords within the login limits.
type Logins interface {
	Password(ctx context.Context, c auth.Client, user, pw string) (string, error)
}

// DomainChecker checks a domain's DNS records against what the server
// expects (dnscheck.Domain, through the server's resolver).
type DomainChecker func(ctx context.Context, domain string) ([]dnscheck.Finding, error)

// Deps is what the dashboard works with.
type Deps struct {
	Store       store.Store
	Logins      Logins
	Log         *slog.Logger
	CheckDomain DomainChecker
	// Prefixes group client addresses for the login limits ([clients]).
	Prefixes listener.Prefixes
}

type dash struct {
	Deps
	pages map[string]*template.Template
}

// Register mounts the dashboard on mux (/, /login, /logout, /messages,
// /queue, /live, /chart.svg, /static/).
func Register(mux *http.ServeMux, d Deps) {
	h := &dash{Deps: d, pages: parse()}
	static, _ := fs.Sub(files, "static")
	cop := http.NewCrossOriginProtection() // Sec-Fetch-Site and Origin: no cross-origin POST, the login's included
	guard := func(f http.HandlerFunc) http.Handler { return cop.Handler(headers(f)) }
	mux.Handle("GET /static/", headers(http.StripPrefix("/static/", http.FileServerFS(static)).ServeHTTP))
	mux.Handle("GET /login", guard(h.loginPage))
	mux.Handle("POST /login", guard(h.login))
	mux.Handle("POST /logout", guard(h.signedIn(h.logout)))
	mux.Handle("GET /{$}", guard(h.signedIn(h.overview)))
	mux.Handle("GET /chart.svg", guard(h.signedIn(h.chart)))
	mux.Handle("GET /live", guard(h.signedIn(h.live)))
	mux.Handle("GET /messages", guard(h.signedIn(h.messages)))
	mux.Handle("GET /messages/{id}", guard(h.signedIn(h.message)))
	mux.Handle("GET /queue", guard(h.signedIn(h.adminOnly(h.queue))))
	mux.Handle("POST /queue/{id}/{action}", guard(h.signedIn(h.adminOnly(h.queueAction))))
	mux.Handle("GET /suppressions", guard(h.signedIn(h.adminOnly(h.suppressions))))
	mux.Handle("POST /suppressions/lift", guard(h.signedIn(h.adminOnly(h.lift))))
	mux.Handle("GET /domains", guard(h.signedIn(h.adminOnly(h.domains))))
	mux.Handle("POST /domains/{domain}/check", guard(h.signedIn(h.adminOnly(h.checkDNS))))
	mux.Handle("GET /users", guard(h.signedIn(h.adminOnly(h.users))))
	mux.Handle("GET /keys", guard(h.signedIn(h.adminOnly(h.keys))))
	mux.Handle("POST /keys/{id}/revoke", guard(h.signedIn(h.adminOnly(h.revoke))))
	mux.Handle("GET /webhooks", guard(h.signedIn(h.adminOnly(h.webhooks))))
}

// headers are every page's: a strict Content-Security-Policy (own
// scripts, styles and images only; no framing), no sniffing, no referrer
// beyond the origin.
func headers(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Strict-Transport-Security", "max-age=31536000") // the listener is always TLS
		f(w, r)
	}
}

// viewer is who is signed in, and what they see.
type viewer struct {
	User    string
	Admin   bool
	Domains []string // nil: every domain (admins)
	CSRF    string
	hash    string
}

type ctxKey struct{}

func viewerOf(r *http.Request) *viewer { return r.Context().Value(ctxKey{}).(*viewer) }

// signedIn runs f for a valid session, else sends the browser to /login.
func (h *dash) signedIn(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h.session(r)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				h.Log.Warn("dashboard: reading a session", "err", err)
			}
			if r.Method == http.MethodGet && r.URL.Path != "/live" && r.URL.Path != "/chart.svg" {
				http.Redirect(w, r, "/login?next="+urlQuery(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "Sign in first.", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(v.CSRF)) != 1 {
			http.Error(w, "This form is out of date (its security token does not match the session): reload the page and try again.", http.StatusForbidden)
			return
		}
		f(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, v)))
	}
}

func (h *dash) adminOnly(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !viewerOf(r).Admin {
			http.Error(w, "This page is for administrators ('mailroom user set ADDRESS --admin').", http.StatusForbidden)
			return
		}
		f(w, r)
	}
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session reads the request's session: it must exist, be neither idle too
// long nor too old, and its user still exist.
func (h *dash) session(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || len(c.Value) > 100 {
		return nil, store.ErrNotFound
	}
	hash := tokenHash(c.Value)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s, err := h.Store.Session(ctx, hash)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if now.Sub(s.LastSeen) > idleTimeout || now.Sub(s.Created) > maxLifetime {
		h.Store.DeleteSession(ctx, hash)
		return nil, store.ErrNotFound
	}
	u, err := h.Store.User(ctx, s.User)
	if err != nil {
		return nil, err
	}
	if now.Sub(s.LastSeen) > time.Minute {
		h.Store.TouchSession(ctx, hash, now)
	}
	v := &viewer{User: u.Address, Admin: u.Settings.Admin, CSRF: s.CSRF, hash: hash}
	if !v.Admin {
		_, d, _ := strings.Cut(u.Address, "@")
		v.Domains = []string{d}
	}
	return v, nil
}

func (h *dash) loginPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, "login", map[string]any{"Next": safeNext(r.URL.Query().Get("next"))}, http.StatusOK)
}

// login checks the address and password through the login limits and
// starts a session.
func (h *dash) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	user, pw := strings.TrimSpace(r.PostFormValue("address")), r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	ip := ap.Addr().Unmap()
	client := auth.Client{Addr: ip, Prefix: h.Prefixes.Client(ip), TLS: r.TLS, Protocol: "web", MainOnly: true}
	login, err := h.Logins.Password(r.Context(), client, user, pw)
	if err != nil {
		msg := "The address or the password is wrong (the dashboard takes your main password, not an app password)."
		switch {
		case errors.Is(err, auth.ErrTooWeak):
			msg = "This account signs in with SCRAM or app passwords only, which the dashboard does not take: ask an administrator."
		case !errors.Is(err, auth.ErrBadCredentials):
			msg = "Signing in is not possible now (too many attempts, or the server is busy): wait a few minutes."
		}
		h.render(w, r, "login", map[string]any{"Error": msg, "Address": user, "Next": next}, http.StatusUnauthorized)
		return
	}
	token := randomToken()
	now := time.Now()
	if err := h.Store.AddSession(r.Context(), tokenHash(token), store.Session{User: login, CSRF: randomToken(), Created: now, LastSeen: now}); err != nil {
		h.Log.Error("dashboard: starting a session", "err", err)
		http.Error(w, "The server could not sign you in now: try again shortly.", http.StatusServiceUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: token, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(maxLifetime / time.Second)})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *dash) logout(w http.ResponseWriter, r *http.Request) {
	h.Store.DeleteSession(r.Context(), viewerOf(r).hash)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps a redirect after signing in on this site: a path, with
// no control characters or backslashes (a browser drops a tab in
// "/\t/evil.example" and reads "//evil.example"), no scheme and no host.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || u.Scheme != "" || u.Host != "" ||
		strings.ContainsFunc(next, func(r rune) bool { return r < 0x21 || r == 0x7f || r == '\\' }) {
		return "/"
	}
	return next
}

func urlQuery(s string) string { return template.URLQueryEscaper(s) }
