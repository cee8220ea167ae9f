// Package srs is the Sender Rewriting Scheme (Shevek's SRS, as Postfix's
// postsrsd and chasquid use it): mail forwarded to another domain leaves
// with an envelope sender in our domain, so that SPF passes at the final
// receiver, and a bounce to that address finds its way back to the
// original sender. The rewritten address carries a keyed hash and a day
// stamp: only addresses we made, in the last 21 days, are reversed, so the
// scheme cannot be used to relay mail anywhere.
//
//	SRS0=HHHHHHHH=TT=example.com=alice@forwarder.test
//	SRS1=HHHHHHHH=orig.test==HHHH=TT=example.com=alice@forwarder.test (an SRS0 address forwarded again)
package srs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
)

// hashLen is the hash's length in base32 characters: 40 bits, so that
// guessing one (to relay through us) takes a trillion tries; base32 is
// read without regard to case, as addresses may be lowered on the way.
const hashLen = 8

// MaxAge is how long a rewritten address is reversed.
const MaxAge = 21 * 24 * time.Hour

// day is the stamp's unit; stamps count days modulo 1024 (two base32
// characters).
const day = 24 * time.Hour

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrNotSRS is returned by Reverse for an address that is not ours.
var ErrNotSRS = errors.New("srs: not an SRS address")

// Rewriter makes and reverses SRS addresses with one secret.
type Rewriter struct {
	key []byte
	now func() time.Time
}

// New returns a rewriter keyed by secret (at least 16 octets).
func New(secret []byte) *Rewriter {
	return &Rewriter{key: secret, now: time.Now}
}

func (r *Rewriter) hash(parts ...string) string {
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(strings.ToLower(strings.Join(parts, "="))))
	return b32.EncodeToString(m.Sum(nil))[:hashLen]
}

func stamp(t time.Time) string {
	d := t.Unix() / int64(day/time.Second) % 1024
	return string(b32Alphabet[d>>5]) + string(b32Alphabet[d&31])
}

const b32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// Forward rewrites sender (local@domain) for mail forwarded by ourDomain.
// The null sender stays null.
func (r *Rewriter) Forward(sender, ourDomain string) string {
	if sender == "" {
		return ""
	}
	local, domain, ok := cutAddr(sender)
	if !ok {
		return sender
	}
	domain = strings.ToLower(domain)
	if strings.EqualFold(domain, ourDomain) {
		return sender // ours already: SPF passes as it is
	}
	// An SRS0 address of another forwarder becomes SRS1, keeping its
	// first hop (the shortcut of the scheme), not growing with each hop.
	if upper := strings.ToUpper(local); strings.HasPrefix(upper, "SRS0=") || strings.HasPrefix(upper, "SRS0+") || strings.HasPrefix(upper, "SRS0-") {
		rest := local[5:]
		return "SRS1=" + r.hash(domain, rest) + "=" + domain + "==" + rest + "@" + ourDomain
	}
	if upper := strings.ToUpper(local); strings.HasPrefix(upper, "SRS1=") {
		// SRS1=HHHH=first==rest: keep first and rest, sign anew.
		if first, rest, ok := strings.Cut(local[5:], "=="); ok {
			if _, firstDomain, ok := strings.Cut(first, "="); ok {
				return "SRS1=" + r.hash(firstDomain, rest) + "=" + firstDomain + "==" + rest + "@" + ourDomain
			}
		}
	}
	ts := stamp(r.now())
	return "SRS0=" + r.hash(ts, domain, local) + "=" + ts + "=" + domain + "=" + local + "@" + ourDomain
}

// Reverse returns the address an SRS address of ours stands for: the
// original sender for SRS0, the first forwarder's SRS0 address for SRS1.
// ErrNotSRS for any other address; an error saying why for one that is
// forged or too old.
func (r *Rewriter) Reverse(addr string) (string, error) {
	local, _, ok := cutAddr(addr)
	if !ok || len(local) < 5 {
		return "", ErrNotSRS
	}
	switch strings.ToUpper(local[:5]) {
	case "SRS0=":
		f := strings.SplitN(local[5:], "=", 4)
		if len(f) != 4 || f[3] == "" || f[2] == "" {
			return "", fmt.Errorf("srs: %q is not a well-formed SRS0 address", addr)
		}
		h, ts, domain, orig := f[0], f[1], f[2], f[3]
		if !hmac.Equal([]byte(strings.ToUpper(h)), []byte(r.hash(ts, domain, orig))) {
			return "", fmt.Errorf("srs: %q was not made here (its hash does not match)", addr)
		}
		if !r.fresh(ts) {
			return "", fmt.Errorf("srs: %q is older than %d days", addr, int(MaxAge/day))
		}
		return orig + "@" + domain, nil
	case "SRS1=":
		first, rest, ok := strings.Cut(local[5:], "==")
		h, firstDomain, ok2 := strings.Cut(first, "=")
		if !ok || !ok2 || firstDomain == "" || rest == "" {
			return "", fmt.Errorf("srs: %q is not a well-formed SRS1 address", addr)
		}
		if !hmac.Equal([]byte(strings.ToUpper(h)), []byte(r.hash(firstDomain, rest))) {
			return "", fmt.Errorf("srs: %q was not made here (its hash does not match)", addr)
		}
		return "SRS0=" + rest + "@" + firstDomain, nil
	}
	return "", ErrNotSRS
}

// fresh reports whether a day stamp is within MaxAge of now.
func (r *Rewriter) fresh(ts string) bool {
	if len(ts) != 2 {
		return false
	}
	hi, lo := strings.IndexByte(b32Alphabet, upperByte(ts[0])), strings.IndexByte(b32Alphabet, upperByte(ts[1]))
	if hi < 0 || lo < 0 {
		return false
	}
	then := int64(hi<<5 | lo)
	today := r.now().Unix() / int64(day/time.Second) % 1024
	age := (today - then + 1024) % 1024
	return age <= int64(MaxAge/day)
}

func upperByte(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 32
	}
	return c
}

// cutAddr splits local@domain at the last "@".
func cutAddr(a string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return "", "", false
	}
	return a[:i], a[i+1:], true
}
