// Package inbound is the policy and local delivery behind the SMTP
// listener: it decides which recipients Mailroom accepts (local users,
// aliases, sub-addresses, catch-alls; never an open relay), checks quotas,
// and commits accepted mail to users' mailboxes in the store.
package inbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"mailroom/internal/dkim"
	"mailroom/internal/mailauth"
	"mailroom/internal/message"
	"mailroom/internal/sendlimit"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpserver"
	"mailroom/internal/spool"
	"mailroom/internal/srs"
	"mailroom/internal/store"
	"mailroom/internal/tally"
)

// Config is the policy; it can be replaced while the server runs.
type Config struct {
	Hostname            string // for Message-IDs of submitted mail
	TrustedNetworks     []netip.Prefix
	SubaddressSeparator string // "" turns sub-addressing off
	MaxHops             int    // Received fields before a message is a loop
	SendLimits          sendlimit.Limits
	// DataDir is where the store lives; MinFreeSpace (octets) is the free
	// space there below which new mail gets 452 4.3.1 (0: no reserve).
	DataDir      string
	MinFreeSpace int64
	// ReportSizeLimit caps what a report returns of the original message
	// (its header only beyond it); MaxReportsPerHour bounds the reports
	// sent to any one domain (0: none).
	ReportSizeLimit   int64
	MaxReportsPerHour int
	// DMARC is what mail failing its author's DMARC policy gets:
	// "enforce", "quarantine" or "monitor"; DMARCDomains per recipient
	// domain (lower case).
	DMARC        string
	DMARCDomains map[string]string
	// ARCTrustedSealers: ARC sealers (lower case) believed when DMARC fails.
	ARCTrustedSealers []string
	// ComplaintsTo are local addresses (lower case) whose abuse feedback
	// reports (ARF) become complaint events, their recipients suppressed
	// for ComplaintSuppressFor.
	ComplaintsTo         []string
	ComplaintSuppressFor time.Duration
}

// Backend implements smtpserver.Backend over a store.
type Backend struct {
	store    store.Store
	log      *slog.Logger
	cfg      atomic.Pointer[Config]
	sent     *sendlimit.Counter // what each authenticated user sent
	reports  reportLimiter      // reports sent per destination domain
	dmarcrpt *tally.Recorder    // nil: DMARC evaluations are not counted for aggregate reports
	queued   func()             // set before serving
	dkim     *dkim.Signer       // of mail leaving for other domains
	origin   *mailauth.Checker  // of mail from outside; nil: not checked
	srs      *srs.Rewriter      // of forwarded mail; nil: no forwarding
}

var _ smtpserver.Backend = (*Backend)(nil)

// New returns a backend delivering into st.
func New(st store.Store, cfg *Config, log *slog.Logger) *Backend {
	b := &Backend{store: st, log: log, sent: sendlimit.New(nil), dkim: dkim.NewSigner(st)}
	if sh, ok := st.(sendlimit.Shared); ok {
		b.sent.SetShared(sh) // several nodes: the limits hold across them
	}
	b.cfg.Store(cfg)
	return b
}

// SetConfig replaces the policy.
func (b *Backend) SetConfig(cfg *Config) { b.cfg.Store(cfg) }

// Mail checks the reverse-path: an authenticated user may use only their
// own addresses; on the MX port any sender is taken (SPF, DMARC come later).
func (b *Backend) Mail(ctx context.Context, s *smtpserver.SessionInfo, from smtp.Address, p smtp.MailParams) error {
	if err := b.checkSpace(p.Size, s.Remote.Addr().String()); err != nil {
		return err
	}
	if s.Auth != nil {
		limits, err := b.sendLimits(ctx, s.Auth.User)
		if err != nil {
			return err
		}
		if err := b.sent.TakeMessage(s.Auth.User, limits); err != nil {
			return err
		}
		return b.checkSender(ctx, s.Auth.User, from)
	}
	return nil
}

