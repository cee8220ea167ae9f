// Package config reads Mailroom's TOML configuration file, fills in the
// defaults, and reports every unknown key or bad value with its line.
// docs/configuration.md documents each field below; a test keeps the two
// in step.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"mailroom/internal/smtp"
)

// Config is the whole configuration file.
type Config struct {
	// Hostname is the name in the SMTP greeting, EHLO reply and Received
	// header fields.
	Hostname string `toml:"hostname"`
	// DataDir holds the store: the database and large message bodies.
	DataDir string `toml:"data_dir"`
	// ShutdownTimeout is how long SIGTERM waits for sessions in flight.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`

	Store      Store      `toml:"store"`
	Listen     Listen     `toml:"listen"`
	Clients    Clients    `toml:"clients"`
	Auth       Auth       `toml:"auth"`
	SMTP       SMTP       `toml:"smtp"`
	Submission Submission `toml:"submission"`
	IMAP       IMAP       `toml:"imap"`
	POP3       POP3       `toml:"pop3"`
	HTTP       HTTP       `toml:"http"`
	Events     Events     `toml:"events"`
	Webhooks   Webhooks   `toml:"webhooks"`
	Tracking   Tracking   `toml:"tracking"`
	TLS        TLS        `toml:"tls"`
	Mailbox    Mailbox    `toml:"mailbox"`
	MTASTS     MTASTS     `toml:"mta_sts"`
	DNS        DNS        `toml:"dns"`
	Outbound   Outbound   `toml:"outbound"`
	Queue      Queue      `toml:"queue"`
	Reports    Reports    `toml:"reports"`
	Log        Log        `toml:"log"`
}

// Listen maps each service to the addresses it listens on; a service with
// no address is not started.
type Listen struct {
	SMTP []HostPort `toml:"smtp"`
	// Submission is RFC 6409 submission with STARTTLS (587 in production).
	Submission []HostPort `toml:"submission"`
	// Submissions is submission over implicit TLS (RFC 8314, 465).
	Submissions []HostPort `toml:"submissions"`
	// IMAP (143, STARTTLS) and IMAPS (993, implicit TLS, RFC 8314).
	IMAP  []HostPort `toml:"imap"`
	IMAPS []HostPort `toml:"imaps"`
	// POP3 (110, STLS) and POP3S (995, implicit TLS).
	POP3  []HostPort `toml:"pop3"`
	POP3S []HostPort `toml:"pop3s"`
	// MTASTS serves our domains' MTA-STS policy over HTTPS (443 in
	// production), at mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461).
	MTASTS []HostPort `toml:"mta_sts"`
	// HTTP serves /healthz, /readyz and /metrics (and, later, the API and
	// the dashboard) over TLS with the server's certificates.
	HTTP []HostPort `toml:"http"`
}

// Store configures the store under data_dir.
type Store struct {
	// URL names the store: "" (or "sqlite:") for the embedded store in
	// data_dir, or "postgres://..." for PostgreSQL, shared by several nodes.
	URL string `toml:"url"`
	// MinFreeSpace is the free space in data_dir below which new mail is
	// refused with 452 4.3.1, before the disk is actually full (Postfix's
	// queue_minfree); 0 turns the reserve off.
	MinFreeSpace Size `toml:"min_free_space"`
}

// Clients says how client addresses are grouped for the per-client
// connection limits of every listener and for the login limiter.
type Clients struct {
	// IPv4Prefix and IPv6Prefix are the prefix lengths one client is
	// counted by: one IPv4 host and one IPv6 /64 by default.
	IPv4Prefix int `toml:"ipv4_prefix"`
	IPv6Prefix int `toml:"ipv6_prefix"`
}

// Auth configures the login limiter that every protocol with logins
// (submission, IMAP and POP3) shares.
type Auth struct {
	// MaxFailures failed logins from one client prefix within BanTime ban
	// the prefix from logging in for BanTime (SMTP 421 4.7.0).
	MaxFailures int `toml:"max_failures"`
	// MaxFailuresPerAccount failed logins for one account from one client
	// prefix lock that pair (not the account) for BanTime (454 4.7.0); 0
	// leaves pairs to MaxFailures.
	MaxFailuresPerAccount int      `toml:"max_failures_per_account"`
	BanTime               Duration `toml:"ban_time"`
	// FailureDelay is the wait before answering a failed login; it doubles
	// with each failure counted for the client, the pair or the account
	// (from anywhere), up to MaxFailureDelay. A right password is answered
	// at once.
	FailureDelay    Duration `toml:"failure_delay"`
	MaxFailureDelay Duration `toml:"max_failure_delay"`
	// LoginCacheTime is how long a main-password login proved by argon2id
	// is remembered (as a keyed hash), so that logging in again costs no
	// new check; 0 turns the cache off.
	LoginCacheTime Duration `toml:"login_cache_time"`
}

