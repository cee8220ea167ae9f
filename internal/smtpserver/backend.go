package smtpserver

import (
	"context"
	"crypto/tls"
	"net/netip"

	"mailroom/internal/smtp"
	"mailroom/internal/spool"
)

// Backend decides what a session may do and commits what it receives. Its
// methods return a *smtp.Reply as the error to send that exact reply;
// any other error becomes "451 4.3.0" and is logged, never shown.
type Backend interface {
	// Mail checks the reverse-path of a new transaction.
	Mail(ctx context.Context, s *SessionInfo, from smtp.Address, p smtp.MailParams) error
	// Rcpt checks one forward-path. What it returns is kept with the
	// recipient and handed back to Deliver.
	Rcpt(ctx context.Context, s *SessionInfo, env *Transaction, to smtp.Address, p smtp.RcptParams) (any, error)
	// Deliver commits the message durably and returns only then.
	Deliver(ctx context.Context, s *SessionInfo, env *Transaction, msg *spool.Spool) error
}

// Mode is what a listener is for.
type Mode int

const (
	// ModeMX receives mail from other servers (port 25); AUTH is not offered.
	ModeMX Mode = iota
	// ModeSubmission is RFC 6409 submission with STARTTLS (port 587):
	// AUTH is required before MAIL.
	ModeSubmission
	// ModeSubmissions is submission over implicit TLS (RFC 8314, port 465).
	ModeSubmissions
)

func (m Mode) String() string {
	return [...]string{"smtp", "submission", "submissions"}[m]
}

// AuthInfo describes a client that has authenticated.
type AuthInfo struct {
	// User is the canonical login name (the user's address); for an API
	// key of a domain "@domain" (it sends as any address of the domain),
	// for one of the server "*" (any address of a local domain).
	User      string
	Mechanism string
}

// SessionInfo is what a backend knows of the client.
type SessionInfo struct {
	ID     string
	Mode   Mode
	Remote netip.AddrPort
	Helo   string
	ESMTP  bool
	TLS    *tls.ConnectionState
	Auth   *AuthInfo
}

// Transaction is the transaction so far.
type Transaction struct {
	QueueID string // set when DATA or the first BDAT starts
	// Received is our trace header field for the message, CRLF-terminated;
	// the backend puts it on top of the client's data.
	Received   string
	From       smtp.Address
	Params     smtp.MailParams
	Recipients []Recipient
	// Stream, Tags and Metadata label the message in the message log (the
	// HTTP API sets them; SMTP has no way to).
	Stream   string
	Tags     []string
	Metadata map[string]string
}

// Recipient is one accepted RCPT TO.
type Recipient struct {
	Addr   smtp.Address
	Params smtp.RcptParams
	Target any // what Backend.Rcpt returned
}
