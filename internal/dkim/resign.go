package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mailroom/internal/message"
	"net/mail"
	"strings"
)

// maxResignHeader bounds the header read to re-sign a message.
const maxResignHeader = 1 << 20

// Resign signs anew a message that was changed on its way out (converted
// to 7 bits for a next hop without 8BITMIME, RFC 6152 3): it writes to out
// new signatures by the author's domain, then the message without the
// signatures that domain made before (the change broke them; others'
// stay as they are). ok is false, and nothing is written, when the
// author's domain has no keys here: the caller sends the message as is.
func (s *Signer) Resign(ctx context.Context, msg io.ReadSeeker, out io.Writer) (ok bool, err error) {
	head, err := io.ReadAll(io.LimitReader(msg, maxResignHeader))
	if err != nil {
		return false, fmt.Errorf("dkim: read the header to re-sign: %w", err)
	}
	fields, bodyStart := message.Fields(head)
	if bodyStart == len(head) && !bytes.HasSuffix(head, []byte("\n\n")) && !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		return false, errors.New("dkim: no end of the header within 1 MiB to re-sign")
	}
	author := ""
	for _, f := range fields {
		if f.Name == "from" {
			_, value, _ := strings.Cut(string(f.Raw), ":")
			if a, err := mail.ParseAddress(strings.TrimSpace(value)); err == nil {
				_, author, _ = strings.Cut(a.Address, "@")
			}
			break
		}
	}
	domain, err := s.Domain(ctx, author)
	if err != nil || domain == "" {
		return false, err
	}
	var kept bytes.Buffer
	for _, f := range fields {
		_, value, _ := strings.Cut(string(f.Raw), ":")
		if f.Name == "dkim-signature" && strings.EqualFold(tag(value, "d"), domain) {
			continue
		}
		kept.Write(f.Raw)
	}
	kept.WriteString("\r\n")
	body := func() (io.Reader, error) {
		if _, err := msg.Seek(int64(bodyStart), io.SeekStart); err != nil {
			return nil, err
		}
		return msg, nil
	}
	b, err := body()
	if err != nil {
		return false, err
	}
	sig, err := s.Sign(ctx, domain, io.MultiReader(bytes.NewReader(kept.Bytes()), b))
	if err != nil {
		return false, err
	}
	if b, err = body(); err != nil {
		return false, err
	}
	if _, err := io.Copy(out, io.MultiReader(bytes.NewReader(sig), bytes.NewReader(kept.Bytes()), b)); err != nil {
		return false, err
	}
	return true, nil
}

// tag returns a tag's value in a DKIM-Signature field's value.
func tag(value, name string) string {
	for _, t := range strings.Split(value, ";") {
		if k, v, ok := strings.Cut(t, "="); ok && strings.TrimSpace(k) == name {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}