// SMTP configures the SMTP sessions.
type SMTP struct {
	// TrustedNetworks may relay without authentication (Postfix's
	// mynetworks). Empty by default.
	TrustedNetworks []Prefix `toml:"trusted_networks"`
	MaxMessageSize  Size     `toml:"max_message_size"`
	MaxRecipients   int      `toml:"max_recipients"`
	// MaxLineLength bounds a command line including CRLF (RFC 5321
	// 4.5.3.1.4); MAIL and RCPT may exceed it by 500 octets of parameters.
	MaxLineLength int `toml:"max_line_length"`
	// MaxConnections and MaxConnectionsPerClient bound the smtp
	// listener's connections, apart from every other listener's.
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
	MaxErrors               int `toml:"max_errors"`
	// CommandTimeout bounds the wait for each whole command line.
	CommandTimeout Duration `toml:"command_timeout"`
	// DataTimeout bounds each wait for message data; MinDataRate (octets
	// per second) is the average the data must keep up after that grace.
	DataTimeout Duration `toml:"data_timeout"`
	MinDataRate Size     `toml:"min_data_rate"`
	// MaxSessionTime caps a whole SMTP session on every SMTP listener.
	MaxSessionTime Duration `toml:"max_session_time"`
	// BareLineEndings is "reject" (default) or "normalize".
	BareLineEndings     string `toml:"bare_line_endings"`
	SubaddressSeparator string `toml:"subaddress_separator"`
	// MaxHops is how many Received fields a message may carry before it
	// is refused as a mail loop (554 5.4.6).
	MaxHops int `toml:"max_hops"`
	// DMARC is what mail from outside that fails its author's DMARC
	// policy gets: "enforce" (reject: 550 5.7.1; quarantine: the Junk
	// folder), "quarantine" (both to Junk) or "monitor" (delivered as
	// usual; the verdict is only in Authentication-Results).
	// DMARCDomains sets it per recipient domain.
	DMARC        string            `toml:"dmarc"`
	DMARCDomains map[string]string `toml:"dmarc_domains"`
	// ARCTrustedSealers are forwarders and mailing lists (their ARC d=
	// domains) whose sealed record of a message's authentication is
	// believed when DMARC fails here, because forwarding broke SPF or a
	// signature (RFC 8617). None by default.
	ARCTrustedSealers []string `toml:"arc_trusted_sealers"`
}

// Submission configures the submission listeners.
type Submission struct {
	// AuthWithoutTLSFromLoopback lets clients on a loopback address
	// authenticate without TLS. Off by default.
	AuthWithoutTLSFromLoopback bool `toml:"auth_without_tls_from_loopback"`
	// HideClientIP leaves the authenticated client's IP address out of the
	// Received header field.
	HideClientIP bool `toml:"hide_client_ip"`
	// MaxConnections and MaxConnectionsPerClient bound each submission
	// listener's connections (587 and 465 each have their own).
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
	// CRAMMD5 offers AUTH CRAM-MD5 to clients that know nothing better.
	// Off by default: it needs a password-equivalent secret kept for each
	// user (see docs/configuration.md); passwords set while it is off have
	// none, so set them again after turning it on.
	CRAMMD5 bool `toml:"cram_md5"`
	// Sending limits per user, counted per server process; 0 means none.
	// Over an hourly limit: 450 4.7.1; over a daily one: 550 5.7.1.
	MaxMessagesPerHour   int `toml:"max_messages_per_hour"`
	MaxMessagesPerDay    int `toml:"max_messages_per_day"`
	MaxRecipientsPerHour int `toml:"max_recipients_per_hour"`
	MaxRecipientsPerDay  int `toml:"max_recipients_per_day"`
}

// IMAP configures the IMAP listeners.
type IMAP struct {
	// MaxConnections and MaxConnectionsPerClient bound each IMAP listener's
	// connections (143 and 993 each have their own). Mail clients hold
	// several connections each, and phones one per folder they watch.
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
}

// POP3 configures the POP3 listeners.
type POP3 struct {
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
}

// HTTP configures the HTTP listener ([listen] http).
type HTTP struct {
	// MaxConnections and MaxConnectionsPerClient bound its connections,
	// in its own pool: a flood of HTTP never takes what SMTP and IMAP
	// need. Over either, a connection is closed at once.
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
	// APIRatePerMinute bounds the requests of an API key that sets no
	// rate of its own.
	APIRatePerMinute int `toml:"api_rate_per_minute"`
	// MetricsFrom are the networks /metrics answers (a scraper's); others
	// get 403: the figures name destination domains and volumes.
	MetricsFrom []Prefix `toml:"metrics_from"`
}

