package dkim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
	br := bufio.NewReader(io.LimitReader(msg, maxResignHeader))
	var fields []string
	blank := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false, fmt.Errorf("dkim: read the header to re-sign: %w", errors.Join(err, errors.New("no end of the header within 1 MiB")))
		}
		if line == "\r\n" || line == "\n" {
			blank = len(line)
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += line
		} else {
			fields = append(fields, line)
		}
	}
	headerLen := 0
	author := ""
	for _, f := range fields {
		headerLen += len(f)
		if name, value, _ := strings.Cut(f, ":"); strings.EqualFold(strings.TrimSpace(name), "from") && author == "" {
			if a, err := mail.ParseAddress(strings.TrimSpace(value)); err == nil {
				_, author, _ = strings.Cut(a.Address, "@")
			}
		}
	}
	domain, err := s.Domain(ctx, author)
	if err != nil || domain == "" {
		return false, err
	}
	var kept bytes.Buffer
	for _, f := range fields {
		name, value, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(name), "dkim-signature") && strings.EqualFold(tag(value, "d"), domain) {
			continue
		}
		kept.WriteString(f)
	}
	kept.WriteString("\r\n")
	body := func() (io.Reader, error) {
		if _, err := msg.Seek(int64(headerLen+blank), io.SeekStart); err != nil {
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
