// Package arc is Authenticated Received Chain (RFC 8617): a forwarder
// records what it found of a message's authentication (SPF, DKIM, DMARC)
// and seals it, so that a receiver after it can trust that record when the
// forwarding itself broke SPF or a signature. Mailroom seals the mail it
// forwards and verifies the chains on the mail it receives. No maintained
// Go library does ARC; the canonicalization is RFC 6376's relaxed one,
// written here small (canon.go), checked against dkimpy's arcverify in the
// tests.
package arc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxInstances bounds a chain (RFC 8617 4.2.1).
const MaxInstances = 50

// signedFields are the fields an ARC-Message-Signature covers.
var signedFields = []string{"from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to", "references",
	"mime-version", "content-type", "content-transfer-encoding", "dkim-signature"}

// set is one instance's three fields.
type set struct {
	aar, ams, as field
	i            int
}

// sets finds the ARC sets of a header, by instance; an error when they do
// not form a chain (a gap, a duplicate, one missing, too many).
func sets(fields []field) ([]set, error) {
	byI := map[int]*set{}
	for _, f := range fields {
		var slot func(s *set) *field
		switch strings.ToLower(f.name) {
		case "arc-authentication-results":
			slot = func(s *set) *field { return &s.aar }
		case "arc-message-signature":
			slot = func(s *set) *field { return &s.ams }
		case "arc-seal":
			slot = func(s *set) *field { return &s.as }
		default:
			continue
		}
		_, value, _ := strings.Cut(f.raw, ":")
		first, _, _ := strings.Cut(value, ";")
		k, v, _ := strings.Cut(first, "=")
		i, err := strconv.Atoi(strings.TrimSpace(v))
		if strings.TrimSpace(k) != "i" || err != nil || i < 1 || i > MaxInstances {
			return nil, errors.New("arc: a field without a valid i= first")
		}
		s := byI[i]
		if s == nil {
			s = &set{i: i}
			byI[i] = s
		}
		p := slot(s)
		if p.raw != "" {
			return nil, fmt.Errorf("arc: instance %d has a field twice", i)
		}
		*p = f
	}
	out := make([]set, 0, len(byI))
	for i := 1; i <= len(byI); i++ {
		s := byI[i]
		if s == nil || s.aar.raw == "" || s.ams.raw == "" || s.as.raw == "" {
			return nil, fmt.Errorf("arc: instance %d is missing or incomplete", i)
		}
		out = append(out, *s)
	}
	return out, nil
}

// LookupTXT is how keys are found.
type LookupTXT func(ctx context.Context, name string) ([]string, error)

// Result of verifying a chain.
type Result struct {
	Value  string // none, pass, fail
	Reason string
	// Sealer is the domain that sealed the last instance, and Instances
	// the chain's length; AAR is that instance's record of what it
	// found (for a receiver that trusts the sealer).
	Sealer    string
	Instances int
	AAR       string
}

// Verify checks a message's chain (RFC 8617 5.2).
func Verify(ctx context.Context, lookup LookupTXT, msg []byte) Result {
	fields, bodyStart := splitHeader(msg)
	ss, err := sets(fields)
	if err != nil {
		return Result{Value: "fail", Reason: err.Error()}
	}
	if len(ss) == 0 {
		return Result{Value: "none"}
	}
	last := ss[len(ss)-1]
	res := Result{Instances: len(ss), Sealer: tags(valueOf(last.as))["d"], AAR: strings.TrimSpace(valueOf(last.aar))}
	for _, s := range ss {
		cv := tags(valueOf(s.as))["cv"]
		if (s.i == 1 && cv != "none") || (s.i > 1 && cv != "pass") {
			res.Value, res.Reason = "fail", fmt.Sprintf("instance %d says cv=%s", s.i, cv)
			return res
		}
	}
	if err := verifyAMS(ctx, lookup, fields, msg[bodyStart:], last.ams); err != nil {
		res.Value, res.Reason = "fail", fmt.Sprintf("the message signature of instance %d: %v", last.i, err)
		return res
	}
	for n := len(ss); n >= 1; n-- {
		if err := verifySeal(ctx, lookup, ss[:n]); err != nil {
			res.Value, res.Reason = "fail", fmt.Sprintf("the seal of instance %d: %v", n, err)
			return res
		}
	}
	res.Value = "pass"
	return res
}