// Events configures the message log and its events.
type Events struct {
	// Keep is how long events, the message log and their counts are kept;
	// "0s" keeps them for ever.
	Keep Duration `toml:"keep"`
	// ComplaintsTo are local addresses that mailbox providers send abuse
	// feedback reports (ARF, RFC 5965) to; each report about a message
	// Mailroom sent becomes a complaint event, and its recipient is
	// suppressed for ComplaintSuppressFor.
	ComplaintsTo         []string `toml:"complaints_to"`
	ComplaintSuppressFor Duration `toml:"complaint_suppress_for"`
}

// Webhooks configures the posting of events to webhooks.
type Webhooks struct {
	// RetryIntervals are the waits after each failed attempt; the last
	// repeats until GiveUpAfter has passed since the event.
	RetryIntervals []Duration `toml:"retry_intervals"`
	GiveUpAfter    Duration   `toml:"give_up_after"`
	// Timeout bounds one attempt (connection, TLS, request, answer).
	Timeout Duration `toml:"timeout"`
	// AllowNetworks are networks of this side (loopback, private,
	// link-local) webhooks may post to; by default none (SSRF).
	AllowNetworks []Prefix `toml:"allow_networks"`
}

// Tracking configures open and click tracking of HTML mail sent through
// the API (off unless BaseURL and Domains or Streams are set).
type Tracking struct {
	// BaseURL is the HTTP listener as recipients reach it
	// ("https://mail.example.com:8443"): the image and the links point there.
	BaseURL string `toml:"base_url"`
	Opens   bool   `toml:"opens"`
	Clicks  bool   `toml:"clicks"`
	// Domains (senders' domains) and Streams whose messages are tracked.
	Domains []string `toml:"domains"`
	Streams []string `toml:"streams"`
}

// TLS configures certificates for STARTTLS.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Certificates are more pairs, for more names: the one matching the
	// name a client asks for (SNI) is presented, else the first.
	Certificates []CertPair `toml:"certificates"`
	// SelfSigned makes and uses a self-signed certificate (kept in
	// data_dir/tls) when no certificate is given. On by default, so that
	// STARTTLS and submission work from the first start.
	SelfSigned bool `toml:"self_signed"`
	// HandshakeTimeout bounds a TLS handshake (implicit TLS or STARTTLS).
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// ReloadInterval is how often the certificate files are checked for
	// changes (a renewal), which are then loaded without a restart.
	ReloadInterval Duration `toml:"reload_interval"`
	// ACME gets certificates automatically; on when Names is not empty.
	ACME ACME `toml:"acme"`
}

// ACME configures automatic certificates from an ACME CA (RFC 8555).
type ACME struct {
	Directory string   `toml:"directory"`
	Email     string   `toml:"email"`
	Names     []string `toml:"names"`
	// CAFile holds extra roots to trust for the CA's own HTTPS (a test CA).
	CAFile string `toml:"ca_file"`
	// HTTPPort and TLSALPNPort are where challenge listeners bind (80 and
	// 443 from the CA's view); 0 turns one off.
	HTTPPort    int    `toml:"http_port"`
	TLSALPNPort int    `toml:"tls_alpn_port"`
	ListenHost  string `toml:"listen_host"`
}

// CertPair names the PEM files of a certificate chain and its key.
type CertPair struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// MTASTS is the MTA-STS policy served for our domains when [listen]
// mta_sts is set.
type MTASTS struct {
	// Mode is "testing" (senders report failures but deliver; the way to
	// start) or "enforce" (senders deliver only to our MX over TLS with a
	// valid certificate).
	Mode string `toml:"mode"`
	// MaxAge is how long senders keep the policy (RFC 8461 suggests
	// weeks once it is right).
	MaxAge Duration `toml:"max_age"`
}

// Mailbox configures local delivery.
type Mailbox struct {
	// Quota is the default per-user quota; 0 means none.
	Quota Size `toml:"quota"`
}

