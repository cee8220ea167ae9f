package httpapi

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/mail"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"

	"mailroom/internal/metrics"
	"mailroom/internal/sendlimit"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/spool"
	"mailroom/internal/store"
	"mailroom/internal/tracking"
)

// Message is a message given as JSON.
type Message struct {
	From        string            `json:"from"`
	To          []string          `json:"to"`
	Cc          []string          `json:"cc,omitempty"`
	Bcc         []string          `json:"bcc,omitempty"`
	ReplyTo     string            `json:"reply_to,omitempty"`
	Subject     string            `json:"subject"`
	Text        string            `json:"text,omitempty"`
	HTML        string            `json:"html,omitempty"`
	Attachments []Attachment      `json:"attachments,omitempty"`
	Inline      []Attachment      `json:"inline,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Labels
}

// Labels mark a message in the message log and its statistics.
type Labels struct {
	Tags     []string          `json:"tags,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Stream   string            `json:"stream,omitempty"`
}

// Attachment is a file of a message: an attachment, or an inline part
// (an image the HTML shows as cid:ContentID).
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type,omitempty"`
	Content     string `json:"content"` // base64
	ContentID   string `json:"content_id,omitempty"`
}

// Sent is the answer for one message.
type Sent struct {
	ID        string    `json:"id"` // the queue ID: the message's key in the log and events
	MessageID string    `json:"message_id"`
	Accepted  []string  `json:"accepted"`
	Rejected  []Refusal `json:"rejected,omitempty"`
}

// Refusal is a recipient (or the sender) the server refused, with the
// SMTP reply it would have had.
type Refusal struct {
	Address string `json:"address"`
	Code    int    `json:"code"`
	Status  string `json:"status,omitempty"` // enhanced status code
	Message string `json:"message"`
}

// failure is an error of one message: its HTTP status and body.
type failure struct {
	status int
	body   errorBody
}

func fail(status int, code, msg string) *failure {
	return &failure{status, errorBody{Code: code, Message: msg}}
}

// Bounds on what the labels may hold.
const (
	maxTags       = 10
	maxMetadata   = 20
	maxLabelBytes = 4096
	maxBatch      = 500
)

