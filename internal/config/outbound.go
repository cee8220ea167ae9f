package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"mailroom/internal/smtp"
)

// validate checks the outbound routes and pools and fills in defaults:
// ports by TLS mode, domains and senders in lower case.
func (o *Outbound) validate() error {
	for d, n := range o.RateLimits {
		if n < 0 {
			return fmt.Errorf("outbound.rate_limits: %q: must be 0 (no limit) or more messages per minute", d)
		}
	}
	for i := range o.Relay {
		r := &o.Relay[i]
		where := fmt.Sprintf("outbound.relay[%d]", i)
		if r.Host == "" {
			return fmt.Errorf("%s.host: name the smart host (for example \"smtp.provider.example\")", where)
		}
		if r.TLS == "" {
			r.TLS = "starttls"
		}
		defaultPort, ok := map[string]int{"starttls": 587, "implicit": 465, "none": 25}[r.TLS]
		if !ok {
			return fmt.Errorf(`%s.tls: must be "starttls", "implicit" or "none"`, where)
		}
		if r.Port == 0 {
			r.Port = defaultPort
		}
		if r.Port < 1 || r.Port > 65535 {
			return fmt.Errorf("%s.port: must be a port number (587, 465 or 25)", where)
		}
		if r.Username != "" && r.TLS == "none" {
			return fmt.Errorf(`%s.username: a login needs TLS; set tls = "starttls" or "implicit"`, where)
		}
		if (r.Username == "") != (r.PasswordFile == "") {
			return fmt.Errorf("%s: give username and password_file together", where)
		}
		if r.CAFile != "" {
			if _, err := os.Stat(r.CAFile); err != nil {
				return fmt.Errorf("%s.ca_file: %v", where, err)
			}
		}
		if len(r.Domains) == 0 {
			return fmt.Errorf(`%s.domains: list the recipient domains it takes, or ["*"] for all`, where)
		}
		for j, d := range r.Domains {
			if d == "*" {
				continue
			}
			n, err := smtp.NormalizeDomain(d)
			if err != nil {
				return fmt.Errorf("%s.domains: %q is not a domain name", where, d)
			}
			r.Domains[j] = n
		}
	}
	var names []string
	for i := range o.Pool {
		p := &o.Pool[i]
		where := fmt.Sprintf("outbound.pool[%d]", i)
		if p.Name == "" || slices.Contains(names, p.Name) {
			return fmt.Errorf("%s.name: give each pool a name of its own", where)
		}
		names = append(names, p.Name)
		if len(p.Addresses) == 0 {
			return fmt.Errorf("%s.addresses: list the local addresses to send from", where)
		}
		if len(p.Senders) == 0 {
			return fmt.Errorf(`%s.senders: list sender addresses or domains, or ["*"] for every other`, where)
		}
		for j, s := range p.Senders {
			p.Senders[j] = strings.ToLower(s)
		}
	}
	return nil
}
