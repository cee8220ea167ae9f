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
	Rcpt(ctx context.Context, s *SessionInfo, env *Envelope, to smtp.Address, p smtp.RcptParams) (any, error)
	// Deliver commits the message durably and returns only then.
	Deliver(ctx context.Context, s *SessionInfo, env *Envelope, msg *spool.Spool) error
}

// SessionInfo is what a backend knows of the client.
type SessionInfo struct {
	ID     string
	Remote netip.AddrPort
	Helo   string
	ESMTP  bool
	TLS    *tls.ConnectionState
}

// Envelope is the transaction so far.
type Envelope struct {
	QueueID    string // set when DATA or the first BDAT starts
	From       smtp.Address
	Params     smtp.MailParams
	Recipients []Recipient
}

// Recipient is one accepted RCPT TO.
type Recipient struct {
	Addr   smtp.Address
	Params smtp.RcptParams
	Target any // what Backend.Rcpt returned
}
