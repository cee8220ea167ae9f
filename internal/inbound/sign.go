package inbound

import (
	"context"
	"errors"
	"io"
	"strings"

	"mailroom/internal/dkim"
)

// sign returns the DKIM-Signature fields of a message leaving for other
// domains (header and body as they will be sent), by the domain of its
// author (the first From field) or its nearest parent with keys, else by
// the envelope sender's; nil when neither has keys. A key that fails is
// logged and the message goes unsigned: SPF still aligns for most of our
// mail, and holding every message back for it would stop all sending.
func (b *Backend) sign(ctx context.Context, hdr headerInfo, mailFrom string, msg io.Reader) []byte {
	var candidates []string
	for _, f := range hdr.Authors {
		if f.Name != "from" {
			continue
		}
		if addrs, ok := authorAddresses(f.Value); ok && len(addrs) > 0 {
			if _, d, ok := strings.Cut(addrs[0], "@"); ok {
				candidates = append(candidates, d)
			}
		}
		break
	}
	if _, d, ok := strings.Cut(mailFrom, "@"); ok {
		candidates = append(candidates, d)
	}
	for _, author := range candidates {
		domain, err := b.dkim.Domain(ctx, author)
		if err != nil {
			b.log.Error("DKIM: the keys could not be read; the message goes unsigned", "domain", author, "err", err)
			return nil
		}
		if domain == "" {
			continue
		}
		fields, err := b.dkim.Sign(ctx, domain, msg)
		if err != nil && !errors.Is(err, dkim.ErrNoKeys) {
			b.log.Error("DKIM: signing failed; the message goes unsigned", "domain", domain, "err", err)
		}
		return fields
	}
	return nil
}
