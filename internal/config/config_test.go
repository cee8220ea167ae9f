package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePublicKeys(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		check func(c *Config) bool
	}{
		{name: "hostname is read", toml: `hostname = "mx.example.com"`,
			check: func(c *Config) bool { return c.Hostname == "mx.example.com" }},
		{name: "an upper-case hostname is lower-cased", toml: `hostname = "MX.Example.COM"`,
			check: func(c *Config) bool { return c.Hostname == "mx.example.com" }},
		{name: "an IDN hostname is stored as A-labels", toml: `hostname = "mx.bücher.example"`,
			check: func(c *Config) bool { return c.Hostname == "mx.xn--bcher-kva.example" }},
		{name: "a literal string works like a basic one", toml: `hostname = 'mx.example.com' # the public name`,
			check: func(c *Config) bool { return c.Hostname == "mx.example.com" }},
		{name: "data_dir is read", toml: `data_dir = "/var/lib/mailroom"`,
			check: func(c *Config) bool { return c.DataDir == "/var/lib/mailroom" }},
		{name: "listen smtp takes several addresses", toml: "[listen]\nsmtp = [\"0.0.0.0:25\", \"[::]:25\", \":2525\"]",
			check: func(c *Config) bool {
				return reflect.DeepEqual(c.Listen.SMTP, []HostPort{NewHostPort("0.0.0.0:25"), NewHostPort("[::]:25"), NewHostPort(":2525")})
			}},
		{name: "an empty listen smtp turns SMTP off", toml: "[listen]\nsmtp = []",
			check: func(c *Config) bool { return len(c.Listen.SMTP) == 0 }},
		{name: "smtp trusted_networks takes networks and addresses", toml: "[smtp]\ntrusted_networks = [\"192.0.2.0/24\", \"2001:db8::/32\", \"198.51.100.7\", \"10.1.2.3/8\"]",
			check: func(c *Config) bool {
				var got []string
				for _, p := range c.SMTP.TrustedNetworks {
					b, _ := p.MarshalText()
					got = append(got, string(b))
				}
				return reflect.DeepEqual(got, []string{"192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32", "10.0.0.0/8"})
			}},
		{name: "dns resolver is read", toml: "[dns]\nresolver = \"192.0.2.53:53\"",
			check: func(c *Config) bool { return c.DNS.Resolver.String() == "192.0.2.53:53" }},
		{name: "an IPv6 dns resolver is read", toml: "[dns]\nresolver = \"[2001:db8::53]:53\"",
			check: func(c *Config) bool { return c.DNS.Resolver.String() == "[2001:db8::53]:53" }},
		{name: "sizes take a unit", toml: "[smtp]\nmax_message_size = \"50MiB\"\n[mailbox]\nquota = \"2GB\"",
			check: func(c *Config) bool { return c.SMTP.MaxMessageSize == 50<<20 && c.Mailbox.Quota == 2e9 }},
		{name: "sizes take a plain integer", toml: "[smtp]\nmax_message_size = 1_048_576",
			check: func(c *Config) bool { return c.SMTP.MaxMessageSize == 1<<20 }},
		{name: "a zero quota means none", toml: "[mailbox]\nquota = 0",
			check: func(c *Config) bool { return c.Mailbox.Quota == 0 }},
		{name: "durations are read", toml: "shutdown_timeout = \"1m30s\"\n[smtp]\ncommand_timeout = \"10m\"\ndata_timeout = \"1h\"",
			check: func(c *Config) bool {
				return c.ShutdownTimeout.D() == 90*time.Second && c.SMTP.CommandTimeout.D() == 10*time.Minute && c.SMTP.DataTimeout.D() == time.Hour
			}},
		{name: "the normalize policy is read", toml: "[smtp]\nbare_line_endings = \"normalize\"",
			check: func(c *Config) bool { return c.SMTP.BareLineEndings == "normalize" }},
		{name: "sub-addressing can be turned off", toml: "[smtp]\nsubaddress_separator = \"\"",
			check: func(c *Config) bool { return c.SMTP.SubaddressSeparator == "" }},
		{name: "the SMTP limits are read", toml: "[smtp]\nmax_recipients = 5\nmax_line_length = 1000\nmax_connections = 3\nmax_connections_per_client = 2\nmax_errors = 4\nmax_hops = 30",
			check: func(c *Config) bool {
				s := c.SMTP
				return s.MaxRecipients == 5 && s.MaxLineLength == 1000 && s.MaxConnections == 3 && s.MaxConnectionsPerClient == 2 && s.MaxErrors == 4 && s.MaxHops == 30
			}},
		{name: "tls takes a certificate and key together", toml: "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"",
			check: func(c *Config) bool { return c.TLS.CertFile == "c.pem" && c.TLS.KeyFile == "k.pem" && c.TLS.SelfSigned }},
		{name: "log format and level are read", toml: "[log]\nformat = \"json\"\nlevel = \"debug\"",
			check: func(c *Config) bool { return c.Log == Log{Format: "json", Level: "debug"} }},
		{name: "dotted keys work like tables", toml: "smtp.max_errors = 3\nlog.level = \"warn\"",
			check: func(c *Config) bool { return c.SMTP.MaxErrors == 3 && c.Log.Level == "warn" }},
		{name: "inline tables work like tables", toml: "smtp = { max_errors = 3, command_timeout = \"1m\" }",
			check: func(c *Config) bool { return c.SMTP.MaxErrors == 3 && c.SMTP.CommandTimeout.D() == time.Minute }},
		{name: "keys not given keep their defaults", toml: "[smtp]\nmax_errors = 3",
			check: func(c *Config) bool { return c.SMTP.MaxRecipients == 100 && c.Hostname == "localhost" }},
		{name: "a file with CRLF line endings is read", toml: "hostname = \"mx.example.com\"\r\n[log]\r\nlevel = \"error\"\r\n",
			check: func(c *Config) bool { return c.Hostname == "mx.example.com" && c.Log.Level == "error" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.toml", []byte(tt.toml))
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.toml, err)
			}
			if !tt.check(c) {
				t.Errorf("Parse(%q) = %+v", tt.toml, c)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Run("an empty file gives the defaults", func(t *testing.T) {
		for _, data := range []string{"", "\n# only a comment\n\n"} {
			c, err := Parse("f.toml", []byte(data))
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", data, err)
			}
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("Parse(%q) = %+v, want %+v", data, c, Default())
			}
		}
	})
	t.Run("the defaults are the documented development values", func(t *testing.T) {
		d := Default()
		want := &Config{
			Hostname:        "localhost",
			DataDir:         "data",
			ShutdownTimeout: Duration(30 * time.Second),
			Listen:          Listen{SMTP: []HostPort{NewHostPort("127.0.0.1:2525")}},
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
			Mailbox:  Mailbox{Quota: 1 << 30},
			MTASTS:   MTASTS{Mode: "testing", MaxAge: Duration(7 * 24 * time.Hour)},
			DNS:      DNS{DNSSEC: "auto"},
			Reports:  Reports{TLS: true, DMARC: true, Interval: Duration(24 * time.Hour)},
			Outbound: Outbound{Port: 25, MaxConcurrent: 100, MaxPerDestination: 20, ConnectionCacheTime: Duration(5 * time.Second), MTASTS: true, MTASTSPort: 443},
			Queue: Queue{ClaimLease: Duration(3 * time.Minute), Expire: Duration(120 * time.Hour), RetryIntervals: defaultRetryIntervals(), SuppressFor: Duration(7 * 24 * time.Hour), DelayWarning: Duration(4 * time.Hour),
				ReportSizeLimit: 50 << 10, MaxReportsPerHour: 500},
			Log: Log{Format: "text", Level: "info"},
		}
		if !reflect.DeepEqual(d, want) {
			t.Errorf("Default() = %+v, want %+v", d, want)
		}
		if d.DNS.Resolver.String() != "" || len(d.SMTP.TrustedNetworks) != 0 || d.TLS.CertFile != "" {
			t.Errorf("Default() trusts networks, sets a resolver or a certificate: %+v", d)
		}
	})
	t.Run("the defaults pass validation", func(t *testing.T) {
		if err := Default().validate(); err != nil {
			t.Errorf("Default().validate() = %v", err)
		}
	})
	t.Run("each call returns its own copy", func(t *testing.T) {
		a := Default()
		a.Listen.SMTP[0] = NewHostPort("0.0.0.0:25")
		a.SMTP.TrustedNetworks = append(a.SMTP.TrustedNetworks, Prefix{})
		if b := Default(); b.Listen.SMTP[0].String() != "127.0.0.1:2525" || len(b.SMTP.TrustedNetworks) != 0 {
			t.Errorf("changing one Default() changed another: %+v", b)
		}
	})
}

func TestParseUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string // each must appear in the error
	}{
		{name: "an unknown top-level key is named with its line", toml: "hostname = \"a.example\"\nhostnme = \"b\"",
			want: []string{`f.toml:2: unknown key "hostnme"`}},
		{name: "an unknown key in a table is named with its table", toml: "[smtp]\nmax_error = 5",
			want: []string{`f.toml:2: unknown key "smtp.max_error"`}},
		{name: "an unknown table is named", toml: "# settings\n[smpt]\nmax_errors = 5",
			want: []string{`f.toml:2: unknown key "smpt"`}},
		{name: "every unknown key is reported", toml: "hostnme = \"b\"\n[smtp]\nfoo = 1\nmax_error = 2",
			want: []string{`f.toml:1: unknown key "hostnme"`, `f.toml:3: unknown key "smtp.foo"`, `f.toml:4: unknown key "smtp.max_error"`}},
		{name: "an unknown dotted key is named", toml: "\nlog.colour = true",
			want: []string{`f.toml:2: unknown key "log.colour"`}},
		// go-toml leaves the inline table's own key out of the name.
		{name: "an unknown key in an inline table is named", toml: "log = { level = \"info\", colour = true }",
			want: []string{`f.toml:1: unknown key "`, `colour"`}},
		{name: "a key of another program's config is unknown", toml: "[smtp]\nmynetworks = \"127.0.0.0/8\"",
			want: []string{`f.toml:2: unknown key "smtp.mynetworks"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.toml))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tt.toml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.toml, err, w)
				}
			}
		})
	}
}

func TestParseBadValues(t *testing.T) {
	tests := []struct {
		name   string
		toml   string
		prefix string // the error must start with this: file, line and key
		detail string // and contain this
	}{
		// Wrong TOML types.
		{"a number for a string is refused", "hostname = 5", "f.toml:1: hostname: ", `must be a string in double quotes, such as "example", not an integer`},
		{"a string for a number is refused", "[smtp]\nmax_recipients = \"100\"", "f.toml:2: smtp.max_recipients: ", "must be a whole number such as 10 (without quotes), not a string"},
		{"a string for a list is refused", "[listen]\nsmtp = \"127.0.0.1:25\"", "f.toml:2: listen.smtp: ", "must be a list in brackets"},
		{"a string for a list of networks is refused", "[smtp]\ntrusted_networks = \"10.0.0.0/8\"", "f.toml:2: smtp.trusted_networks: ", "must be a list in brackets"},
		{"a number for a table is refused", "smtp = 5", "f.toml:1: smtp: ", "must be a table of keys (see docs/configuration.md), not an integer"},
		{"a list for an address is refused", "[dns]\nresolver = [\"192.0.2.53:53\"]", "f.toml:2: dns.resolver: ", "not an array"},
		{"an empty listening address is refused", "[listen]\nsmtp = [\"\"]", "f.toml:2: listen.smtp: ", "an empty address"},
		{"a number too big for an int is refused", "[smtp]\nmax_errors = 99999999999999999999", "f.toml:2: smtp.max_errors: ", "too large"},

		// Durations.
		{"an integer duration is refused rather than read as nanoseconds", "shutdown_timeout = 30", "f.toml:1: shutdown_timeout: ", `must be a string such as "30s"`},
		{"a float duration is refused", "[smtp]\ncommand_timeout = 1.5", "f.toml:2: smtp.command_timeout: ", "must be a string"},
		{"a boolean duration is refused", "[smtp]\ndata_timeout = true", "f.toml:2: smtp.data_timeout: ", "must be a string"},
		{"a duration without a unit is refused", `shutdown_timeout = "30"`, "f.toml:1: shutdown_timeout: ", "is not a duration"},
		{"a negative duration is refused", `shutdown_timeout = "-1s"`, "f.toml:1: shutdown_timeout: ", "is not a duration"},
		{"a duration in days is refused", "[smtp]\ncommand_timeout = \"1d\"", "f.toml:2: smtp.command_timeout: ", "is not a duration"},
		{"a command timeout under a second is refused", "[smtp]\ncommand_timeout = \"5ms\"", "f.toml:2: smtp.command_timeout: ", "at least 1s"},
		{"an integer duration in a dotted key is refused", "smtp.command_timeout = 30", "f.toml:1: smtp.command_timeout: ", "must be a string"},
		{"an integer duration in an inline table is refused", "\nsmtp = { command_timeout = 30 }", "f.toml:2: smtp.command_timeout: ", "must be a string"},

		// Sizes.
		{"a size with an unknown unit is refused", "[smtp]\nmax_message_size = \"25XB\"", "f.toml:2: smtp.max_message_size: ", "is not a size"},
		{"a fractional size is refused", "[smtp]\nmax_message_size = \"1.5GiB\"", "f.toml:2: smtp.max_message_size: ", "is not a size"},
		{"a float size is refused", "[smtp]\nmax_message_size = 1.5", "f.toml:2: smtp.max_message_size: ", "must be a number of bytes"},
		{"a boolean size is refused", "[mailbox]\nquota = true", "f.toml:2: mailbox.quota: ", "must be a number of bytes"},
		{"a negative integer size is refused", "[mailbox]\nquota = -5", "f.toml:2: mailbox.quota: ", "must not be negative"},
		{"a negative string size is refused", "[mailbox]\nquota = \"-5MiB\"", "f.toml:2: mailbox.quota: ", "is not a size"},
		{"a message size under 1KiB is refused", "[smtp]\nmax_message_size = \"512\"", "f.toml:2: smtp.max_message_size: ", "at least 1KiB"},

		// Networks.
		{"a prefix too long is refused", "[smtp]\ntrusted_networks = [\"10.0.0.0/33\"]", "f.toml:2: smtp.trusted_networks: ", "is not an IP network"},
		{"a host name for a network is refused", "[smtp]\ntrusted_networks = [\"example.com\"]", "f.toml:2: smtp.trusted_networks: ", "is not an IP network"},
		{"a number for a network is refused", "[smtp]\ntrusted_networks = [\"10.0.0.0/8\", 10]", "f.toml:2: smtp.trusted_networks: ", "must be a string"},
		{"a nested list of networks is refused", "[smtp]\ntrusted_networks = [[\"10.0.0.0/8\"]]", "f.toml:2: smtp.trusted_networks: ", "must be a string"},

		// Addresses.
		{"an address without a port is refused", "[dns]\nresolver = \"192.0.2.53\"", "f.toml:2: dns.resolver: ", "is not host:port"},
		{"a number for an address is refused", "[dns]\nresolver = 53", "f.toml:2: dns.resolver: ", "must be a string"},
		{"a listen address without a port is refused", "[listen]\nsmtp = [\"localhost\"]", "f.toml:2: listen.smtp: ", "is not host:port"},
		{"a port with a sign is refused", "[listen]\nsmtp = [\"127.0.0.1:+25\"]", "f.toml:2: listen.smtp: ", "bad port"},
		{"a port over 65535 is refused", "[listen]\nsmtp = [\"127.0.0.1:65536\"]", "f.toml:2: listen.smtp: ", "bad port"},
		{"a named port is refused", "[listen]\nsmtp = [\"127.0.0.1:smtp\"]", "f.toml:2: listen.smtp: ", "bad port"},
		{"a host with a space is refused", "[listen]\nsmtp = [\"a b:25\"]", "f.toml:2: listen.smtp: ", "bad host"},
		{"an unbracketed IPv6 address is refused", "[listen]\nsmtp = [\"::1:25\"]", "f.toml:2: listen.smtp: ", "is not host:port"},
		{"a number in a list of addresses is refused at the key's line", "[listen]\nsmtp = [\n  \"127.0.0.1:25\",\n  25,\n]", "f.toml:2: listen.smtp: ", "must be a string"},

		// Enumerations and checks after decoding.
		{"an unknown bare line ending policy is refused", "[smtp]\nbare_line_endings = \"maybe\"", "f.toml:2: smtp.bare_line_endings: ", `"reject" or "normalize"`},
		{"the line is found under a table header with a comment", "[smtp] # SMTP sessions\n\nbare_line_endings = \"maybe\"", "f.toml:3: smtp.bare_line_endings: ", `"reject" or "normalize"`},
		{"the line is found for a dotted key", "# x\nsmtp.bare_line_endings = \"maybe\"", "f.toml:2: smtp.bare_line_endings: ", `"reject" or "normalize"`},
		{"the line is found in a CRLF file", "hostname = \"x.example\"\r\n[log]\r\nlevel = \"loud\"\r\n", "f.toml:3: log.level: ", `"debug", "info", "warn" or "error"`},
		{"an unknown log level is refused", "[log]\nlevel = \"loud\"", "f.toml:2: log.level: ", `"debug", "info", "warn" or "error"`},
		{"an upper-case log level is refused", "[log]\nlevel = \"INFO\"", "f.toml:2: log.level: ", "must be"},
		{"an unknown log format is refused", "[log]\nformat = \"xml\"", "f.toml:2: log.format: ", `"text" or "json"`},
		{"a smart host without a host is refused", "[[outbound.relay]]\ndomains = [\"*\"]", "f.toml:", `outbound.relay[0].host: name the smart host`},
		{"a smart host with an unknown TLS mode is refused", "[[outbound.relay]]\nhost = \"s.example\"\ndomains = [\"*\"]\ntls = \"maybe\"", "f.toml:", `"starttls", "implicit" or "none"`},
		{"a login without TLS is refused", "[[outbound.relay]]\nhost = \"s.example\"\ndomains = [\"*\"]\ntls = \"none\"\nusername = \"u\"\npassword_file = \"/p\"", "f.toml:", "a login needs TLS"},
		{"a username without a password file is refused", "[[outbound.relay]]\nhost = \"s.example\"\ndomains = [\"*\"]\nusername = \"u\"", "f.toml:", "username and password_file together"},
		{"a smart host without domains is refused", "[[outbound.relay]]\nhost = \"s.example\"", "f.toml:", `["*"] for all`},
		{"a bad relay domain is refused", "[[outbound.relay]]\nhost = \"s.example\"\ndomains = [\"a b\"]", "f.toml:", "is not a domain name"},
		{"a pool address that is not an IP is refused", "[[outbound.pool]]\nname = \"p\"\naddresses = [\"mx.example\"]", "f.toml:3: outbound.pool.addresses: ", "is not an IP address"},
		{"two pools with one name are refused", "[[outbound.pool]]\nname = \"p\"\naddresses = [\"192.0.2.1\"]\nsenders = [\"*\"]\n[[outbound.pool]]\nname = \"p\"\naddresses = [\"192.0.2.2\"]\nsenders = [\"x\"]", "f.toml:", "a name of its own"},
		{"a pool without senders is refused", "[[outbound.pool]]\nname = \"p\"\naddresses = [\"192.0.2.1\"]", "f.toml:", `["*"] for every other`},
		{"a negative rate limit is refused", "[outbound]\nrate_limits = { \"a.example\" = -1 }", "f.toml:", "0 (no limit) or more"},
		{"zero deliveries per destination are refused", "[outbound]\nmax_per_destination = 0", "f.toml:2: outbound.max_per_destination: ", "at least 1"},
		{"zero recipients are refused", "[smtp]\nmax_recipients = 0", "f.toml:2: smtp.max_recipients: ", "at least 1"},
		{"a line length under 512 is refused", "[smtp]\nmax_line_length = 100", "f.toml:2: smtp.max_line_length: ", "at least 512"},
		{"zero connections are refused", "[smtp]\nmax_connections = 0", "f.toml:2: smtp.max_connections: ", "at least 1"},
		{"zero connections per client are refused", "[smtp]\nmax_connections_per_client = -1", "f.toml:2: smtp.max_connections_per_client: ", "at least 1"},
		{"a renamed key names its new name", "[smtp]\nmax_connections_per_ip = 5", "f.toml:2: \"smtp.max_connections_per_ip\" is now \"smtp.max_connections_per_client\"", "rename it"},
		{"a prefix length out of range is refused", "[clients]\nipv6_prefix = 3", "f.toml:2: clients.ipv6_prefix: ", "from 16 to 128"},
		{"zero errors are refused", "[smtp]\nmax_errors = 0", "f.toml:2: smtp.max_errors: ", "at least 1"},
		{"zero hops are refused", "[smtp]\nmax_hops = 0", "f.toml:2: smtp.max_hops: ", "at least 1"},
		{"a two-character separator is refused", "[smtp]\nsubaddress_separator = \"+-\"", "f.toml:2: smtp.subaddress_separator: ", "one character"},
		{"a certificate without a key is refused", "[tls]\ncert_file = \"c.pem\"", "f.toml:2: tls.cert_file: ", "key_file"},
		{"a key without a certificate is refused", "[tls]\n\nkey_file = \"k.pem\"", "f.toml:3: tls.key_file: ", "cert_file"},
		{"an empty hostname is refused", `hostname = ""`, "f.toml:1: hostname: ", "not a host name"},
		{"a hostname with a space is refused", `hostname = "mx example"`, "f.toml:1: hostname: ", "not a host name"},
		{"a hostname with a bad label is refused", `hostname = "-mx.example.com"`, "f.toml:1: hostname: ", "not a valid domain name"},
		{"a hostname with a trailing dot is refused", `hostname = "mx.example.com."`, "f.toml:1: hostname: ", "not a valid domain name"},
		{"an address literal hostname is refused", `hostname = "[192.0.2.1]"`, "f.toml:1: hostname: ", "not a valid domain name"},
		{"an empty data_dir is refused", "\ndata_dir = \"\"", "f.toml:2: data_dir: ", "must not be empty"},

		// TOML syntax.
		{"a key given twice is refused at its second line", "hostname = \"a\"\nhostname = \"b\"", "f.toml:2: hostname: ", "already defined"},
		{"a missing value is a syntax error with its line", "\nhostname = ", "f.toml:2: ", "expected value"},
		{"an array table for a table is refused", "[[smtp]]\nmax_errors = 1", "f.toml:1: smtp: ", "array table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.toml", []byte(tt.toml))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.toml, c)
			}
			if c != nil {
				t.Errorf("Parse(%q) returned a config with its error", tt.toml)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.prefix) || !strings.Contains(msg, tt.detail) {
				t.Errorf("Parse(%q) error = %q, want %q ... %q", tt.toml, msg, tt.prefix, tt.detail)
			}
		})
	}
}

func TestParseInlineTableCheckNamesTheKey(t *testing.T) {
	// lineOf cannot find keys inside inline tables, so the error has no
	// line; it must still name the file and the key.
	_, err := Parse("f.toml", []byte("smtp = { max_errors = 0 }"))
	if err == nil || !strings.HasPrefix(err.Error(), "f.toml") || !strings.Contains(err.Error(), "smtp.max_errors: must be at least 1") {
		t.Errorf("error = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mailroom.toml")
	if err := os.WriteFile(path, []byte("hostname = \"mx.example.com\"\n[log]\nlevel = \"loud\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("Load names the file and line in errors", func(t *testing.T) {
		_, err := Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), path+":3: log.level: ") {
			t.Errorf("Load error = %v", err)
		}
	})
	t.Run("Load reports a missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "missing.toml"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load error = %v, want a not-exist error", err)
		}
	})
}

func TestSizeUnmarshalText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Size
		bad  bool
	}{
		{name: "a plain number is bytes", in: "1024", want: 1024},
		{name: "zero is allowed", in: "0", want: 0},
		{name: "B is bytes", in: "100B", want: 100},
		{name: "KiB is 1024", in: "512KiB", want: 512 << 10},
		{name: "MiB is 1024²", in: "25MiB", want: 25 << 20},
		{name: "GiB is 1024³", in: "1GiB", want: 1 << 30},
		{name: "TiB is 1024⁴", in: "2TiB", want: 2 << 40},
		{name: "KB is 1000", in: "1KB", want: 1000},
		{name: "MB is 1000²", in: "10MB", want: 10e6},
		{name: "GB is 1000³", in: "3GB", want: 3e9},
		{name: "TB is 1000⁴", in: "1TB", want: 1e12},
		{name: "spaces around the number and unit are allowed", in: " 25 MiB ", want: 25 << 20},
		{name: "the largest size is 2^62", in: "4194304TiB", want: 1 << 62},
		{name: "a size over 2^62 is refused", in: "4194305TiB", bad: true},
		{name: "a plain number over 2^62 is refused", in: "4611686018427387905", bad: true},
		{name: "a number beyond int64 is refused", in: "99999999999999999999", bad: true},
		{name: "a lower-case unit is refused", in: "25mib", bad: true},
		{name: "a unit alone is refused", in: "MiB", bad: true},
		{name: "an empty string is refused", in: "", bad: true},
		{name: "a negative size is refused", in: "-1", bad: true},
		{name: "a fraction is refused", in: "1.5GiB", bad: true},
		{name: "hexadecimal is refused", in: "0x10", bad: true},
		{name: "a doubled unit is refused", in: "1KiBKiB", bad: true},
		{name: "an unknown unit is refused", in: "1PiB", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Size
			err := s.UnmarshalText([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Errorf("UnmarshalText(%q) = %d, want an error", tt.in, s)
				}
				return
			}
			if err != nil || s != tt.want {
				t.Errorf("UnmarshalText(%q) = %d, %v, want %d", tt.in, s, err, tt.want)
			}
		})
	}
}

func TestSizeMarshalText(t *testing.T) {
	tests := []struct {
		name string
		in   Size
		want string
	}{
		{"zero is written as a number", 0, "0"},
		{"bytes that are not whole KiB are written as a number", 1536, "1536"},
		{"a decimal size is written as a number", 1000, "1000"},
		{"whole KiB are written in KiB", 3 << 10, "3KiB"},
		{"whole MiB are written in MiB", 25 << 20, "25MiB"},
		{"whole GiB are written in GiB", 1 << 30, "1GiB"},
		{"whole TiB are written in TiB", 5 << 40, "5TiB"},
		{"1.5GiB is written in MiB", 3 << 29, "1536MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.in.MarshalText()
			if err != nil || string(b) != tt.want {
				t.Fatalf("MarshalText(%d) = %q, %v, want %q", tt.in, b, err, tt.want)
			}
			var back Size
			if err := back.UnmarshalText(b); err != nil || back != tt.in {
				t.Errorf("UnmarshalText(%q) = %d, %v, want %d", b, back, err, tt.in)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		bad  bool
	}{
		{name: "seconds are read", in: "30s", want: 30 * time.Second},
		{name: "minutes are read", in: "5m", want: 5 * time.Minute},
		{name: "hours are read", in: "2h", want: 2 * time.Hour},
		{name: "combined units are read", in: "1h30m", want: 90 * time.Minute},
		{name: "milliseconds are read", in: "1500ms", want: 1500 * time.Millisecond},
		{name: "zero needs no unit", in: "0", want: 0},
		{name: "a number without a unit is refused", in: "30", bad: true},
		{name: "a negative duration is refused", in: "-1s", bad: true},
		{name: "days are refused", in: "1d", bad: true},
		{name: "an empty string is refused", in: "", bad: true},
		{name: "spaces are refused", in: "30 s", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Errorf("UnmarshalText(%q) = %v, want an error", tt.in, d.D())
				}
				return
			}
			if err != nil || d.D() != tt.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v, want %v", tt.in, d.D(), err, tt.want)
			}
			b, _ := d.MarshalText()
			var back Duration
			if err := back.UnmarshalText(b); err != nil || back != d {
				t.Errorf("MarshalText = %q, which reads back as %v, %v", b, back.D(), err)
			}
		})
	}
}

func TestHostPort(t *testing.T) {
	tests := []struct {
		name string
		in   string
		bad  bool
	}{
		{name: "an IPv4 address and port are accepted", in: "127.0.0.1:2525"},
		{name: "a bracketed IPv6 address and port are accepted", in: "[::1]:2525"},
		{name: "an empty host means every address", in: ":25"},
		{name: "a host name and port are accepted", in: "mx.example.com:25"},
		{name: "port zero is accepted", in: "127.0.0.1:0"},
		{name: "an address without a port is refused", in: "127.0.0.1", bad: true},
		{name: "an unbracketed IPv6 address is refused", in: "::1:25", bad: true},
		{name: "a bracketed IPv6 address without a port is refused", in: "[::1]", bad: true},
		{name: "an empty port is refused", in: "host:", bad: true},
		{name: "a named port is refused", in: "host:smtp", bad: true},
		{name: "a negative port is refused", in: "host:-1", bad: true},
		{name: "a port with a plus sign is refused", in: "host:+25", bad: true},
		{name: "a port over 65535 is refused", in: "host:65536", bad: true},
		{name: "a host with a space is refused", in: "a b:25", bad: true},
		{name: "a host with a slash is refused", in: "a/b:25", bad: true},
		{name: "an empty string is no address (an unset resolver)", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h HostPort
			err := h.UnmarshalText([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Errorf("UnmarshalText(%q) = %q, want an error", tt.in, h)
				}
				return
			}
			if err != nil || h.String() != tt.in {
				t.Fatalf("UnmarshalText(%q) = %q, %v", tt.in, h, err)
			}
			if b, _ := h.MarshalText(); string(b) != tt.in {
				t.Errorf("MarshalText = %q, want %q", b, tt.in)
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	tests := []struct {
		name, in, want string
		bad            bool
	}{
		{name: "an IPv4 network is accepted", in: "192.0.2.0/24", want: "192.0.2.0/24"},
		{name: "host bits are masked off", in: "192.0.2.7/24", want: "192.0.2.0/24"},
		{name: "a bare IPv4 address is one host", in: "192.0.2.7", want: "192.0.2.7/32"},
		{name: "an IPv6 network is accepted", in: "2001:db8::/32", want: "2001:db8::/32"},
		{name: "a bare IPv6 address is one host", in: "::1", want: "::1/128"},
		{name: "a zero-length prefix is accepted", in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{name: "a prefix longer than the address is refused", in: "192.0.2.0/33", bad: true},
		{name: "a host name is refused", in: "example.com", bad: true},
		{name: "an empty string is refused", in: "", bad: true},
		{name: "a missing length is refused", in: "192.0.2.0/", bad: true},
		{name: "a missing address is refused", in: "/24", bad: true},
		{name: "a range is refused", in: "192.0.2.1-192.0.2.9", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Prefix
			err := p.UnmarshalText([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Errorf("UnmarshalText(%q) succeeded, want an error", tt.in)
				}
				return
			}
			b, _ := p.MarshalText()
			if err != nil || string(b) != tt.want {
				t.Errorf("UnmarshalText(%q) = %q, %v, want %q", tt.in, b, err, tt.want)
			}
		})
	}
}

func TestPrefixContains(t *testing.T) {
	var p Prefix
	if err := p.UnmarshalText([]byte("192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ip   string
		want bool
	}{
		{"an address inside the network is contained", "192.0.2.200", true},
		{"an IPv4-mapped IPv6 address inside the network is contained", "::ffff:192.0.2.200", true},
		{"an address outside the network is not contained", "198.51.100.1", false},
		{"an IPv6 address is not contained in an IPv4 network", "2001:db8::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Contains(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("Contains(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

// largeInputs once took minutes each, when every key's line was computed
// by scanning from the start of the file; BenchmarkParseLargeInputs
// measures them.
var largeInputs = []struct{ name, toml string }{
	{"many repeated table headers", strings.Repeat("[smtp]\n", 50000)},
	{"a long list of networks", "[smtp]\ntrusted_networks = [" + strings.Repeat("\"10.0.0.0/8\",", 50000) + "]"},
	{"deeply nested inline tables", "x = " + strings.Repeat("{a=", 5000) + "1" + strings.Repeat("}", 5000)},
	{"a long file of comments", strings.Repeat("# comment\n", 50000) + "smtp.max_errors = 0\n"},
}

func TestParseLargeInputs(t *testing.T) {
	for _, tt := range largeInputs {
		t.Run(tt.name+" gives an answer", func(t *testing.T) {
			c, err := Parse("f.toml", []byte(tt.toml))
			if (c == nil) == (err == nil) {
				t.Errorf("Parse = %v, %v: want a config or an error", c, err)
			}
		})
	}
}

func BenchmarkParseLargeInputs(b *testing.B) {
	for _, tt := range largeInputs {
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(tt.toml)))
			for b.Loop() {
				Parse("f.toml", []byte(tt.toml))
			}
		})
	}
}