// trusted reports whether the client may relay without authenticating.
func (b *Backend) trusted(s *smtpserver.SessionInfo) bool {
	ip := s.Remote.Addr().Unmap()
	for _, p := range b.cfg.Load().TrustedNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Rcpt resolves a recipient to local users, or refuses it.
func (b *Backend) Rcpt(ctx context.Context, s *smtpserver.SessionInfo, env *smtpserver.Transaction, to smtp.Address, p smtp.RcptParams) (any, error) {
	cfg := b.cfg.Load()
	if s.Auth != nil {
		limits, err := b.sendLimits(ctx, s.Auth.User)
		if err != nil {
			return nil, err
		}
		if err := b.sent.TakeRecipient(s.Auth.User, limits); err != nil {
			return nil, err
		}
	}
	if to.Domain == "" { // <postmaster>
		d, err := b.postmasterDomain(ctx)
		if err != nil {
			return nil, err
		}
		to.Domain = d
	}
	local, err := b.isLocalDomain(ctx, to.Domain)
	if err != nil {
		return nil, err
	}
	if !local {
		if s.Auth == nil && !b.trusted(s) {
			return nil, smtp.Errorf(554, "5.7.1", "Relay access denied: %s is not a domain this server receives mail for", to.Domain)
		}
		if to.IsLiteral() {
			return nil, smtp.Errorf(550, "5.1.2", "Mail to address literals is not relayed: use a domain name")
		}
		sup, suppressed, err := b.store.Suppressed(ctx, to.String(), time.Now())
		if err != nil {
			return nil, tempFailure(err)
		}
		if suppressed {
			// On record, for the sender's statistics and timeline; a
			// failure to record does not change the answer.
			ev := store.Event{Kind: store.EventSuppressed, Recipient: to.String(), Domain: strings.ToLower(env.From.Domain), Detail: sup.Reason}
			if err := b.store.AddEvents(ctx, []store.Event{ev}); err != nil {
				b.log.Warn("recording a suppressed recipient's event", "to", to.String(), "err", err)
			}
			return nil, smtp.Errorf(550, "5.1.1", "<%s> bounced on %s (%s) and is not tried again until %s; an administrator can lift this with 'mailroom suppression del'",
				to, sup.Created.UTC().Format(time.DateOnly), truncateRunes(sup.Reason, 80), sup.Until.UTC().Format(time.DateOnly))
		}
		return store.QueuedRecipient{Address: to.String(), Domain: to.Domain, Notify: p.Notify, ORcpt: p.ORcpt}, nil
	}
	if t, ok, err := b.reverseSRS(to, env.From); ok || err != nil {
		return t, err
	}
	found, err := b.resolve(ctx, cfg, to)
	if err != nil {
		return nil, err
	}
	users := found.users
	for _, u := range users {
		if err := checkQuota(u, env.Params.Size); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// postmasterDomain is the domain that a bare <postmaster> means: the first
// local domain.
func (b *Backend) postmasterDomain(ctx context.Context) (string, error) {
	ds, err := b.store.Domains(ctx)
	if err != nil {
		return "", tempFailure(err)
	}
	if len(ds) == 0 {
		return "", smtp.Errorf(550, "5.1.1", "No postmaster here: this server has no local domains")
	}
	return ds[0].Name, nil
}

func (b *Backend) isLocalDomain(ctx context.Context, domain string) (bool, error) {
	if strings.HasPrefix(domain, "[") {
		return false, nil // address literals are never local: no relay tricks
	}
	_, err := b.store.Domain(ctx, domain)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, tempFailure(err)
}

// checkQuota refuses a recipient whose mailbox cannot take a message of
// the announced size (size 0: unknown).
func checkQuota(u store.User, size int64) error {
	quota := u.Quota
	if quota <= 0 {
		return nil
	}
	if size > quota || u.UsedBytes+size > quota || u.UsedBytes >= quota {
		return quotaReply(u.Address, size, quota)
	}
	return nil
}

// quotaReply refuses a message a mailbox cannot take: for good when it
// is bigger than the whole quota, for now when the mailbox is full.
func quotaReply(address string, size, quota int64) error {
	if size > quota {
		return smtp.Errorf(552, "5.2.2", "The mailbox of <%s> cannot hold a message of this size", address)
	}
	return smtp.Errorf(452, "4.2.2", "The mailbox of <%s> is full, try again later", address)
}

// tempFailure hides an internal error behind the right temporary reply:
// 452 4.3.1 when the disk is full, 451 4.3.0 otherwise (RFC 3463).
func tempFailure(err error) error {
	var r *smtp.Reply
	if errors.As(err, &r) {
		return r
	}
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "disk is full") {
		return &smtp.Reply{Code: 452, Enhanced: "4.3.1", Text: "Insufficient system storage, try again later"}
	}
	return fmt.Errorf("%w", &internalError{err})
}

// internalError is logged by the session and answered 451 4.3.0.
type internalError struct{ err error }

func (e *internalError) Error() string { return e.err.Error() }
func (e *internalError) Unwrap() error { return e.err }

// Deliver commits the message to every resolved mailbox.
func (b *Backend) Deliver(ctx context.Context, s *smtpserver.SessionInfo, env *smtpserver.Transaction, msg *spool.Spool) error {
	cfg := b.cfg.Load()
	if err := b.checkSpace(msg.Size(), s.Remote.Addr().String()); err != nil {
		return err
	}
	hdr, err := scanHeader(msg.Reader())
	if err != nil {
		return tempFailure(err)
	}
	if cfg.MaxHops > 0 && hdr.Received >= cfg.MaxHops {
		return smtp.Errorf(554, "5.4.6", "Too many hops (%d Received header fields): this looks like a mail loop", hdr.Received+1)
	}
	now := time.Now()
	added := ""
	if s.Auth != nil {
		if err := b.checkFromHeader(ctx, s.Auth.User, hdr); err != nil {
			return err
		}
		author := s.Auth.User
		if strings.HasPrefix(author, "@") || author == "*" { // an API key of a domain or the server: no address of its own
			author = env.From.String()
		}
		added = submissionFields(hdr, author, env.QueueID, cfg.Hostname, now)
	}
	// Mail from our own senders (logged in, or a trusted network) to other
	// domains is DKIM-signed as it will be sent: the fields added above
	// and the message; our Received field goes above the signatures.
	var signature []byte
	if (s.Auth != nil || b.trusted(s)) && slices.ContainsFunc(env.Recipients, func(r smtpserver.Recipient) bool {
		_, remote := r.Target.(store.QueuedRecipient)
		return remote
	}) {
		signature = b.sign(ctx, hdr, env.From.String(), io.MultiReader(strings.NewReader(added), msg.Reader()))
	}
	// Mail from outside for local users is checked: SPF, DKIM, DMARC.
	var from origin
	if s.Auth == nil && !b.trusted(s) {
		var domains []string
		for _, r := range env.Recipients {
			if _, isLocal := r.Target.(local); isLocal {
				domains = append(domains, r.Addr.Domain)
			}
		}
		if len(domains) > 0 {
			if from, err = b.checkOrigin(ctx, s, env, msg, hdr, domains); err != nil {
				return err
			}
		}
	}
	// Every message stored carries our verdict, and no field claiming our
	// name but ours (RFC 8601 5): a logged-in sender could forge one for a
	// colleague's mail client to trust.
	if from.field == "" {
		if err := obscureClaims(msg, cfg.Hostname); err != nil {
			return tempFailure(err)
		}
		from.field = "Authentication-Results: " + cfg.Hostname + "; none\r\n"
		if s.Auth != nil {
			from.field = "Authentication-Results: " + cfg.Hostname + ";\r\n\tauth=pass (logged in)\r\n"
		}
	}
	top := from.field + env.Received + string(signature) + added
	// SMTPUTF8 stays with the message only when something in it needs it:
	// the envelope, the client's header, or the fields added here.
	smtputf8 := env.Params.SMTPUTF8 && (needsUTF8(env, hdr) || !smtp.IsASCII(top))
	m := &store.Message{
		QueueID:      env.QueueID,
		SMTPEnvelope: envelopeRecord(s, env, hdr, smtputf8),
		Received:     now,
		Body:         io.MultiReader(strings.NewReader(top), msg.Reader()),
		Size:         int64(len(top)) + msg.Size(),
		From:         hdr.From,
		Subject:      hdr.Subject,
	}
	if hdr.Froms == 0 && s.Auth != nil {
		m.From = s.Auth.User // the From field submissionFields added
	}
	seen := map[int64]bool{}
	addresses := map[int64]string{}
	var forwards []string
	forwardDomain := ""
	for _, r := range env.Recipients {
		if q, ok := r.Target.(store.QueuedRecipient); ok {
			m.Remote = append(m.Remote, q)
			continue
		}
		found, _ := r.Target.(local)
		for _, f := range found.forwards {
			if !slices.Contains(forwards, f) {
				forwards, forwardDomain = append(forwards, f), r.Addr.Domain
			}
		}
		for _, u := range found.users {
			if seen[u.ID] {
				continue
			}
			seen[u.ID] = true
			addresses[u.ID] = u.Address
			mailbox := store.Inbox
			if from.quarantine && cfg.dmarcFor(r.Addr.Domain) != "monitor" {
				if mailbox, err = b.junk(ctx, u.ID); err != nil {
					return tempFailure(err)
				}
			}
			m.Local = append(m.Local, store.LocalTarget{UserID: u.ID, Mailbox: mailbox, Prefix: deliveryPrefix(env.From, u.Address)})
		}
	}
	if len(m.Local) > 0 {
		m.Summary = b.summary(msg, top)
	}
	m.Log, m.Events = logEntry(s, env, hdr, m, b.trusted(s), cfg.Hostname)
	onlyForwarded := len(m.Local)+len(m.Remote) == 0
	if onlyForwarded && from.reject {
		return smtp.Errorf(550, "5.7.1", "Refused: the domain of the From address publishes a DMARC policy that rejects mail failing SPF and DKIM, and this message, which would be forwarded, fails both")
	}
	if onlyForwarded && from.junk {
		return smtp.Errorf(550, "5.7.1", "Refused: the domain of the From address publishes a DMARC policy that quarantines mail failing SPF and DKIM, and this message, which would only be forwarded, fails both")
	}
	// The quota is checked where the copy is counted, in the store's
	// transaction: two sessions cannot both squeeze into the last space.
	if !onlyForwarded {
		if err := b.store.Accept(ctx, m); err != nil {
			var qe *store.QuotaError
			if errors.As(err, &qe) {
				return quotaFailure([]error{quotaReply(addresses[qe.UserID], qe.Size, qe.Quota)}, len(m.Local) > 1)
			}
			return tempFailure(err)
		}
	}
	// Forwarded copies go after, as a message of their own with an SRS
	// envelope sender: a full mailbox or disk refuses the message before
	// any forward is queued; should queueing the forward fail after the
	// rest was stored, the client sends again and local copies may come
	// twice, but nothing is lost.
	if len(forwards) > 0 {
		if err := b.forward(ctx, env, m, msg, top, forwards, forwardDomain, from); err != nil {
			return err
		}
		if onlyForwarded {
			return nil
		}
	}
	if len(m.Remote) > 0 && b.queued != nil {
		b.queued()
	}
	if len(m.Local) > 0 {
		b.keepReports(ctx, msg, hdr.Subject, now)
		b.readComplaint(ctx, env, msg, now)
	}
	// Success reports only to senders known to be ours (logged in, or a
	// trusted network): to anyone else they would be backscatter, mail
	// that a forged MAIL FROM could aim at any third party.
	if s.Auth != nil || b.trusted(s) {
		b.reportDelivered(ctx, env, now, io.MultiReader(strings.NewReader(top), msg.Reader()), m.Size, smtputf8)
	}
	return nil
}

// summary parses the structure of a message for its mailbox copies (IMAP
// reads it instead of the message), n octets of fields written in front
// of it; nil when the message cannot be mapped, and IMAP computes it on
// first use.
func (b *Backend) summary(msg *spool.Spool, top string) []byte {
	data, unmap, err := msg.Map()
	if err != nil {
		b.log.Warn("parsing a message's structure (it is done again when IMAP reads it)", "err", err)
		return nil
	}
	defer unmap()
	root := message.Parse(data)
	header := append([]byte(top), data[:min(root.BodyStart, int64(len(data)))]...)
	root.Prefixed(int64(len(top)))
	return message.Encode(root, header)
}

// SetQueueNotifier sets what to call when a message entered the outbound
// queue (the scheduler's wake-up).
func (b *Backend) SetQueueNotifier(f func()) { b.queued = f }

// quotaFailure answers a message that some mailbox cannot take once its
// real size is known. After DATA one reply covers every recipient, so a
// permanent refusal is given only when no recipient could take it; when
// others could, the reply is temporary, so that nobody's copy is lost.
// (With the outbound queue, the others will get theirs at once and the
// sender a DSN for the full mailbox.)
func quotaFailure(errs []error, othersFit bool) error {
	if !othersFit {
		return errs[0]
	}
	var r *smtp.Reply
	errors.As(errs[0], &r)
	if r == nil || r.Temporary() {
		return errs[0]
	}
	return &smtp.Reply{Code: 452, Enhanced: "4.2.2", Text: strings.Replace(r.Text, "cannot hold a message of this size",
		"cannot hold a message of this size; the other recipients can: send it to them separately", 1)}
}

// deliveryPrefix is what final delivery adds for one mailbox: Return-Path
// (RFC 5321 4.4) and Delivered-To (RFC 9228).
func deliveryPrefix(from smtp.Address, to string) []byte {
	return []byte("Return-Path: <" + from.String() + ">\r\nDelivered-To: " + to + "\r\n")
}

// needsUTF8 reports whether mail sent with SMTPUTF8 needs it: a UTF-8
// address in the envelope, or UTF-8 in the header (or a header too long to
// look through). Many clients (Go's net/smtp among them) give SMTPUTF8
// whenever it is offered; an all-ASCII message so sent goes on to next hops
// without SMTPUTF8 as it is (RFC 6531 3.4: the parameter SHOULD NOT be
// given when nothing needs it), where it would otherwise bounce.
func needsUTF8(env *smtpserver.Transaction, hdr headerInfo) bool {
	if hdr.EightBit || !hdr.Complete || env.From.UTF8() {
		return true
	}
	for _, r := range env.Recipients {
		if r.Addr.UTF8() || !smtp.IsASCII(r.Params.ORcpt) {
			return true
		}
	}
	return false
}

func envelopeRecord(s *smtpserver.SessionInfo, env *smtpserver.Transaction, hdr headerInfo, smtputf8 bool) store.SMTPEnvelope {
	e := store.SMTPEnvelope{
		MailFrom:   env.From.String(),
		Ret:        env.Params.Ret,
		EnvID:      env.Params.EnvID,
		Body:       env.Params.Body,
		SMTPUTF8:   smtputf8,
		RequireTLS: env.Params.RequireTLS,
		// RFC 8689 5: the header is ignored when REQUIRETLS is given.
		TLSOptional: hdr.TLSOptional && !env.Params.RequireTLS,
		Client:      s.Remote.Addr().String(),
	}
	for _, r := range env.Recipients {
		e.Recipients = append(e.Recipients, store.SMTPRecipient{Address: r.Addr.String(), Notify: r.Params.Notify, ORcpt: r.Params.ORcpt})
	}
	return e
}
