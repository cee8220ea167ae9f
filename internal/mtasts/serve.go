package mtasts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Ours is the policy we publish for our domains (RFC 8461 3.2): our MX
// host, the mode and max_age configured.
type Ours struct {
	MX     string
	Mode   string
	MaxAge time.Duration
}

// Text is the policy document.
func (o Ours) Text() string {
	return fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: %d\r\n", o.Mode, strings.TrimSuffix(o.MX, "."), int64(o.MaxAge/time.Second))
}

// ID is the id of the TXT record announcing the policy: a digest of its
// text, so that it changes exactly when the policy does (senders fetch
// it again then).
func (o Ours) ID() string {
	sum := sha256.Sum256([]byte(o.Text()))
	return hex.EncodeToString(sum[:8])
}

// Record is the TXT record at _mta-sts.DOMAIN (RFC 8461 3.1).
func (o Ours) Record() string { return "v=STSv1; id=" + o.ID() }

// Handler serves the policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt
// for the domains local reports as ours, and nothing else.
func Handler(policy func() Ours, local func(ctx context.Context, domain string) (bool, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(r.Host)
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
		domain, ok := strings.CutPrefix(host, "mta-sts.")
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		isLocal, err := local(r.Context(), domain)
		switch {
		case err != nil:
			http.Error(w, "the policy could not be read; try again later", http.StatusServiceUnavailable)
			return
		case !isLocal:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprint(w, policy().Text())
	})
}
