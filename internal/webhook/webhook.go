// Package webhook posts events to the webhooks that take them. Deliveries
// are made in the store as events are counted (store.Webhooks), so they
// survive restarts; a sender claims the due ones, posts each as JSON
// signed with the webhook's secrets (Mailroom-Signature: t=UNIX,v1=HEX,
// HMAC-SHA256 over "UNIX.BODY", the form receivers know from Stripe), and
// records every attempt; failures are tried again with backoff until a
// day (configurable) has passed. A message received from outside is posted
// whole to webhooks that take "inbound": parsed parts and the raw message.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"mailroom/internal/store"
)

// Config is how the sender retries.
type Config struct {
	// AllowNetworks are the networks of this side (loopback, private,
	// link-local) webhooks may still post to: none by default, so that a
	// webhook cannot reach the server's own services or its network's
	// (SSRF); public addresses are always allowed.
	AllowNetworks  []netip.Prefix
	RetryIntervals []time.Duration
	GiveUpAfter    time.Duration
	Timeout        time.Duration
	// MaxInbound bounds the message posted to an inbound webhook.
	MaxInbound int64
}

// Store is what the sender needs of the store.
type Store interface {
	store.Webhooks
	LoggedMessages(ctx context.Context, q store.MessageQuery) ([]store.LoggedMessage, error)
	OpenByQueueID(ctx context.Context, queueID string) (io.ReadCloser, error)
}

// Sender posts due deliveries.
type Sender struct {
	st     Store
	cfg    atomic.Pointer[Config]
	client *http.Client
	log    *slog.Logger
	wake   chan struct{}
}

// parallel bounds the posts under way at once, and batch the deliveries
// claimed at once.
const (
	parallel = 8
	batch    = 4 * parallel
)

// lease is how long a claim is this sender's: longer than its batch can
// take (batch/parallel rounds of attempts of at most Timeout each). A
// sender that dies (kill -9) leaves its claims to others after it.
func (c *Config) lease() time.Duration {
	return time.Duration(batch/parallel)*c.Timeout + 10*time.Second
}

// New returns a sender.
func New(st Store, cfg Config, log *slog.Logger) *Sender {
	s := &Sender{st: st, log: log, wake: make(chan struct{}, 1)}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: s.allowed}
	s.client = &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: nil, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute, ResponseHeaderTimeout: time.Minute},
		// A redirect is an answer, not a delivery: a receiver that moved
		// says so with 3xx, which is recorded as a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.SetConfig(cfg)
	return s
}

// ErrForbiddenAddress is a webhook URL that names (or resolves to) an
// address of this side: loopback, private, link-local, multicast or
// unspecified, not in [webhooks] allow_networks.
var ErrForbiddenAddress = errors.New("the webhook's address is of this server's side (loopback, private, link-local): add its network to [webhooks] allow_networks to post there")

// allowed is the dialer's check, on the address resolved: the one
// connected to, whatever the name said.
func (s *Sender) allowed(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return ErrForbiddenAddress
	}
	ip := ap.Addr().Unmap()
	if !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() ||
		ip.IsInterfaceLocalMulticast()) {
		return nil
	}
	for _, p := range s.cfg.Load().AllowNetworks {
		if p.Contains(ip) {
			return nil
		}
	}
	return ErrForbiddenAddress
}

// SetConfig replaces the configuration.
func (s *Sender) SetConfig(c Config) { s.cfg.Store(&c) }

// Wake makes the sender look for due deliveries now.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	for ctx.Err() == nil {
		n := s.Once(ctx)
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-time.After(time.Second):
		}
	}
}

