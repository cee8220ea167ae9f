package config

import (
	"reflect"
	"strings"
	"testing"
)

// Run with:
//
//	go test -run='^$' -fuzz='^FuzzParse$' -fuzztime=20s ./internal/config

const fullConfig = `# A production-like configuration.
hostname = "mx.example.com"
data_dir = "/var/lib/mailroom"
shutdown_timeout = "45s"

[listen] # services
smtp = ["0.0.0.0:25", "[::]:25"]

[smtp]
trusted_networks = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]
max_message_size = "50MiB"
max_recipients = 500
max_line_length = 1000
max_connections = 1000
max_connections_per_client = 20
max_errors = 5
command_timeout = "5m"
data_timeout = "3m"
bare_line_endings = "normalize"
subaddress_separator = "-"
max_hops = 30

[tls]
cert_file = "/etc/mailroom/cert.pem"
key_file = "/etc/mailroom/key.pem"

[mailbox]
quota = 1073741824

[dns]
resolver = "[2001:db8::53]:53"

[log]
format = "json"
level = "warn"
`

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		fullConfig,
		strings.ReplaceAll(fullConfig, "\n", "\r\n"),
		"", "hostname = \"mx.bücher.example\"", "smtp = { max_errors = 3, command_timeout = \"1m\" }",
		"smtp.max_errors = 3\nlog.level = \"warn\"",
		// Hostile ones.
		"[", "[smtp", "a = [", "hostname = ", "= 5", "\x00", "\ufeffhostname = \"x\"",
		"hostname = 5", "shutdown_timeout = 30", "[mailbox]\nquota = -5", "[smtp]\nmax_message_size = 1.5",
		"[dns]\nresolver = 53", "[dns]\nresolver = { a = 1 }", "[listen]\nsmtp = [[[]]]", "[[smtp]]",
		"[smtp] # c\nbare_line_endings = \"maybe\"", "[tls]\ncert_file = \"x\"", "hostname = \"a\"\nhostname = \"b\"",
		"hostname = \"\"\"\nmx\n\"\"\"", "hostname = \"mx.example.com.\"", "hostname = \"[192.0.2.1]\"",
		"[smtp]\ntrusted_networks = [\"10.0.0.0/33\"]", "[listen]\nsmtp = [\"127.0.0.1:+25\"]",
		"x = " + strings.Repeat("[", 200) + strings.Repeat("]", 200),
		"x = " + strings.Repeat("{a=", 100) + "1" + strings.Repeat("}", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		c, err := Parse("f.toml", []byte(data))
		if err != nil {
			if c != nil {
				t.Fatalf("Parse(%q) returned a config with error %v", data, err)
			}
			if !strings.HasPrefix(err.Error(), "f.toml") {
				t.Fatalf("Parse(%q) error %q does not name the file", data, err)
			}
			return
		}
		before := *c
		if err := c.validate(); err != nil {
			t.Fatalf("Parse(%q) gave a config that fails validate: %v", data, err)
		}
		if !reflect.DeepEqual(before, *c) {
			t.Fatalf("validate changed a parsed config: %+v became %+v", before, *c)
		}
		if c.Hostname != strings.ToLower(c.Hostname) || strings.ContainsFunc(c.Hostname, func(r rune) bool { return r >= 0x80 }) {
			t.Fatalf("Parse(%q) hostname %q is not lower-case ASCII", data, c.Hostname)
		}
		if c.SMTP.MaxMessageSize < 0 || c.Mailbox.Quota < 0 || c.ShutdownTimeout < 0 {
			t.Fatalf("Parse(%q) gave a negative size or duration: %+v", data, c)
		}
		for _, h := range append(c.Listen.SMTP, c.DNS.Resolver) {
			if h.String() == "" {
				continue
			}
			var back HostPort
			if err := back.UnmarshalText([]byte(h.String())); err != nil {
				t.Fatalf("Parse(%q) kept address %q, which does not parse: %v", data, h, err)
			}
		}
	})
}
