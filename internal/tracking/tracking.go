// Package tracking counts opens and clicks of HTML mail sent through the
// API, when the sender's domain or the message's stream asks for it (off
// by default): a 1×1 image at the end of the HTML, and links rewritten to
// go through the HTTP listener. Each URL carries a signed token naming the
// message, the recipient (when the message has one) and, for a click, the
// link itself: nothing is stored per link, and only links the server wrote
// can redirect (no open redirect). Plain-text parts are left alone.
//
// What it costs the recipients' privacy (their mail client fetches the
// image, and each click passes through this server) is the sender's to
// weigh; opens are an estimate (clients that block images never count,
// privacy proxies that fetch every image count every message).
package tracking

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"mailroom/internal/store"
)

// Token is what a tracking URL says.
type Token struct {
	Kind      string `json:"k"` // "o" (open) or "c" (click)
	QueueID   string `json:"q"`
	Recipient string `json:"r,omitempty"`
	Domain    string `json:"d"`
	URL       string `json:"u,omitempty"` // a click's destination
}

// Signer makes and checks tokens with the server's tracking secret.
type Signer struct{ key []byte }

// NewSigner returns a signer with key (store.SharedSecrets "tracking").
func NewSigner(key []byte) *Signer { return &Signer{key} }

var enc = base64.RawURLEncoding

func (s *Signer) mac(b []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// Sign returns a token's text: base64url of its JSON, ".", and a MAC.
func (s *Signer) Sign(t Token) string {
	b, _ := json.Marshal(t)
	return enc.EncodeToString(b) + "." + enc.EncodeToString(s.mac(b))
}

// ErrToken is a token that is malformed or not ours.
var ErrToken = errors.New("not a tracking link of this server")

// Verify reads a token's text.
func (s *Signer) Verify(text string) (Token, error) {
	var t Token
	body, sig, ok := strings.Cut(text, ".")
	if !ok || len(text) > 8192 {
		return t, ErrToken
	}
	b, err1 := enc.DecodeString(body)
	m, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(m, s.mac(b)) {
		return t, ErrToken
	}
	if err := json.Unmarshal(b, &t); err != nil || (t.Kind != "o" && t.Kind != "c") || t.Kind == "c" && !isWebURL(t.URL) {
		return t, ErrToken
	}
	return t, nil
}

func isWebURL(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://")
}

// href finds links in HTML: the attribute (a whole word: not data-href)
// with its quote and value.
var href = regexp.MustCompile(`(?i)(<a\s(?:[^>]*?\s)?href\s*=\s*)("([^"]*)"|'([^']*)')`)

// bodyEnd finds the end of the HTML's body, any case.
var bodyEnd = regexp.MustCompile(`(?i)</body>`)

// maxLink is the longest link rewritten: a longer one would make a token
// past what Verify reads, and is left as it is.
const maxLink = 2048

// Rewrite returns html with its http(s) links going through base (the
// HTTP listener's public URL) when clicks, and an image at its end (before
// </body> when there is one) when opens. mailto:, anchors and other
// schemes are left alone.
func (s *Signer) Rewrite(htmlText, base string, t Token, opens, clicks bool) string {
	base = html.EscapeString(strings.TrimSuffix(base, "/"))
	if clicks {
		htmlText = href.ReplaceAllStringFunc(htmlText, func(m string) string {
			sub := href.FindStringSubmatch(m)
			raw := sub[3] + sub[4]
			target := html.UnescapeString(raw)
			if !isWebURL(strings.TrimSpace(target)) || len(target) > maxLink {
				return m
			}
			c := t
			c.Kind, c.URL = "c", strings.TrimSpace(target)
			return sub[1] + `"` + base + "/t/c/" + s.Sign(c) + `"`
		})
	}
	if opens {
		o := t
		o.Kind = "o"
		img := `<img src="` + base + "/t/o/" + s.Sign(o) + `" width="1" height="1" alt="" style="display:none">`
		if ends := bodyEnd.FindAllStringIndex(htmlText, -1); len(ends) > 0 {
			i := ends[len(ends)-1][0]
			htmlText = htmlText[:i] + img + htmlText[i:]
		} else {
			htmlText += img
		}
	}
	return htmlText
}

// Events is where opens and clicks are recorded.
type Events interface {
	AddEvents(ctx context.Context, events []store.Event) error
}

// pixel is a transparent 1×1 GIF.
var pixel = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// Handler serves /t/o/TOKEN (the image) and /t/c/TOKEN (a redirect to the
// link), recording an opened or clicked event; each client address at most
// ten a second (a flood of fetches fills no table).
type Handler struct {
	signer *Signer
	events Events
	log    *slog.Logger

	mu      sync.Mutex
	clients map[netip.Prefix]*rate.Limiter
	seen    map[[32]byte]time.Time // (token, client) recorded in the past hour
}

// NewHandler returns the handler.
func NewHandler(signer *Signer, events Events, log *slog.Logger) *Handler {
	return &Handler{signer: signer, events: events, log: log, clients: map[netip.Prefix]*rate.Limiter{}, seen: map[[32]byte]time.Time{}}
}

// Register mounts the handler on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /t/o/{token}", h.serve)
	mux.HandleFunc("GET /t/c/{token}", h.serve)
}

// record says whether a fetch is to be recorded: its client (an IPv4
// address, an IPv6 /64) within ten a second, and not the same token from
// the same client within the hour (a client that fetches an image again,
// a link clicked twice: one event). Both maps are bounded: past 10,000
// entries they start over.
func (h *Handler) record(r *http.Request, token string) bool {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	pfx, _ := ip.Prefix(bits)
	key := sha256.Sum256([]byte(pfx.String() + " " + token))
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) > 10000 {
		clear(h.clients)
	}
	if len(h.seen) > 10000 {
		clear(h.seen)
	}
	if t, ok := h.seen[key]; ok && now.Sub(t) < time.Hour {
		return false
	}
	l := h.clients[pfx]
	if l == nil {
		l = rate.NewLimiter(10, 20)
		h.clients[pfx] = l
	}
	if !l.Allow() {
		return false
	}
	h.seen[key] = now
	return true
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	t, err := h.signer.Verify(r.PathValue("token"))
	if err != nil || "/t/"+t.Kind+"/" != r.URL.Path[:5] {
		http.Error(w, "Not a link of this server.", http.StatusNotFound)
		return
	}
	if h.record(r, r.PathValue("token")) {
		ev := store.Event{Kind: store.EventOpened, QueueID: t.QueueID, Recipient: t.Recipient, Domain: t.Domain}
		if t.Kind == "c" {
			ev.Kind, ev.Detail = store.EventClicked, t.URL
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		if err := h.events.AddEvents(ctx, []store.Event{ev}); err != nil {
			h.log.Warn("recording a tracking event", "kind", ev.Kind, "queue_id", t.QueueID, "err", err)
		}
		cancel()
	}
	w.Header().Set("Cache-Control", "no-store, private")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if t.Kind == "c" {
		http.Redirect(w, r, t.URL, http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", "image/gif")
	w.Write(bytes.Clone(pixel))
}