// Once posts the deliveries due now (up to a batch) and records them; it
// returns how many it took.
func (s *Sender) Once(ctx context.Context) int {
	ds, err := s.st.ClaimHookDeliveries(ctx, time.Now(), s.cfg.Load().lease(), batch)
	if err != nil {
		s.log.Warn("webhooks: claiming deliveries (tried again shortly)", "err", err)
		return 0
	}
	if len(ds) == 0 {
		return 0
	}
	hooks := map[int64]*store.Webhook{}
	results := make([]store.HookResult, len(ds)) // a zero DeliveryID: not attempted
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i, d := range ds {
		h, ok := hooks[d.WebhookID]
		if !ok {
			w, err := s.st.Webhook(ctx, d.WebhookID)
			switch {
			case errors.Is(err, store.ErrNotFound):
				w = store.Webhook{} // deleted meanwhile: the record fails quietly
			case err != nil:
				s.log.Warn("webhooks: reading a webhook (its deliveries go again after the claim)", "webhook", d.WebhookID, "err", err)
				h = nil
			}
			if err == nil || errors.Is(err, store.ErrNotFound) {
				h = &w
			}
			hooks[d.WebhookID] = h
		}
		if h == nil {
			continue // left claimed: tried again when the lease ends
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = s.attempt(ctx, h, d)
		}()
	}
	wg.Wait()
	results = slices.DeleteFunc(results, func(r store.HookResult) bool { return r.DeliveryID == 0 })
	if err := s.st.RecordHookResults(context.WithoutCancel(ctx), results); err != nil {
		s.log.Error("webhooks: recording attempts (they are made again after the claim's lease)", "err", err)
	}
	return len(ds)
}

// attempt posts one delivery and says what became of it.
func (s *Sender) attempt(ctx context.Context, h *store.Webhook, d store.HookDelivery) store.HookResult {
	cfg := s.cfg.Load()
	start := time.Now()
	res := store.HookResult{DeliveryID: d.ID, State: store.HookDelivered, Attempt: store.HookAttempt{DeliveryID: d.ID, Time: start}}
	status, errText := s.post(ctx, h, d, cfg)
	res.Attempt.Status, res.Attempt.Error, res.Attempt.Duration = status, errText, time.Since(start)
	switch {
	case errText == "":
		s.log.Info("webhook delivered", "webhook", h.ID, "delivery", d.ID, "kind", d.Kind, "status", status)
		return res
	case status == http.StatusGone || h.ID == 0:
		res.State = store.HookFailed
	case time.Since(d.Created) >= cfg.GiveUpAfter:
		res.State = store.HookFailed
		res.Attempt.Error += fmt.Sprintf(" (given up: %s since the event)", cfg.GiveUpAfter)
	default:
		res.State = store.HookPending
		i := min(d.Attempts, len(cfg.RetryIntervals)-1)
		res.NextAttempt = time.Now().Add(cfg.RetryIntervals[i])
	}
	s.log.Info("webhook attempt failed", "webhook", h.ID, "delivery", d.ID, "kind", d.Kind, "status", status, "err", res.Attempt.Error,
		"state", res.State, "next_attempt", res.NextAttempt)
	return res
}

// post makes one HTTP request; an error text says why it did not count as
// delivered ("" when it did).
func (s *Sender) post(ctx context.Context, h *store.Webhook, d store.HookDelivery, cfg *Config) (int, string) {
	if h.ID == 0 {
		return 0, "the webhook was deleted"
	}
	body, err := s.payload(ctx, d, h.Owner, cfg)
	if err != nil {
		return 0, "building the payload: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "the webhook's URL: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mailroom-Webhook/1")
	req.Header.Set("Mailroom-Event", d.Kind)
	req.Header.Set("Mailroom-Delivery", strconv.FormatInt(d.ID, 10))
	req.Header.Set("Mailroom-Signature", Sign(h.Secrets, time.Now(), body))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, clean(err.Error())
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be kept
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, ""
	}
	text := resp.Status
	if t := clean(string(snippet)); t != "" {
		text += ": " + t
	}
	return resp.StatusCode, text
}

// clean makes text from a receiver safe to keep and show: printable,
// one line, at most 200 characters.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) || unicode.Is(unicode.Bidi_Control, r) {
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}