// Outbound configures delivery to other domains.
type Outbound struct {
	// Port is the next hop's SMTP port: 25, or another in tests.
	Port int `toml:"port"`
	// MaxConcurrent bounds deliveries under way at once.
	MaxConcurrent int `toml:"max_concurrent"`
	// MaxPerDestination bounds deliveries under way at once to one domain.
	MaxPerDestination int `toml:"max_per_destination"`
	// RateLimits caps messages per minute per recipient domain; "*" is
	// every domain not listed.
	RateLimits map[string]float64 `toml:"rate_limits"`
	// ConnectionCacheTime keeps a connection open after a message for the
	// next one to the same destination; 0 turns reuse off.
	ConnectionCacheTime Duration `toml:"connection_cache_time"`
	// Relay routes mail for some domains (or all) through smart hosts.
	Relay []Relay `toml:"relay"`
	// Pool makes the connections for some senders from chosen local
	// addresses (IP pools).
	Pool []Pool `toml:"pool"`
	// MTASTS follows receiving domains' MTA-STS policies (RFC 8461): mail
	// to a domain whose policy enforces goes only to the MX hosts it
	// names, over TLS with a certificate valid for the host, or waits.
	MTASTS bool `toml:"mta_sts"`
	// MTASTSPort is the policy hosts' HTTPS port: 443, or another in tests.
	MTASTSPort int `toml:"mta_sts_port"`
	// CAFile adds certificate authorities (PEM) to the system's for the
	// certificates checked when sending: MX hosts under MTA-STS, policy
	// hosts.
	CAFile string `toml:"ca_file"`
}

// Relay is a smart host: an upstream server that takes the mail for some
// recipient domains, with TLS and a login.
type Relay struct {
	// Domains are the recipient domains it takes; "*" for every other.
	Domains []string `toml:"domains"`
	Host    string   `toml:"host"`
	// Port defaults to 587 for "starttls", 465 for "implicit", 25 for "none".
	Port int `toml:"port"`
	// TLS is "starttls" (required, certificate checked), "implicit" (TLS
	// on connect, port 465) or "none" (plaintext, no login).
	TLS string `toml:"tls"`
	// CAFile adds certificate authorities (PEM) to check the host with.
	CAFile   string `toml:"ca_file"`
	Username string `toml:"username"`
	// PasswordFile holds the password (its first line), kept out of the
	// configuration file.
	PasswordFile string `toml:"password_file"`
}

// Pool is a set of local addresses that the outbound connections for
// some senders are made from.
type Pool struct {
	Name      string `toml:"name"`
	Addresses []IP   `toml:"addresses"`
	// Senders are sender addresses or domains; "*" for every other.
	Senders []string `toml:"senders"`
}

// Queue configures retries of the outbound queue.
type Queue struct {
	// RetryIntervals are the waits after each failed attempt; the last
	// repeats until Expire.
	RetryIntervals []Duration `toml:"retry_intervals"`
	// ClaimLease is how long a node's claim on a queue entry lasts unless
	// renewed (every third of it, while the node lives): after a node
	// dies, another sharing its store takes its entries that much later.
	ClaimLease Duration `toml:"claim_lease"`
	// Expire is how long a recipient may stay in the queue before it
	// bounces.
	Expire Duration `toml:"expire"`
	// DelayWarning sends the sender one warning (an RFC 3464 "delayed"
	// report) when a recipient is still waiting this long after it was
	// queued; 0 turns warnings off.
	DelayWarning Duration `toml:"delay_warning"`
	// SuppressFor keeps an address that failed for good (a 5xx reply) out
	// of outbound mail this long; 0 turns the suppression list off.
	SuppressFor Duration `toml:"suppress_for"`
	// ReportSizeLimit caps what a report (bounce, delay warning, success
	// report) returns of the original: beyond it, the header only, itself
	// cut at this size. MaxReportsPerHour bounds the reports sent to any
	// one domain in an hour; 0 means no bound.
	ReportSizeLimit   Size `toml:"report_size_limit"`
	MaxReportsPerHour int  `toml:"max_reports_per_hour"`
}

// Reports configures the reports this server sends to other domains:
// TLS-RPT (RFC 8460) on its outbound TLS sessions and DMARC aggregate
// reports (RFC 7489 7.2) on the mail it received, each to the addresses
// the domain publishes.
type Reports struct {
	TLS   bool `toml:"tls"`
	DMARC bool `toml:"dmarc"`
	// From is the reports' From address, whose domain signs them (DKIM);
	// "" means postmaster at the first local domain.
	From string `toml:"from"`
	// Organization names us in the reports ("" means the hostname).
	Organization string `toml:"organization"`
	// Interval is the period one report covers, from midnight UTC: a day,
	// as receivers expect (shorter only to see reports at once in tests).
	Interval Duration `toml:"interval"`
}

// DNS configures name resolution.
type DNS struct {
	// Resolver, when set, is the DNS server to ask instead of the system's.
	Resolver HostPort `toml:"resolver"`
	// DNSSEC says whose word that an answer is DNSSEC-validated (the AD
	// bit) counts, for DANE: "auto" (a resolver on loopback, or one
	// resolv.conf marks "options trust-ad"), "on" (the resolver's, wherever
	// it is), "off" (nobody's: no DANE).
	DNSSEC string `toml:"dnssec"`
}

