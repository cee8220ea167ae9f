package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"mailroom/internal/certs"
	"mailroom/internal/config"
	"mailroom/internal/dkim"
	"mailroom/internal/password"
	"mailroom/internal/smtpserver"
	"mailroom/internal/store"
)

// Development defaults: a domain under the reserved .test TLD (RFC 2606)
// and one user, so that a newcomer can send mail at once.
const (
	DevDomain = "mailroom.test"
	DevUser   = "dev@" + DevDomain
)

// DevPasswordFile (in the data directory, mode 0600) keeps the development
// user's generated password until it is changed (mailroom user passwd
// removes it), so that it is not lost when the first start fails after the
// user was made, and a later start can print it again.
const DevPasswordFile = "dev-password"

type devSetup struct {
	created  bool
	password string // the development user's password, when known
	file     string // where it is kept
}

// prepareDev creates the development domain and user on a store that has
// no domains yet; an existing store is left as it is, and the password
// kept in DevPasswordFile, if any, is read back.
func prepareDev(ctx context.Context, st store.Store, dataDir string) (*devSetup, error) {
	file := filepath.Join(dataDir, DevPasswordFile)
	ds, err := st.Domains(ctx)
	if err != nil {
		return nil, err
	}
	if len(ds) > 0 {
		dev := &devSetup{file: file}
		if b, err := os.ReadFile(file); err == nil {
			dev.password = strings.TrimSpace(string(b))
		}
		return dev, nil
	}
	pw := RandomPassword()
	// Kept before the user exists: whatever fails next, it is not lost.
	if err := writeSecretFile(file, pw+"\n"); err != nil {
		return nil, err
	}
	hash, scramV, cram, err := password.Derive(pw, false)
	if err != nil {
		return nil, err
	}
	if err := st.AddDomain(ctx, store.Domain{Name: DevDomain}); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, err
	}
	if keys, err := st.DKIMKeysOf(ctx, DevDomain); err == nil && len(keys) == 0 {
		now := time.Now()
		if _, err := dkim.AddKeys(ctx, st, DevDomain, now, now); err != nil {
			return nil, err
		}
	}
	if _, err := st.AddUser(ctx, store.User{Address: DevUser, PasswordHash: hash, SCRAMSHA256: scramV, CRAMMD5: cram}); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, err
	}
	if err := st.AddAlias(ctx, store.Alias{Address: "postmaster@" + DevDomain, Targets: []string{DevUser}}); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, err
	}
	return &devSetup{created: true, password: pw, file: file}, nil
}

// writeSecretFile writes data to path, readable by its owner only, and
// makes it durable.
func writeSecretFile(path, data string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.WriteString(data)
	if err = errors.Join(err, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// RandomPassword returns a readable random password of 20 characters.
func RandomPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// printBanner tells the operator what runs where and how to send a first message.
func printBanner(w io.Writer, cfg *config.Config, ls []boundSocket, access []accessSocket, cs *certs.Store, dev *devSetup) {
	if w == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Mailroom is running as %s, data in %s\n", cfg.Hostname, cfg.DataDir)
	first := map[smtpserver.Mode]string{}
	for _, l := range ls {
		fmt.Fprintf(&b, "  %-12s %s\n", l.mode, l.Addr())
		if first[l.mode] == "" {
			first[l.mode] = l.Addr().String()
		}
	}
	firstIMAP := map[string]string{}
	for _, l := range access {
		fmt.Fprintf(&b, "  %-12s %s\n", l.service, l.Addr())
		if firstIMAP[l.service] == "" {
			firstIMAP[l.service] = l.Addr().String()
		}
	}
	if fp := cs.Fingerprint(); fp != "" {
		kind := "certificate"
		if cfg.TLS.CertFile == "" && len(cfg.TLS.Certificates) == 0 {
			kind = "self-signed certificate (clients will warn; set [tls] for a real one)"
		}
		fmt.Fprintf(&b, "TLS: %s, SHA-256 %s\n", kind, fp)
	}
	if dev == nil || first[smtpserver.ModeMX] == "" {
		io.WriteString(w, b.String())
		return
	}
	addr := first[smtpserver.ModeMX]
	b.WriteString("Development defaults: loopback only, local domain " + DevDomain + ", user " + DevUser + "\n")
	if dev.password != "" {
		fmt.Fprintf(&b, "  password for %s: %s\n  (kept in %s until you change it with: mailroom user passwd %s)\n", DevUser, dev.password, dev.file, DevUser)
	}
	fmt.Fprintf(&b, "Send a first message:\n  swaks --server %s --from you@example.test --to %s\n", addr, DevUser)
	fmt.Fprintf(&b, "  or: printf 'Subject: hello\\r\\n\\r\\nhi\\r\\n' | curl -s smtp://%s --mail-from you@example.test --mail-rcpt %s -T -\n", addr, DevUser)
	if sub := first[smtpserver.ModeSubmission]; sub != "" && dev.password != "" {
		fmt.Fprintf(&b, "Send as %s through submission:\n  swaks --server %s --tls -au %s -ap %s --from %s --to %s\n", DevUser, sub, DevUser, dev.password, DevUser, DevUser)
	}
	fmt.Fprintf(&b, "Read it:\n  mailroom mailbox list %s\n", DevUser)
	if imaps := firstIMAP["imaps"]; imaps != "" && dev.password != "" {
		fmt.Fprintf(&b, "  or over IMAP: curl -k --user %s:%s 'imaps://%s/INBOX;UID=1'\n", DevUser, dev.password, imaps)
	}
	if pop3s := firstIMAP["pop3s"]; pop3s != "" && dev.password != "" {
		fmt.Fprintf(&b, "  or over POP3: curl -k --user %s:%s pop3s://%s/1\n", DevUser, dev.password, pop3s)
	}
	io.WriteString(w, b.String())
}