// Sign is the Mailroom-Signature field's value of body sent at t: the
// time, then an HMAC-SHA256 of "UNIX.BODY" with each secret (two while a
// rotation lasts; a receiver accepts either).
func Sign(secrets []string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	parts := []string{"t=" + ts}
	for _, sec := range secrets {
		mac := hmac.New(sha256.New, []byte(sec))
		mac.Write([]byte(ts + "."))
		mac.Write(body)
		parts = append(parts, "v1="+hex.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(parts, ",")
}

// ErrSignature is a signature that does not verify.
var ErrSignature = errors.New("the Mailroom-Signature does not match the body: a wrong secret, or an altered body")

// Verify checks a Mailroom-Signature value against body with secret, and
// that it was made within tolerance of now: what a receiver does (and the
// tests' receiver).
func Verify(header, secret string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, p := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("no timestamp (t=) in the signature")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("the signature is %s old: a replay?", d.Round(time.Second))
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}

// NewSecret returns a new signing secret: "whsec_" and 32 random bytes in
// base32.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// Check checks a webhook about to be made: its URL (http or https,
// with a host) and its event kinds.
func Check(w store.Webhook) error {
	u := w.URL
	if !(strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")) || len(u) > 2000 || strings.ContainsAny(u, " \r\n\t") {
		return fmt.Errorf("url %q: give an http:// or https:// URL (https unless the receiver is on your own network)", u)
	}
	if host, _, _ := strings.Cut(strings.SplitN(u, "://", 2)[1], "/"); host == "" {
		return fmt.Errorf("url %q has no host", u)
	}
	if len(w.Events) == 0 {
		return fmt.Errorf("events: give at least one of %s, %s", strings.Join(store.EventKinds, ", "), store.EventInbound)
	}
	for _, k := range w.Events {
		if k != store.EventInbound && !slices.Contains(store.EventKinds, k) {
			return fmt.Errorf("events: %q is not an event kind: use %s, or %s for received mail posted whole", k, strings.Join(store.EventKinds, ", "), store.EventInbound)
		}
	}
	return nil
}

// maxInlineAttachments is the size of a message beyond which an inbound
// post carries its attachments' content only in Raw.
const maxInlineAttachments = 5 << 20

// Rotate returns a webhook's secrets after a rotation: a new one (returned
// too) that signs from now on, and the current one beside it until the
// next rotation, so that receivers switch without a gap.
func Rotate(h store.Webhook) (secrets []string, secret string) {
	secret = NewSecret()
	return []string{secret, h.Secrets[0]}, secret
}

// Payload is the JSON posted for one event.
type Payload struct {
	ID      int64                `json:"id"` // the delivery's: the same on every attempt, for receivers to deduplicate
	Type    string               `json:"type"`
	Created time.Time            `json:"created"`
	Event   store.Event          `json:"event"`
	Message *store.LoggedMessage `json:"message,omitempty"`
	Inbound *Inbound             `json:"inbound,omitempty"`
}

// payload builds the body of a delivery: the event, its message as logged
// (tags and metadata for the application), and for inbound mail the
// message itself.
func (s *Sender) payload(ctx context.Context, d store.HookDelivery, owner string, cfg *Config) ([]byte, error) {
	p := Payload{ID: d.ID, Type: d.Kind, Created: d.Event.Time.UTC(), Event: d.Event}
	if d.Event.QueueID != "" {
		ms, err := s.st.LoggedMessages(ctx, store.MessageQuery{QueueID: d.Event.QueueID, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(ms) == 1 {
			p.Message = &ms[0]
			// A domain's webhook sees its own recipients of mail received
			// for several domains.
			if d, ok := strings.CutPrefix(owner, "@"); ok && p.Message.Direction == store.Inbound {
				p.Message.Recipients = slices.DeleteFunc(p.Message.Recipients, func(r string) bool {
					_, rd, _ := strings.Cut(r, "@")
					return !strings.EqualFold(rd, d)
				})
			}
		}
	}
	if d.Kind == store.EventInbound {
		rc, err := s.st.OpenByQueueID(ctx, d.Event.QueueID)
		if err != nil {
			return nil, fmt.Errorf("the message (deleted already?): %w", err)
		}
		raw, err := io.ReadAll(io.LimitReader(rc, cfg.MaxInbound+1))
		rc.Close()
		if err != nil {
			return nil, err
		}
		if int64(len(raw)) > cfg.MaxInbound {
			return nil, fmt.Errorf("the message is over %d bytes", cfg.MaxInbound)
		}
		p.Inbound = Parse(raw)
		if len(raw) > maxInlineAttachments { // the attachments' content is in Raw: not twice in a large post
			for i := range p.Inbound.Attachments {
				p.Inbound.Attachments[i].Content = ""
			}
		}
	}
	return json.Marshal(p)
}
