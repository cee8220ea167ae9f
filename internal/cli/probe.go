package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/dane"
	"mailroom/internal/dns"
	"mailroom/internal/mtasts"
	"mailroom/internal/smtpclient"
)

// probeStep is one line of a probe's transcript.
type probeStep struct {
	Dir  string `json:"dir"` // "C" (we sent), "S" (the server sent), "*" (what we found)
	Text string `json:"text"`
}

// probeReport is what "mailroom probe --json" prints.
type probeReport struct {
	Address     string      `json:"address"`
	Transcript  []probeStep `json:"transcript"`
	Extensions  []string    `json:"extensions"`
	TLS         *probeTLS   `json:"tls,omitempty"`
	Sent        string      `json:"sent,omitempty"` // the reply to the test message
	Error       string      `json:"error,omitempty"`
	MTASTS      string      `json:"mta_sts,omitempty"` // what --domain's MTA-STS policy says of the host
	DANE        string      `json:"dane,omitempty"`    // what the host's TLSA records say of its certificate
	ConnectTime string      `json:"connect_time,omitempty"`
}

type probeTLS struct {
	Version      string   `json:"version"`
	Cipher       string   `json:"cipher"`
	Chain        []string `json:"chain"` // subject, issuer and validity of each certificate
	Verified     bool     `json:"verified"`
	VerifyResult string   `json:"verify_result"`
	raw          [][]byte // the chain as sent
}