// Log configures logging.
type Log struct {
	Format string `toml:"format"` // text or json
	Level  string `toml:"level"`  // debug, info, warn, error
}

// Default returns the development defaults: loopback only, data in ./data.
func Default() *Config {
	return &Config{
		Hostname:        "localhost",
		DataDir:         "data",
		ShutdownTimeout: Duration(30 * time.Second),
		Listen:          Listen{SMTP: []HostPort{{"127.0.0.1:2525"}}},
		Store:           Store{MinFreeSpace: 200 << 20},
		Clients:         Clients{IPv4Prefix: 32, IPv6Prefix: 64},
		Auth: Auth{MaxFailures: 10, MaxFailuresPerAccount: 5, BanTime: Duration(15 * time.Minute),
			FailureDelay: Duration(250 * time.Millisecond), MaxFailureDelay: Duration(4 * time.Second), LoginCacheTime: Duration(5 * time.Minute)},
		SMTP: SMTP{
			TrustedNetworks:         []Prefix{},
			MaxMessageSize:          25 << 20,
			MaxRecipients:           100,
			MaxLineLength:           512,
			MaxConnections:          1000,
			MaxConnectionsPerClient: 50,
			MaxErrors:               10,
			CommandTimeout:          Duration(5 * time.Minute),
			DataTimeout:             Duration(3 * time.Minute),
			MinDataRate:             1 << 10,
			MaxSessionTime:          Duration(time.Hour),
			BareLineEndings:         "reject",
			SubaddressSeparator:     "+",
			MaxHops:                 50,
			DMARC:                   "enforce",
			ARCTrustedSealers:       []string{},
		},
		IMAP:     IMAP{MaxConnections: 5000, MaxConnectionsPerClient: 50},
		POP3:     POP3{MaxConnections: 1000, MaxConnectionsPerClient: 10},
		HTTP:     HTTP{MaxConnections: 1000, MaxConnectionsPerClient: 50, APIRatePerMinute: 600, MetricsFrom: privateNetworks()},
		Events:   Events{Keep: Duration(30 * 24 * time.Hour), ComplaintsTo: []string{}, ComplaintSuppressFor: Duration(365 * 24 * time.Hour)},
		Tracking: Tracking{Opens: true, Clicks: true, Domains: []string{}, Streams: []string{}},
		Webhooks: Webhooks{RetryIntervals: []Duration{Duration(10 * time.Second), Duration(30 * time.Second), Duration(time.Minute), Duration(5 * time.Minute),
			Duration(15 * time.Minute), Duration(30 * time.Minute), Duration(time.Hour), Duration(2 * time.Hour), Duration(4 * time.Hour)},
			GiveUpAfter: Duration(24 * time.Hour), Timeout: Duration(10 * time.Second), AllowNetworks: []Prefix{}},
		Submission: Submission{MaxConnections: 500, MaxConnectionsPerClient: 20,
			MaxMessagesPerHour: 1000, MaxMessagesPerDay: 10000, MaxRecipientsPerHour: 2000, MaxRecipientsPerDay: 10000},
		TLS: TLS{SelfSigned: true, ReloadInterval: Duration(30 * time.Second), HandshakeTimeout: Duration(10 * time.Second),
			ACME: ACME{Directory: "https://acme-v02.api.letsencrypt.org/directory", HTTPPort: 80}},
		Mailbox: Mailbox{Quota: 1 << 30},
		MTASTS:  MTASTS{Mode: "testing", MaxAge: Duration(7 * 24 * time.Hour)},
		Outbound: Outbound{Port: 25, MaxConcurrent: 100, MaxPerDestination: 20, ConnectionCacheTime: Duration(5 * time.Second),
			MTASTS: true, MTASTSPort: 443},
		Queue: Queue{Expire: Duration(120 * time.Hour), ClaimLease: Duration(3 * time.Minute), RetryIntervals: defaultRetryIntervals(), SuppressFor: Duration(7 * 24 * time.Hour), DelayWarning: Duration(4 * time.Hour),
			ReportSizeLimit: 50 << 10, MaxReportsPerHour: 500},
		DNS:     DNS{DNSSEC: "auto"},
		Reports: Reports{TLS: true, DMARC: true, Interval: Duration(24 * time.Hour)},
		Log:     Log{Format: "text", Level: "info"},
	}
}

// privateNetworks are loopback and the private ranges (RFC 1918, RFC 4193).
func privateNetworks() []Prefix {
	var out []Prefix
	for _, p := range []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"} {
		out = append(out, Prefix(netip.MustParsePrefix(p)))
	}
	return out
}

func defaultRetryIntervals() []Duration {
	var out []Duration
	for _, d := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour} {
		out = append(out, Duration(d))
	}
	return out
}