var (
	labelWord  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)
	fieldName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,75}$`)
	ourHeaders = map[string]bool{"from": true, "to": true, "cc": true, "bcc": true, "reply-to": true, "subject": true, "date": true,
		"message-id": true, "mime-version": true, "content-type": true, "content-transfer-encoding": true, "sender": true, "received": true}
)

func (l Labels) check() *failure {
	if len(l.Tags) > maxTags {
		return fail(400, "invalid_tags", fmt.Sprintf("A message has at most %d tags", maxTags))
	}
	size := 0
	for _, t := range l.Tags {
		if !labelWord.MatchString(t) {
			return fail(400, "invalid_tags", fmt.Sprintf("Tag %q: a tag is 1 to 64 letters, digits and _.:- (starting with a letter or digit)", t))
		}
		size += len(t)
	}
	if len(l.Metadata) > maxMetadata {
		return fail(400, "invalid_metadata", fmt.Sprintf("A message has at most %d metadata keys", maxMetadata))
	}
	for k, v := range l.Metadata {
		if !labelWord.MatchString(k) {
			return fail(400, "invalid_metadata", fmt.Sprintf("Metadata key %q: a key is 1 to 64 letters, digits and _.:-", k))
		}
		if strings.ContainsFunc(v, unicode.IsControl) || !utf8.ValidString(v) {
			return fail(400, "invalid_metadata", fmt.Sprintf("Metadata %q: a value is text without control characters", k))
		}
		size += len(k) + len(v)
	}
	if size > maxLabelBytes {
		return fail(400, "invalid_metadata", fmt.Sprintf("Tags and metadata together hold at most %d bytes", maxLabelBytes))
	}
	if l.Stream != "" && !labelWord.MatchString(l.Stream) {
		return fail(400, "invalid_stream", "A stream is a name like transactional or broadcast: 1 to 64 letters, digits and _.:-")
	}
	return nil
}

// send is POST /api/v1/messages: one JSON message.
func (a *api) send(w http.ResponseWriter, r *http.Request, c *caller) {
	a.idempotent(w, r, c, func(body []byte) (int, any) {
		var m Message
		if f := decode(body, &m); f != nil {
			return f.status, apiError{f.body}
		}
		sent, f := a.sendMessage(r, c, m)
		if f != nil {
			return f.status, apiError{f.body}
		}
		return http.StatusAccepted, sent
	})
}

// sendBatch is POST /api/v1/messages/batch: up to 500 messages, each a
// transaction of its own; the answer has each one's result in order.
func (a *api) sendBatch(w http.ResponseWriter, r *http.Request, c *caller) {
	a.idempotent(w, r, c, func(body []byte) (int, any) {
		var req struct {
			Messages []Message `json:"messages"`
		}
		if f := decode(body, &req); f != nil {
			return f.status, apiError{f.body}
		}
		if len(req.Messages) == 0 || len(req.Messages) > maxBatch {
			return 400, apiError{errorBody{Code: "invalid_batch", Message: fmt.Sprintf("A batch holds 1 to %d messages in \"messages\"", maxBatch)}}
		}
		type result struct {
			*Sent
			Error *errorBody `json:"error,omitempty"`
		}
		out := struct {
			Results []result `json:"results"`
		}{}
		for _, m := range req.Messages {
			sent, f := a.sendMessage(r, c, m)
			if f != nil {
				out.Results = append(out.Results, result{Error: &f.body})
				continue
			}
			out.Results = append(out.Results, result{Sent: sent})
		}
		return http.StatusOK, out
	})
}

// sendRaw is POST /api/v1/messages/raw: a message as it is (RFC 5322),
// the envelope from the query (from, to repeated) or else from its
// From, To and Cc fields; tag, stream and meta.KEY label it.
func (a *api) sendRaw(w http.ResponseWriter, r *http.Request, c *caller) {
	a.idempotent(w, r, c, func(body []byte) (int, any) {
		q := r.URL.Query()
		labels := Labels{Tags: q["tag"], Stream: q.Get("stream")}
		for k, v := range q {
			if name, ok := strings.CutPrefix(k, "meta."); ok && len(v) > 0 {
				if labels.Metadata == nil {
					labels.Metadata = map[string]string{}
				}
				labels.Metadata[name] = v[0]
			}
		}
		if f := labels.check(); f != nil {
			return f.status, apiError{f.body}
		}
		data, f := crlf(body)
		if f != nil {
			return f.status, apiError{f.body}
		}
		hdr, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			return 400, apiError{errorBody{Code: "invalid_message", Message: "The body is not a message (RFC 5322 header fields, a blank line, the body): " + err.Error()}}
		}
		from := q.Get("from")
		if from == "" {
			from = hdr.Header.Get("From")
		}
		to := q["to"]
		if len(to) == 0 {
			for _, f := range []string{"To", "Cc"} {
				if v := hdr.Header.Get(f); v != "" {
					list, err := mail.ParseAddressList(v)
					if err != nil {
						return 400, apiError{errorBody{Code: "invalid_recipient", Message: "The " + f + " field is malformed: " + err.Error()}}
					}
					for _, ad := range list {
						to = append(to, ad.Address)
					}
				}
			}
		}
		sent, f := a.submit(r, c, from, to, data, "", labels, "")
		if f != nil {
			return f.status, apiError{f.body}
		}
		return http.StatusAccepted, sent
	})
}

// sendMessage checks and writes one JSON message, then submits it.
func (a *api) sendMessage(r *http.Request, c *caller, m Message) (*Sent, *failure) {
	if f := m.Labels.check(); f != nil {
		return nil, f
	}
	if m.From == "" || len(m.To)+len(m.Cc)+len(m.Bcc) == 0 {
		return nil, fail(400, "invalid_message", `A message needs "from" and at least one recipient in "to", "cc" or "bcc"`)
	}
	if strings.ContainsFunc(m.Subject, unicode.IsControl) {
		return nil, fail(400, "invalid_message", "The subject holds control characters (a line break, a NUL): give it as one line of text")
	}
	if m.Text == "" && m.HTML == "" {
		return nil, fail(400, "invalid_message", `A message needs "text", "html" or both`)
	}
	cfg := a.Config()
	id := "<" + newID() + "@" + cfg.Hostname + ">"
	var rcpts []string
	for _, list := range [][]string{m.To, m.Cc, m.Bcc} {
		for _, s := range list {
			ad, err := mail.ParseAddress(s)
			if err != nil {
				return nil, fail(400, "invalid_recipient", fmt.Sprintf("Recipient %q: %v (write it as user@example.com or Name <user@example.com>)", s, err))
			}
			rcpts = append(rcpts, ad.Address)
		}
	}
	queueID := store.NewQueueID()
	if m.HTML != "" && a.tracked(cfg, m) {
		from, _ := mail.ParseAddress(m.From)
		t := tracking.Token{QueueID: queueID, Domain: senderDomain(from)}
		if len(rcpts) == 1 { // a message to several: the message is known, not who opened it
			t.Recipient = strings.ToLower(rcpts[0])
		}
		m.HTML = a.Tracking.Rewrite(m.HTML, cfg.TrackingBase, t, cfg.TrackOpens, cfg.TrackClicks)
	}
	data, f := compose(m, id)
	if f != nil {
		return nil, f
	}
	return a.submit(r, c, m.From, rcpts, data, id, m.Labels, queueID)
}

// tracked says whether a message's opens and clicks are tracked: its
// sender's domain or its stream is listed, and the listener's URL known.
func (a *api) tracked(cfg Config, m Message) bool {
	if a.Tracking == nil || cfg.TrackingBase == "" || !cfg.TrackOpens && !cfg.TrackClicks {
		return false
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return false
	}
	return slices.Contains(cfg.TrackDomains, senderDomain(from)) || m.Stream != "" && slices.Contains(cfg.TrackStreams, m.Stream)
}

func senderDomain(a *mail.Address) string {
	if a == nil {
		return ""
	}
	_, d, _ := strings.Cut(a.Address, "@")
	return strings.ToLower(d)
}

// compose writes a JSON message as RFC 5322 with MIME parts: text and
// HTML as alternatives, inline parts beside the HTML, attachments after.
func compose(m Message, messageID string) ([]byte, *failure) {
	g := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := g.From(m.From); err != nil {
		return nil, fail(400, "invalid_sender", fmt.Sprintf("From %q: %v", m.From, err))
	}
	for _, set := range []struct {
		name string
		list []string
		fn   func(...string) error
	}{{"to", m.To, g.To}, {"cc", m.Cc, g.Cc}} {
		if len(set.list) > 0 {
			if err := set.fn(set.list...); err != nil {
				return nil, fail(400, "invalid_recipient", fmt.Sprintf("%s: %v", set.name, err))
			}
		}
	}
	if m.ReplyTo != "" {
		if err := g.ReplyTo(m.ReplyTo); err != nil {
			return nil, fail(400, "invalid_message", fmt.Sprintf("reply_to %q: %v", m.ReplyTo, err))
		}
	}
	g.Subject(m.Subject)
	g.SetMessageIDWithValue(strings.Trim(messageID, "<>"))
	g.SetDate()
	for name, v := range m.Headers {
		if !fieldName.MatchString(name) || ourHeaders[strings.ToLower(name)] || strings.ContainsAny(name, "\r\n") {
			return nil, fail(400, "invalid_header", fmt.Sprintf("Header %q cannot be set: it is malformed, or the API writes it from the message's fields", name))
		}
		if strings.ContainsFunc(v, unicode.IsControl) || len(name)+2+len(v) > 998 {
			return nil, fail(400, "invalid_header", fmt.Sprintf("Header %q: a field is one line of up to 998 characters, without control characters", name))
		}
		g.SetGenHeader(gomail.Header(name), v)
	}
	switch {
	case m.Text != "" && m.HTML != "":
		g.SetBodyString(gomail.TypeTextPlain, m.Text)
		g.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	case m.HTML != "":
		g.SetBodyString(gomail.TypeTextHTML, m.HTML)
	default:
		g.SetBodyString(gomail.TypeTextPlain, m.Text)
	}
	for _, set := range []struct {
		list   []Attachment
		inline bool
	}{{m.Inline, true}, {m.Attachments, false}} {
		for _, at := range set.list {
			content, err := base64.StdEncoding.DecodeString(at.Content)
			if err != nil {
				return nil, fail(400, "invalid_attachment", fmt.Sprintf("Attachment %q: its content is not base64: %v", at.Filename, err))
			}
			name := strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r == '/' {
					return '_'
				}
				return r
			}, at.Filename)
			if name == "" {
				return nil, fail(400, "invalid_attachment", "An attachment needs a filename")
			}
			opts := []gomail.FileOption{}
			if at.ContentType != "" {
				mt, params, err := mime.ParseMediaType(at.ContentType)
				if err != nil || len(params) > 0 || strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "message/") {
					return nil, fail(400, "invalid_attachment", fmt.Sprintf("Attachment %q: content_type %q is not a plain MIME type like application/pdf", at.Filename, at.ContentType))
				}
				opts = append(opts, gomail.WithFileContentType(gomail.ContentType(mt)))
			}
			if set.inline {
				cid := at.ContentID
				if cid == "" {
					cid = name
				}
				if !labelWord.MatchString(strings.ReplaceAll(cid, "@", ".")) {
					return nil, fail(400, "invalid_attachment", fmt.Sprintf("Inline part %q: content_id %q is not a plain word", at.Filename, cid))
				}
				opts = append(opts, gomail.WithFileContentID("<"+cid+">")) // RFC 2392: the brackets are the field's
				err = g.EmbedReader(name, bytes.NewReader(content), opts...)
			} else {
				err = g.AttachReader(name, bytes.NewReader(content), opts...)
			}
			if err != nil {
				return nil, fail(400, "invalid_attachment", fmt.Sprintf("Attachment %q: %v", at.Filename, err))
			}
		}
	}
	var buf bytes.Buffer
	if _, err := g.WriteTo(&buf); err != nil {
		return nil, fail(400, "invalid_message", "The message could not be written: "+err.Error())
	}
	return buf.Bytes(), nil
}

// submit runs a message through the backend as an SMTP submission does:
// MAIL (the sender's rights, the sending limits), RCPT for each recipient
// (each refusal kept), then the message (checks, signing, the queue).
func (a *api) submit(r *http.Request, c *caller, fromText string, to []string, data []byte, messageID string, labels Labels, queueID string) (*Sent, *failure) {
	cfg := a.Config()
	if int64(len(data)) > cfg.MaxMessageSize {
		return nil, fail(http.StatusRequestEntityTooLarge, "message_too_large", fmt.Sprintf("The message is %d bytes; this server takes up to %d", len(data), cfg.MaxMessageSize))
	}
	fromAddr, err := mail.ParseAddress(fromText)
	if err != nil {
		return nil, fail(400, "invalid_sender", fmt.Sprintf("From %q: %v", fromText, err))
	}
	from, err := smtp.ParseMailbox(fromAddr.Address)
	if err != nil {
		return nil, fail(400, "invalid_sender", fmt.Sprintf("From %q: %v", fromText, err))
	}
	if len(to) == 0 {
		return nil, fail(400, "invalid_message", "The message has no recipient: give \"to\" (or To and Cc fields)")
	}
	if cfg.MaxRecipients > 0 && len(to) > cfg.MaxRecipients {
		return nil, fail(400, "too_many_recipients", fmt.Sprintf("A message has at most %d recipients here ([smtp] max_recipients); send several", cfg.MaxRecipients))
	}
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	user := c.key.Owner
	s := &smtpserver.SessionInfo{ID: newID()[:12], Mode: smtpserver.ModeSubmission, Remote: remote, Helo: "api", ESMTP: true, TLS: r.TLS,
		Auth: &smtpserver.AuthInfo{User: user, Mechanism: "API key " + c.key.ID}}
	eightBit := slices.ContainsFunc(data, func(c byte) bool { return c >= 0x80 })
	params := smtp.MailParams{Size: int64(len(data)), SMTPUTF8: from.UTF8() || eightBit}
	if eightBit {
		params.Body = "8BITMIME"
	}
	ctx := r.Context()
	if err := a.Backend.Mail(ctx, s, from, params); err != nil {
		return nil, refused(a, "sender_refused", fromAddr.Address, err)
	}
	env := &smtpserver.Transaction{From: from, Params: params, Stream: labels.Stream, Tags: labels.Tags, Metadata: labels.Metadata}
	sent := &Sent{MessageID: messageID, Accepted: []string{}}
	for _, t := range to {
		addr, err := smtp.ParseMailbox(t)
		if err != nil {
			sent.Rejected = append(sent.Rejected, Refusal{Address: t, Code: 501, Status: "5.1.3", Message: err.Error()})
			continue
		}
		target, err := a.Backend.Rcpt(ctx, s, env, addr, smtp.RcptParams{})
		if err != nil {
			var rep *smtp.Reply
			if !errors.As(err, &rep) || errors.Is(err, sendlimit.ErrLimit) {
				return nil, refused(a, "", t, err)
			}
			sent.Rejected = append(sent.Rejected, Refusal{Address: t, Code: rep.Code, Status: rep.Enhanced, Message: rep.Text})
			continue
		}
		env.Recipients = append(env.Recipients, smtpserver.Recipient{Addr: addr, Target: target})
		sent.Accepted = append(sent.Accepted, addr.String())
	}
	if len(env.Recipients) == 0 {
		f := fail(422, "recipients_refused", "Every recipient was refused: see details")
		if !slices.ContainsFunc(sent.Rejected, func(r Refusal) bool { return r.Code >= 500 }) {
			f = fail(http.StatusServiceUnavailable, "recipients_deferred", "Every recipient was refused for now (see details): try again later")
		}
		f.body.Details = sent.Rejected
		return nil, f
	}
	env.QueueID = queueID
	if env.QueueID == "" {
		env.QueueID = store.NewQueueID()
	}
	sent.ID = env.QueueID
	client := smtpserver.AddressLiteral(*s) // as SMTP's Received writes it (RFC 5321 4.1.3)
	if cfg.HideClientIP {
		client = "api-client (hidden)"
	}
	env.Received = fmt.Sprintf("Received: from %s (HTTP API, key %s)\r\n\tby %s (Mailroom) with HTTPS id %s;\r\n\t%s\r\n",
		client, c.key.ID, cfg.Hostname, env.QueueID, time.Now().Format(time.RFC1123Z))
	sp := spool.New(cfg.SpoolDir, 0)
	defer sp.Close()
	if _, err := sp.Write(data); err != nil {
		return nil, refused(a, "", "", err)
	}
	start := time.Now()
	if err := a.Backend.Deliver(ctx, s, env, sp); err != nil {
		return nil, refused(a, "message_refused", "", err)
	}
	metrics.MessagesAccepted.WithLabelValues("api").Inc()
	metrics.AcceptSeconds.WithLabelValues("api").Observe(time.Since(start).Seconds())
	if sent.MessageID == "" {
		sent.MessageID = messageIDOf(data, env.QueueID, cfg.Hostname)
	}
	a.Log.Info("message accepted", "queue_id", env.QueueID, "api_key", c.key.ID, "from", from.String(), "recipients", len(env.Recipients), "size", len(data))
	return sent, nil
}

// refused turns a backend's answer into the API's: a sending limit is
// 429, any other 4xx 503 (try again), 5xx a refusal (422, 403 for policy,
// 413 for size); anything else is ours.
func refused(a *api, code, address string, err error) *failure {
	var rep *smtp.Reply
	if !errors.As(err, &rep) {
		a.Log.Error("HTTP API: submitting a message", "err", err)
		return fail(http.StatusServiceUnavailable, "temporary_failure", "The server could not take the message now: try again shortly")
	}
	status := http.StatusUnprocessableEntity
	switch {
	case errors.Is(err, sendlimit.ErrLimit):
		status, code = http.StatusTooManyRequests, "sending_limit"
	case rep.Code >= 400 && rep.Code < 500:
		status = http.StatusServiceUnavailable
	case rep.Code == 552 || rep.Enhanced == "5.3.4":
		status = http.StatusRequestEntityTooLarge
	case rep.Code == 553 || strings.HasPrefix(rep.Enhanced, "5.7"):
		status = http.StatusForbidden
	}
	if code == "" {
		code = "message_refused"
	}
	f := fail(status, code, rep.Text)
	f.body.Details = Refusal{Address: address, Code: rep.Code, Status: rep.Enhanced, Message: rep.Text}
	return f
}

// messageIDOf is the Message-ID of a raw message: its own, or the one the
// backend wrote when it had none.
func messageIDOf(data []byte, queueID, hostname string) string {
	if m, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		if id := m.Header.Get("Message-ID"); id != "" {
			return id
		}
	}
	return "<" + queueID + "@" + hostname + ">"
}

// crlf checks a raw message and ends every line with CRLF, as SMTP carries
// it: a bare LF becomes CRLF, a bare CR or a NUL is refused (what DATA
// refuses: a next hop could read a bare CR as a line's end), and the last
// line ends with CRLF.
func crlf(b []byte) ([]byte, *failure) {
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, fail(400, "invalid_message", "The message holds a NUL octet: a message is text, its binary parts encoded (base64)")
	}
	out := make([]byte, 0, len(b)+len(b)/50+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r':
			return nil, fail(400, "invalid_message", "The message holds a CR not followed by LF: end lines with CRLF (or LF)")
		case c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out, nil
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
