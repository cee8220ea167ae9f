// Package delivery takes queued messages to the next hop of their domain:
// it finds the mail exchangers (RFC 5321 5.1), tries their addresses in
// order, speaks SMTP with internal/smtpclient (STARTTLS whenever offered),
// and reports an outcome per recipient: delivered, failed for good, or to
// be tried again.
package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/dns"
	"mailroom/internal/smtp"
	"mailroom/internal/smtpclient"
)

// Config configures delivery.
type Config struct {
	LocalName string        // our hostname, for EHLO
	Port      int           // the next hop's port: 25, or a test port
	Timeout   time.Duration // per SMTP reply
}

// Recipient is one recipient to deliver, with DSN parameters in wire form.
type Recipient struct {
	Address string
	Params  string // "NOTIFY=... ORCPT=...", sent when the next hop offers DSN
}

// Job is one message for one domain.
type Job struct {
	Domain     string
	MailFrom   string
	Ret        string // RFC 3461 RET (FULL or HDRS), passed on when the next hop offers DSN
	EnvID      string // RFC 3461 ENVID, likewise
	EightBit   bool   // the message was received with BODY=8BITMIME
	SMTPUTF8   bool   // the message needs SMTPUTF8 (RFC 6531)
	Recipients []Recipient
	Size       int64
	Open       func() (io.ReadCloser, error)
}

// Outcome is what happened to one recipient.
type Outcome struct {
	Delivered bool
	Permanent bool   // failed for good (when not Delivered)
	Detail    string // the reply or error, for the record and the DSN
	RemoteMTA string // the host that answered, if any
	TLS       string // "TLS1.3 ..." or "" for plaintext
}

// Deliverer delivers jobs.
type Deliverer struct {
	cfg      Config
	resolver *dns.Resolver
}

// New returns a deliverer asking r for routes.
func New(cfg Config, r *dns.Resolver) *Deliverer {
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	return &Deliverer{cfg: cfg, resolver: r}
}

// Deliver tries the job's exchangers in order and returns one outcome per
// recipient, in order.
func (d *Deliverer) Deliver(ctx context.Context, job Job) []Outcome {
	mxs, err := d.resolver.LookupMX(ctx, job.Domain)
	if err != nil {
		return all(job, routeFailure(job.Domain, err))
	}
	last := Outcome{Detail: "no mail exchanger could be reached"}
	for _, mx := range mxs {
		ips, err := d.resolver.LookupIP(ctx, mx.Host)
		if err != nil {
			last = routeFailure(mx.Host, err)
			if mx.Implicit && last.Permanent {
				return all(job, last) // the domain itself has no address
			}
			last.Permanent = false // another exchanger may do
			continue
		}
		for _, ip := range ips {
			out, done := d.try(ctx, job, mx.Host, net.JoinHostPort(ip.String(), strconv.Itoa(d.cfg.Port)))
			if done {
				return out
			}
			last = out[0]
		}
	}
	return all(job, last)
}

// routeFailure describes a DNS failure; NXDOMAIN and Null MX are permanent.
func routeFailure(name string, err error) Outcome {
	switch {
	case errors.Is(err, dns.ErrNullMX):
		return Outcome{Permanent: true, Detail: "5.1.10 " + name + " accepts no mail (null MX)"}
	case errors.Is(err, dns.ErrNoDomain):
		return Outcome{Permanent: true, Detail: "5.1.2 " + name + " does not exist"}
	case errors.Is(err, dns.ErrNoAddress):
		return Outcome{Permanent: true, Detail: "5.1.2 " + name + " has no address"}
	}
	return Outcome{Detail: "4.4.3 DNS: " + err.Error()}
}

func all(job Job, o Outcome) []Outcome {
	out := make([]Outcome, len(job.Recipients))
	for i := range out {
		out[i] = o
	}
	return out
}

// try delivers through one address; done is false when the next address
// should be tried (connection failure, 4xx greeting).
func (d *Deliverer) try(ctx context.Context, job Job, host, addr string) ([]Outcome, bool) {
	c, err := smtpclient.Dial(ctx, addr, smtpclient.Options{
		LocalName: d.cfg.LocalName,
		// Opportunistic TLS to MX hosts: encrypt whenever offered; the
		// certificate is not checked (RFC 7435), as MTA-STS/DANE come later.
		TLS:     &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		Timeout: d.cfg.Timeout,
	})
	if err != nil {
		return []Outcome{{Detail: describe(err), RemoteMTA: host}}, false
	}
	defer c.Close()
	tlsInfo := ""
	if c.TLS != nil {
		tlsInfo = tls.VersionName(c.TLS.Version) + " " + tls.CipherSuiteName(c.TLS.CipherSuite)
	}
	_, dsn := c.Extension("DSN")
	rcpts := make([]smtpclient.Rcpt, len(job.Recipients))
	for i, r := range job.Recipients {
		rcpts[i] = smtpclient.Rcpt{Addr: r.Address}
		if dsn {
			rcpts[i].Params = r.Params
		}
	}
	params, err := mailParams(c, job, dsn)
	if err != nil {
		return all(job, Outcome{Permanent: true, Detail: err.Error(), RemoteMTA: host, TLS: tlsInfo}), true
	}
	body, err := job.Open()
	if err != nil {
		return all(job, Outcome{Detail: "4.3.0 local error reading the message: " + err.Error()}), true
	}
	defer body.Close()
	res, err := c.Send(ctx, job.MailFrom, params, rcpts, body, job.Size)
	if err != nil {
		var e *smtpclient.Error
		o := Outcome{Detail: describe(err), RemoteMTA: host, TLS: tlsInfo}
		if errors.As(err, &e) && e.Reply != nil {
			o.Permanent = e.Reply.Permanent()
		}
		return all(job, o), true
	}
	out := make([]Outcome, len(job.Recipients))
	for i, r := range res.Rcpts {
		out[i] = Outcome{Delivered: r.Code/100 == 2, Permanent: r.Code >= 500, Detail: replyText(r), RemoteMTA: host, TLS: tlsInfo}
	}
	return out, true
}

// mailParams writes the MAIL FROM parameters the next hop understands:
// BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), RET and ENVID (RFC 3461).
// A message that needs SMTPUTF8 cannot go to a hop without it.
func mailParams(c *smtpclient.Client, job Job, dsn bool) (string, error) {
	var p []string
	if _, ok := c.Extension("8BITMIME"); ok && job.EightBit {
		p = append(p, "BODY=8BITMIME")
	}
	if job.SMTPUTF8 {
		if _, ok := c.Extension("SMTPUTF8"); !ok {
			return "", errors.New("5.6.7 the next hop does not support SMTPUTF8, which this message needs")
		}
		p = append(p, "SMTPUTF8")
	}
	if dsn && job.Ret != "" {
		p = append(p, "RET="+job.Ret)
	}
	if dsn && job.EnvID != "" {
		p = append(p, "ENVID="+smtp.EncodeXtext(job.EnvID))
	}
	return strings.Join(p, " "), nil
}

func replyText(r *smtp.Reply) string {
	return strings.ReplaceAll(r.Error(), "\n", " ")
}

func describe(err error) string {
	var e *smtpclient.Error
	if errors.As(err, &e) && e.Reply != nil {
		return fmt.Sprintf("%s (at %s)", replyText(e.Reply), e.Stage)
	}
	return "4.4.1 " + err.Error()
}