// Dev returns the development defaults that "mailroom serve" runs on
// without a configuration file: Default plus the submission listeners on
// loopback.
func Dev() *Config {
	c := Default()
	c.Listen.Submission = []HostPort{{"127.0.0.1:2587"}}
	c.Listen.Submissions = []HostPort{{"127.0.0.1:2465"}}
	c.Listen.IMAP = []HostPort{{"127.0.0.1:2143"}}
	c.Listen.IMAPS = []HostPort{{"127.0.0.1:2993"}}
	c.Listen.POP3 = []HostPort{{"127.0.0.1:2110"}}
	c.Listen.POP3S = []HostPort{{"127.0.0.1:2995"}}
	return c
}

// Load reads the file at path over the defaults.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse reads TOML data (named name in errors) over the defaults.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	if err := checkValueKinds(name, data); err != nil {
		return nil, err
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, describe(name, err)
	}
	if err := c.validate(); err != nil {
		key, _, _ := strings.Cut(err.Error(), ":")
		if line := lineOf(data, key); line > 0 {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// lineOf finds the line that sets a dotted key such as "smtp.max_errors",
// for errors found after decoding; 0 when the key is not in the file.
func lineOf(data []byte, dotted string) int {
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			header, _, _ := strings.Cut(strings.TrimLeft(line, "["), "]") // drop a trailing comment
			table = strings.TrimSpace(header)
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		full := strings.TrimSpace(k)
		if table != "" {
			full = table + "." + full
		}
		if full == dotted {
			return i + 1
		}
	}
	return 0
}

// renamed maps keys of earlier versions to the keys that replaced them.
var renamed = map[string]string{
	"smtp.max_connections_per_ip":  "smtp.max_connections_per_client",
	"submission.max_auth_failures": "auth.max_failures",
	"submission.auth_ban_time":     "auth.ban_time",
}

// describe turns go-toml's errors into "file:line: key: problem".
func describe(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var msgs []string
		for _, e := range strict.Errors {
			row, _ := e.Position()
			key := strings.Join(e.Key(), ".")
			if to, ok := renamed[key]; ok {
				msgs = append(msgs, fmt.Sprintf("%s:%d: %q is now %q: rename it (see docs/configuration.md)", name, row, key, to))
				continue
			}
			msgs = append(msgs, fmt.Sprintf("%s:%d: unknown key %q: check the spelling against docs/configuration.md", name, row, key))
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		msg := humanType(strings.TrimPrefix(de.Error(), "toml: "))
		if key != "" {
			return fmt.Errorf("%s:%d: %s: %s", name, row, key, msg)
		}
		return fmt.Errorf("%s:%d: %s", name, row, msg)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// typeMismatch is go-toml's message for a value of the wrong kind, which
// names Go types ("cannot decode TOML string into struct field
// config.Submission.HideClientIP of type bool").
var typeMismatch = regexp.MustCompile(`^cannot decode TOML (\w+) into (?:struct field \S+ of type|a Go value of type) (\S+)$`)

// humanType rewrites a type mismatch as what to write instead.
func humanType(msg string) string {
	m := typeMismatch.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	found, goType := m[1], m[2]
	var want string
	switch {
	case goType == "bool":
		want = "true or false (without quotes)"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		want = "a whole number such as 10 (without quotes)"
	case strings.HasPrefix(goType, "float"):
		want = "a number such as 60"
	case goType == "string":
		want = `a string in double quotes, such as "example"`
	case strings.HasPrefix(goType, "[]"):
		want = `a list in brackets, such as ["a", "b"]`
	case strings.HasPrefix(goType, "map["):
		want = `a table such as { "example.com" = 60 }`
	default:
		want = "a table of keys (see docs/configuration.md)"
	}
	article := "a"
	if strings.ContainsRune("aeiou", rune(found[0])) {
		article = "an"
	}
	return fmt.Sprintf("must be %s, not %s %s", want, article, found)
}

// validate checks values that the types alone cannot, and puts the host
// name in its canonical form (lower case, A-labels).
func (c *Config) validate() error {
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		return fmt.Errorf("hostname: %q is not a host name", c.Hostname)
	}
	h, err := smtp.NormalizeDomain(c.Hostname)
	if err != nil {
		return fmt.Errorf("hostname: %q is not a valid domain name", c.Hostname)
	}
	c.Hostname = h // the greeting and Received fields need A-labels
	if c.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	switch u := c.Store.URL; {
	case u == "" || u == "sqlite:":
	case strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://"):
	default:
		return fmt.Errorf(`store.url: %q is not a store this mailroom knows: "postgres://user@host/db" for PostgreSQL, or remove url (or set "sqlite:") for the embedded store in data_dir`, u)
	}
	s := c.SMTP
	checks := []struct {
		ok  bool
		msg string
	}{
		{s.MaxMessageSize >= 1024, "smtp.max_message_size: must be at least 1KiB"},
		{s.MaxRecipients >= 1, "smtp.max_recipients: must be at least 1"},
		{s.MaxLineLength >= 512, "smtp.max_line_length: must be at least 512 (RFC 5321 4.5.3.1.4)"},
		{s.MaxConnections >= 1, "smtp.max_connections: must be at least 1"},
		{s.MaxConnectionsPerClient >= 1, "smtp.max_connections_per_client: must be at least 1"},
		{c.Submission.MaxConnections >= 1, "submission.max_connections: must be at least 1"},
		{c.Submission.MaxConnectionsPerClient >= 1, "submission.max_connections_per_client: must be at least 1"},
		{c.IMAP.MaxConnections >= 1, "imap.max_connections: must be at least 1"},
		{c.IMAP.MaxConnectionsPerClient >= 1, "imap.max_connections_per_client: must be at least 1"},
		{c.POP3.MaxConnections >= 1, "pop3.max_connections: must be at least 1"},
		{c.POP3.MaxConnectionsPerClient >= 1, "pop3.max_connections_per_client: must be at least 1"},
		{len(c.Webhooks.RetryIntervals) > 0 && slices.IndexFunc(c.Webhooks.RetryIntervals, func(d Duration) bool { return d.D() < time.Second }) < 0,
			"webhooks.retry_intervals: give at least one wait, each of a second or more"},
		{c.Webhooks.GiveUpAfter.D() >= time.Minute, "webhooks.give_up_after: must be a minute or more"},
		{c.Webhooks.Timeout.D() >= time.Second && c.Webhooks.Timeout.D() <= 5*time.Minute, "webhooks.timeout: must be from 1s to 5m"},
		{c.Tracking.BaseURL == "" || strings.HasPrefix(c.Tracking.BaseURL, "https://") || strings.HasPrefix(c.Tracking.BaseURL, "http://"),
			"tracking.base_url: give the HTTP listener's URL as recipients reach it, such as https://mail.example.com:8443"},
		{c.Events.Keep >= 0, "events.keep: must not be negative (\"0s\" keeps events for ever)"},
		{c.HTTP.APIRatePerMinute >= 0, "http.api_rate_per_minute: must not be negative (0: no limit)"},
		{c.HTTP.MaxConnections >= 1, "http.max_connections: must be at least 1"},
		{c.HTTP.MaxConnectionsPerClient >= 1, "http.max_connections_per_client: must be at least 1"},
		{c.Clients.IPv4Prefix >= 8 && c.Clients.IPv4Prefix <= 32, "clients.ipv4_prefix: must be from 8 to 32 (32: one address)"},
		{c.Clients.IPv6Prefix >= 16 && c.Clients.IPv6Prefix <= 128, "clients.ipv6_prefix: must be from 16 to 128 (64: one host's usual block)"},
		{s.MaxSessionTime.D() >= time.Minute, "smtp.max_session_time: must be at least 1m"},
		{c.TLS.HandshakeTimeout.D() >= time.Second, "tls.handshake_timeout: must be at least 1s"},
		{s.MaxErrors >= 1, "smtp.max_errors: must be at least 1"},
		{s.MaxHops >= 1, "smtp.max_hops: must be at least 1"},
		{c.Auth.MaxFailures >= 0, "auth.max_failures: must be 0 (off) or more"},
		{c.Auth.MaxFailuresPerAccount >= 0, "auth.max_failures_per_account: must be 0 (off) or more"},
		{c.Auth.BanTime.D() >= time.Second, "auth.ban_time: must be at least 1s"},
		{c.Auth.MaxFailureDelay >= c.Auth.FailureDelay, "auth.max_failure_delay: must be at least failure_delay"},
		{c.TLS.ReloadInterval.D() >= time.Second, "tls.reload_interval: must be at least 1s"},
		{c.Outbound.Port > 0 && c.Outbound.Port < 65536, "outbound.port: must be a port number (25 in production)"},
		{c.Outbound.MTASTSPort > 0 && c.Outbound.MTASTSPort < 65536, "outbound.mta_sts_port: must be a port number (443 in production)"},
		{c.Outbound.MaxConcurrent >= 1, "outbound.max_concurrent: must be at least 1"},
		{c.Outbound.MaxPerDestination >= 1, "outbound.max_per_destination: must be at least 1"},
		{c.Outbound.ConnectionCacheTime.D() >= 0, "outbound.connection_cache_time: must be 0 (no reuse) or more"},
		{len(c.Queue.RetryIntervals) > 0 && slices.IndexFunc(c.Queue.RetryIntervals, func(d Duration) bool { return d.D() < time.Second }) < 0,
			"queue.retry_intervals: give at least one interval, each at least 1s"},
		{c.Queue.Expire.D() >= time.Minute, "queue.expire: must be at least 1m"},
		{c.Queue.ReportSizeLimit >= 1024, "queue.report_size_limit: must be at least 1KiB"},
		{c.Queue.MaxReportsPerHour >= 0, "queue.max_reports_per_hour: must be 0 (no bound) or more"},
		{len(c.TLS.ACME.Names) == 0 || strings.HasPrefix(c.TLS.ACME.Directory, "https://"), "tls.acme.directory: must be an https:// URL"},
		{len(c.TLS.ACME.Names) == 0 || c.TLS.ACME.HTTPPort > 0 || c.TLS.ACME.TLSALPNPort > 0, "tls.acme.http_port: set it (80) or tls_alpn_port (443), or the CA cannot check the names"},
		{min(c.Submission.MaxMessagesPerHour, c.Submission.MaxMessagesPerDay, c.Submission.MaxRecipientsPerHour, c.Submission.MaxRecipientsPerDay) >= 0,
			"submission: sending limits must be 0 (none) or more"},
		{s.CommandTimeout.D() >= time.Second, "smtp.command_timeout: must be at least 1s (RFC 5321 4.5.3.2 asks for 5m)"},
		{s.DataTimeout.D() >= time.Second, "smtp.data_timeout: must be at least 1s (RFC 5321 4.5.3.2 asks for 3m)"},
		{s.BareLineEndings == "reject" || s.BareLineEndings == "normalize", `smtp.bare_line_endings: must be "reject" or "normalize"`},
		{validDMARC(s.DMARC), `smtp.dmarc: must be "enforce", "quarantine" or "monitor"`},
		{c.MTASTS.Mode == "testing" || c.MTASTS.Mode == "enforce", `mta_sts.mode: must be "testing" or "enforce"`},
		{c.MTASTS.MaxAge.D() >= time.Hour && c.MTASTS.MaxAge.D() <= 365*24*time.Hour, "mta_sts.max_age: must be between 1h and a year"},
		{len(s.SubaddressSeparator) <= 1, `smtp.subaddress_separator: must be one character such as "+", or "" to turn sub-addressing off`},
		{c.TLS.CertFile == "" || c.TLS.KeyFile != "", "tls.cert_file: key_file must be given with it"},
		{c.TLS.KeyFile == "" || c.TLS.CertFile != "", "tls.key_file: cert_file must be given with it"},
		{c.Reports.Interval.D() >= time.Second && (24*time.Hour)%c.Reports.Interval.D() == 0, "reports.interval: must divide a day (24h, 1h, 1m...)"},
		{c.Reports.From == "" || strings.Contains(c.Reports.From, "@"), `reports.from: must be an address such as "reports@example.com"`},
		{c.Queue.ClaimLease.D() >= time.Second, "queue.claim_lease: must be at least 1s (3m suits most: a node's death is noticed that much later)"},
		{c.DNS.DNSSEC == "auto" || c.DNS.DNSSEC == "on" || c.DNS.DNSSEC == "off", `dns.dnssec: must be "auto", "on" or "off"`},
		{c.Log.Format == "text" || c.Log.Format == "json", `log.format: must be "text" or "json"`},
		{validLevel(c.Log.Level), `log.level: must be "debug", "info", "warn" or "error"`},
	}
	for name, l := range map[string][]HostPort{"smtp": c.Listen.SMTP, "submission": c.Listen.Submission, "submissions": c.Listen.Submissions,
		"imap": c.Listen.IMAP, "imaps": c.Listen.IMAPS, "pop3": c.Listen.POP3, "pop3s": c.Listen.POP3S, "mta_sts": c.Listen.MTASTS} {
		if slices.Contains(l, HostPort{}) {
			return fmt.Errorf(`listen.%s: an empty address: write it like "127.0.0.1:25"`, name)
		}
	}
	for d, v := range s.DMARCDomains {
		if !validDMARC(v) {
			return fmt.Errorf(`smtp.dmarc_domains: %q: must be "enforce", "quarantine" or "monitor"`, d)
		}
	}
	if err := c.Outbound.validate(); err != nil {
		return err
	}
	for _, ch := range checks {
		if !ch.ok {
			return errors.New(ch.msg)
		}
	}
	return nil
}

func validLevel(l string) bool {
	switch l {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

func validDMARC(v string) bool { return v == "enforce" || v == "quarantine" || v == "monitor" }
