package smtpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// CRAMAuthenticator is the optional part of a Backend that checks
// CRAM-MD5 responses (RFC 2195).
type CRAMAuthenticator interface {
	CheckCRAMMD5(ctx context.Context, s *SessionInfo, username, challenge, digest string) (login string, err error)
}

// cramOffered reports whether CRAM-MD5 is offered.
func (s *session) cramOffered() bool {
	_, ok := s.srv.backend.(CRAMAuthenticator)
	return ok && s.cfg.CRAMMD5
}

// saslCRAMMD5 runs CRAM-MD5: a challenge, then "username hex-digest".
func (s *session) saslCRAMMD5(initial string, hasInitial bool) (string, bool) {
	if hasInitial {
		s.reply(501, "5.5.2", "CRAM-MD5 takes no initial response")
		return "", false
	}
	var nonce [12]byte
	rand.Read(nonce[:])
	challenge := fmt.Sprintf("<%s.%d@%s>", hex.EncodeToString(nonce[:]), time.Now().Unix(), s.cfg.Hostname)
	resp, ok := s.saslResponse("", false, challenge)
	if !ok {
		return "", false
	}
	user, digest, found := strings.Cut(string(resp), " ")
	if !found || user == "" || len(digest) != 32 {
		s.reply(501, "5.5.2", "Malformed CRAM-MD5 response: expected the user name, a space and 32 hex digits")
		return "", false
	}
	return s.limitedLogin(user, func() (string, error) {
		return s.srv.backend.(CRAMAuthenticator).CheckCRAMMD5(s.ctx(), &s.info, user, challenge, digest)
	})
}