func valueOf(f field) string {
	_, v, _ := strings.Cut(f.raw, ":")
	return v
}

// headerHash hashes the fields h= names, picked from the bottom as DKIM
// does, then the signature field without its b= value and CRLF.
func headerHash(fields []field, names []string, sig field) []byte {
	h := sha256.New()
	used := map[int]bool{}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		for j := len(fields) - 1; j >= 0; j-- {
			if !used[j] && strings.EqualFold(fields[j].name, n) {
				used[j] = true
				h.Write([]byte(relaxedHeader(fields[j].raw)))
				break
			}
		}
	}
	h.Write([]byte(strings.TrimSuffix(relaxedHeader(withoutB(sig.raw)), "\r\n")))
	return h.Sum(nil)
}

func verifyAMS(ctx context.Context, lookup LookupTXT, fields []field, body []byte, ams field) error {
	t := tags(valueOf(ams))
	if t["a"] != "rsa-sha256" {
		return fmt.Errorf("algorithm %q", t["a"])
	}
	bh := sha256.Sum256(relaxedBody(body))
	if want := strings.Join(strings.Fields(t["bh"]), ""); base64.StdEncoding.EncodeToString(bh[:]) != want {
		return errors.New("the body hash does not match (the body was changed)")
	}
	return verifySig(ctx, lookup, t, headerHash(fields, strings.Split(t["h"], ":"), ams))
}

// sealHash hashes the chain for the seal of its last instance (RFC 8617
// 5.1.1): each instance's AAR, AMS and AS in order, the last AS without
// its b= value.
func sealHash(ss []set) []byte {
	h := sha256.New()
	for k, s := range ss {
		h.Write([]byte(relaxedHeader(s.aar.raw)))
		h.Write([]byte(relaxedHeader(s.ams.raw)))
		if k == len(ss)-1 {
			h.Write([]byte(strings.TrimSuffix(relaxedHeader(withoutB(s.as.raw)), "\r\n")))
		} else {
			h.Write([]byte(relaxedHeader(s.as.raw)))
		}
	}
	return h.Sum(nil)
}

func verifySeal(ctx context.Context, lookup LookupTXT, ss []set) error {
	t := tags(valueOf(ss[len(ss)-1].as))
	if t["a"] != "rsa-sha256" {
		return fmt.Errorf("algorithm %q", t["a"])
	}
	return verifySig(ctx, lookup, t, sealHash(ss))
}

func verifySig(ctx context.Context, lookup LookupTXT, t map[string]string, digest []byte) error {
	d, s := t["d"], t["s"]
	if d == "" || s == "" {
		return errors.New("no d= or s=")
	}
	txts, err := lookup(ctx, s+"._domainkey."+d)
	if err != nil {
		return fmt.Errorf("the key of %s/%s: %w", d, s, err)
	}
	key, err := rsaKey(txts)
	if err != nil {
		return fmt.Errorf("the key of %s/%s: %w", d, s, err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(t["b"]), ""))
	if err != nil {
		return errors.New("b= is not base64")
	}
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest, sig); err != nil {
		return errors.New("the signature does not verify")
	}
	return nil
}

// rsaKey finds the RSA key of at least 1024 bits in a DKIM key record.
func rsaKey(txts []string) (*rsa.PublicKey, error) {
	for _, txt := range txts {
		t := tags(txt)
		if k := t["k"]; k != "" && k != "rsa" {
			continue
		}
		der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(t["p"]), ""))
		if err != nil || len(der) == 0 {
			continue
		}
		var pub *rsa.PublicKey
		if k, err := x509.ParsePKIXPublicKey(der); err == nil {
			pub, _ = k.(*rsa.PublicKey)
		} else if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
			pub = k
		}
		if pub != nil && pub.N.BitLen() >= 1024 {
			return pub, nil
		}
	}
	return nil, errors.New("no RSA key of 1024 bits or more")
}