// probeCommand is "probe HOST[:PORT]": an SMTP dialogue with any server,
// each step shown.
func (a *app) probeCommand() *cobra.Command {
	var (
		asJSON, passwordStdin bool
		mode, helo, user      string
		from, to, caFile      string
		stsDomain             string
		timeout               time.Duration
	)
	cmd := &cobra.Command{Use: "probe HOST[:PORT]", Short: "Talk SMTP to a server and show each step: extensions, TLS, certificate, login, a test message",
		Long: `Connects to HOST (port 25 unless given), reads the greeting, says EHLO, starts TLS (STARTTLS unless
--tls implicit or none), shows the TLS version, cipher and certificate chain and whether it verifies for
HOST, logs in with --user (the password on standard input, --password-stdin), and sends a short test
message with --from and --to. What the server sends is shown with control characters replaced.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, port, err := net.SplitHostPort(args[0])
			if err != nil {
				host, port = args[0], "25"
			}
			if _, err := strconv.ParseUint(port, 10, 16); err != nil || host == "" {
				return fmt.Errorf("%q is not HOST or HOST:PORT: write it like mx.example.com or mx.example.com:587", args[0])
			}
			if mode != "starttls" && mode != "implicit" && mode != "none" {
				return fmt.Errorf("--tls %q: use starttls, implicit or none", mode)
			}
			if (from == "") != (to == "") {
				return errors.New("--from and --to go together: give both to send a test message")
			}
			// The configuration, when there is one, gives the EHLO name, the
			// resolver (names are resolved as deliveries resolve them, and
			// DANE's answers must come from it) and the MTA-STS port.
			server, dnssec, stsPort := "", "", 443
			if cfg, err := a.config(); err == nil {
				if helo == "" {
					helo = cfg.Hostname
				}
				server, dnssec, stsPort = cfg.DNS.Resolver.String(), cfg.DNS.DNSSEC, cfg.Outbound.MTASTSPort
			}
			roots, err := probeRoots(caFile)
			if err != nil {
				return err
			}
			var password string
			if user != "" {
				if !passwordStdin {
					return errors.New("--user needs the password on standard input: give --password-stdin")
				}
				line, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && line == "" {
					return errors.New("no password on standard input")
				}
				password = strings.TrimRight(line, "\r\n")
			}
			addr := net.JoinHostPort(host, port)
			resolver, rerr := dns.New(server, dnssec)
			if _, err := netip.ParseAddr(host); err != nil {
				if rerr != nil {
					return rerr
				}
				ips, err := resolver.LookupIP(cmd.Context(), host)
				if err != nil {
					return fmt.Errorf("%s: no address to connect to: %w", printable(host), err)
				}
				addr = net.JoinHostPort(ips[0].String(), port)
			}
			rep := a.probe(cmd.Context(), addr, host, mode, helo, user, password, from, to, roots, timeout)
			rep.DANE = probeDANE(cmd.Context(), resolver, host, port, rep.TLS)
			if stsDomain != "" && resolver != nil {
				rep.MTASTS = probeMTASTS(cmd.Context(), mtasts.NewFetcher(resolver, roots, stsPort), stsDomain, host, rep.TLS)
			}
			if asJSON {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				a.printProbe(rep)
			}
			if rep.Error != "" {
				return fmt.Errorf("probe of %s failed: %s", args[0], printable(rep.Error))
			}
			return nil
		}}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&mode, "tls", "starttls", "starttls, implicit (port 465) or none")
	f.StringVar(&helo, "helo", "", "the EHLO name (the configured hostname)")
	f.StringVar(&user, "user", "", "log in as this user after TLS")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	f.StringVar(&from, "from", "", "send a test message from this address")
	f.StringVar(&to, "to", "", "... to this address")
	f.StringVar(&stsDomain, "domain", "", "also say what this domain's MTA-STS policy makes of HOST (as an MX of the domain)")
	f.StringVar(&caFile, "ca-file", "", "trust these CA certificates (PEM) instead of the system's")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "limit for each step")
	return cmd
}

func probeRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return x509.SystemCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
	}
	return pool, nil
}

// probe runs the dialogue. Certificates are not checked during the
// handshake (the point is to show them), but verified after it.
func (a *app) probe(ctx context.Context, addr, host, mode, helo, user, password, from, to string, roots *x509.CertPool, timeout time.Duration) probeReport {
	rep := probeReport{Address: addr}
	note := func(f string, args ...any) {
		rep.Transcript = append(rep.Transcript, probeStep{"*", fmt.Sprintf(f, args...)})
	}
	opts := smtpclient.Options{LocalName: helo, Timeout: timeout, ReplyGrace: timeout,
		Dialer:   &net.Dialer{Timeout: timeout},
		Username: user, Password: password,
		Trace: func(sent bool, line string) {
			dir := "S"
			if sent {
				dir = "C"
			}
			rep.Transcript = append(rep.Transcript, probeStep{dir, line})
		}}
	if mode != "none" {
		opts.TLS = &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10} //nolint:gosec // verified below, to be shown
		opts.RequireTLS = true
		opts.ImplicitTLS = mode == "implicit"
	}
	ctx, cancel := context.WithTimeout(ctx, 4*timeout)
	defer cancel()
	start := time.Now()
	note("connecting to %s", addr)
	c, err := smtpclient.Dial(ctx, addr, opts)
	rep.ConnectTime = time.Since(start).Round(time.Millisecond).String()
	if c != nil {
		defer c.Close()
		rep.Extensions = c.Extensions()
		if c.TLS != nil {
			rep.TLS = describeTLS(c.TLS, host, roots)
		}
	}
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if from != "" {
		body := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: Mailroom probe\r\nDate: %s\r\nMessage-ID: <probe.%d@%s>\r\n\r\nA test message sent by 'mailroom probe'.\r\n",
			from, to, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), helo)
		res, err := c.Send(ctx, from, "", []smtpclient.Rcpt{{Addr: to}}, strings.NewReader(body), int64(len(body)))
		switch {
		case err != nil:
			rep.Error = err.Error()
		case res.Rcpts[0] != nil && res.Rcpts[0].Code >= 400:
			rep.Error = "the recipient was refused: " + res.Rcpts[0].Error()
		case res.Data != nil && res.Data.Code != 250:
			rep.Error = "the message was refused: " + res.Data.Error()
		case res.Data != nil:
			rep.Sent = res.Data.Error()
		}
	}
	return rep
}

func describeTLS(st *tls.ConnectionState, host string, roots *x509.CertPool) *probeTLS {
	t := &probeTLS{Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite)}
	for _, c := range st.PeerCertificates {
		t.raw = append(t.raw, c.Raw)
		t.Chain = append(t.Chain, fmt.Sprintf("%s (issued by %s; %s to %s; names %s)", c.Subject, c.Issuer,
			c.NotBefore.UTC().Format(time.DateOnly), c.NotAfter.UTC().Format(time.DateOnly), strings.Join(c.DNSNames, ", ")))
	}
	if len(st.PeerCertificates) == 0 {
		t.VerifyResult = "the server sent no certificate"
		return t
	}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
		t.VerifyResult = "not trusted for " + host + ": " + err.Error()
	} else {
		t.Verified, t.VerifyResult = true, "trusted for "+host
	}
	return t
}

// probeDANE looks up the host's TLSA records (RFC 7672) through the
// configured resolver and says whether they authenticate its certificate.
func probeDANE(ctx context.Context, r *dns.Resolver, host, port string, t *probeTLS) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return "" // TLSA records belong to names
	}
	name := "_" + port + "._tcp." + host
	recs, secure, err := r.LookupTLSA(ctx, name)
	switch {
	case err != nil:
		return "the TLSA records of " + name + " could not be looked up (a DANE sender would not deliver): " + err.Error()
	case len(recs) == 0:
		return "no TLSA records at " + name + " (senders use MTA-STS or opportunistic TLS)"
	case !r.Validating():
		return fmt.Sprintf("%d TLSA record(s) at %s, not validated: the resolver is not trusted to validate DNSSEC ([dns] dnssec)", len(recs), name)
	case !secure:
		return fmt.Sprintf("%d TLSA record(s) at %s, but the answer is not DNSSEC-validated: senders ignore them", len(recs), name)
	}
	usable := dane.Usable(recs)
	switch {
	case len(usable) == 0:
		return fmt.Sprintf("%d TLSA record(s) at %s, none usable for SMTP (only DANE-TA(2) and DANE-EE(3) are): senders require TLS without authenticating it", len(recs), name)
	case t == nil:
		return fmt.Sprintf("%d usable TLSA record(s) at %s, but no TLS to check them against: DANE senders will not deliver", len(usable), name)
	}
	if err := dane.Verify(t.raw, usable, []string{host}, time.Now()); err != nil {
		return "senders that use DANE will not deliver: " + strings.TrimPrefix(err.Error(), "DANE: ")
	}
	return fmt.Sprintf("the certificate matches %s's TLSA records (DNSSEC-validated)", host)
}

// probeMTASTS fetches a domain's MTA-STS policy as senders do and says
// whether it lets mail go to host: named by the policy, with a
// certificate valid for it.
func probeMTASTS(ctx context.Context, f *mtasts.Fetcher, domain, host string, t *probeTLS) string {
	p, err := f.Fetch(ctx, domain)
	switch {
	case err != nil:
		return "no policy for " + domain + ": " + err.Error()
	case p.Mode == mtasts.None:
		return "the policy of " + domain + " is mode none: senders do not apply it"
	case !p.Matches(host):
		return fmt.Sprintf("the policy of %s (mode %s) does not name %s (it names %s): senders that enforce it will not deliver here", domain, p.Mode, host, strings.Join(p.MX, ", "))
	case t == nil:
		return fmt.Sprintf("the policy of %s (mode %s) names %s, but there was no TLS: senders that enforce it will not deliver", domain, p.Mode, host)
	case !t.Verified:
		return fmt.Sprintf("the policy of %s (mode %s) names %s, but its certificate is %s: senders that enforce it will not deliver", domain, p.Mode, host, t.VerifyResult)
	}
	return fmt.Sprintf("the policy of %s (mode %s) names %s and its certificate is valid: senders that enforce it deliver", domain, p.Mode, host)
}

func (a *app) printProbe(rep probeReport) {
	w := a.stdout
	for _, s := range rep.Transcript {
		fmt.Fprintf(w, "%s: %s\n", s.Dir, printable(s.Text))
	}
	if rep.ConnectTime != "" {
		fmt.Fprintf(w, "*: dialogue up to TLS and login took %s\n", rep.ConnectTime)
	}
	if len(rep.Extensions) > 0 {
		fmt.Fprintf(w, "extensions: %s\n", printable(strings.Join(rep.Extensions, ", ")))
	}
	if t := rep.TLS; t != nil {
		fmt.Fprintf(w, "TLS: %s, %s\n", t.Version, t.Cipher)
		for i, c := range t.Chain {
			fmt.Fprintf(w, "certificate %d: %s\n", i, printable(c))
		}
		fmt.Fprintf(w, "certificate check: %s\n", printable(t.VerifyResult))
	}
	if rep.MTASTS != "" {
		fmt.Fprintf(w, "MTA-STS: %s\n", printable(rep.MTASTS))
	}
	if rep.DANE != "" {
		fmt.Fprintf(w, "DANE: %s\n", printable(rep.DANE))
	}
	if rep.Sent != "" {
		fmt.Fprintf(w, "test message accepted: %s\n", printable(rep.Sent))
	}
}