// Sealer seals messages as one domain with its RSA key.
type Sealer struct {
	Domain, Selector string
	Key              crypto.Signer // an *rsa.PrivateKey
	Now              func() time.Time
}

// Seal returns the three fields of a new ARC set for msg (to go on top
// of it): aar is the Authentication-Results payload we found
// ("authserv-id; spf=... dkim=..."), chain the result of verifying the
// message's chain so far.
func (s *Sealer) Seal(msg []byte, aar string, chain Result) ([]byte, error) {
	fields, bodyStart := splitHeader(msg)
	ss, err := sets(fields)
	i := len(ss) + 1
	if err != nil {
		// A chain that does not hold together: our set comes after every
		// seal there is, and says the chain failed (RFC 8617 5.1).
		ss, i = nil, 1
		for _, f := range fields {
			if strings.EqualFold(f.name, "arc-seal") {
				i++
			}
		}
		chain.Value = "fail"
	}
	if i > MaxInstances {
		return nil, errors.New("arc: the chain is at its longest")
	}
	cv := "none"
	switch {
	case i == 1:
	case chain.Value == "pass":
		cv = "pass"
	default:
		cv = "fail"
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	aarField := field{name: "ARC-Authentication-Results", raw: "ARC-Authentication-Results: i=" + strconv.Itoa(i) + "; " + aar + "\r\n"}

	bh := sha256.Sum256(relaxedBody(msg[bodyStart:]))
	var names []string
	present := map[string]bool{}
	for _, f := range fields {
		present[strings.ToLower(f.name)] = true
	}
	for _, n := range signedFields {
		if present[n] {
			names = append(names, n)
		}
	}
	sort.SliceStable(names, func(a, b int) bool { return names[a] == "from" && names[b] != "from" })
	ams := field{name: "ARC-Message-Signature", raw: fmt.Sprintf("ARC-Message-Signature: i=%d; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=%s; t=%s;\r\n\th=%s;\r\n\tbh=%s; b=\r\n",
		i, s.Domain, s.Selector, ts, strings.Join(names, ":"), base64.StdEncoding.EncodeToString(bh[:]))}
	sig, err := s.sign(headerHash(fields, names, ams))
	if err != nil {
		return nil, err
	}
	ams.raw = strings.TrimSuffix(ams.raw, "\r\n") + fold(sig) + "\r\n"

	as := field{name: "ARC-Seal", raw: fmt.Sprintf("ARC-Seal: i=%d; a=rsa-sha256; t=%s; cv=%s; d=%s; s=%s; b=\r\n", i, ts, cv, s.Domain, s.Selector)}
	chainSets := append(ss, set{aar: aarField, ams: ams, as: as, i: i})
	sig, err = s.sign(sealHash(chainSets))
	if err != nil {
		return nil, err
	}
	as.raw = strings.TrimSuffix(as.raw, "\r\n") + fold(sig) + "\r\n"
	var out bytes.Buffer
	out.WriteString(as.raw)
	out.WriteString(ams.raw)
	out.WriteString(aarField.raw)
	return out.Bytes(), nil
}

func (s *Sealer) sign(digest []byte) (string, error) {
	if _, ok := s.Key.Public().(*rsa.PublicKey); !ok {
		return "", errors.New("arc: sealing needs an RSA key (RFC 8617 defines rsa-sha256 only)")
	}
	sig, err := s.Key.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("arc: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// fold breaks a base64 value into lines of 72 for the header.
func fold(b64 string) string {
	var out strings.Builder
	for len(b64) > 72 {
		out.WriteString(b64[:72] + "\r\n\t")
		b64 = b64[72:]
	}
	out.WriteString(b64)
	return out.String()
}
