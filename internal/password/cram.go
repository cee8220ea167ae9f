package password

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
)

// CRAM-MD5 (RFC 2195) proves knowledge of the password with
// HMAC-MD5(password, challenge), so the server must keep something
// password-equivalent. What is kept here is the least that works: the MD5
// states after the HMAC key blocks (as Dovecot's CRAM-MD5 scheme does), not
// the password. Whoever steals them can log in with CRAM-MD5, though not
// with any other mechanism; that is why CRAM-MD5 is off by default.

// CRAMMD5 returns the stored form of pw for CRAM-MD5: "inner:outer", the
// marshalled MD5 states, hex.
func CRAMMD5(pw string) (string, error) {
	key := []byte(pw)
	if len(key) > md5.BlockSize {
		sum := md5.Sum(key)
		key = sum[:]
	}
	pad := func(b byte) (string, error) {
		block := make([]byte, md5.BlockSize)
		copy(block, key)
		for i := range block {
			block[i] ^= b
		}
		h := md5.New()
		h.Write(block)
		st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		return hex.EncodeToString(st), err
	}
	inner, err1 := pad(0x36)
	outer, err2 := pad(0x5c)
	if err := errors.Join(err1, err2); err != nil {
		return "", err
	}
	return inner + ":" + outer, nil
}

// CheckCRAMMD5 reports whether digest (hex) is HMAC-MD5 of challenge
// under the password whose stored form is secret.
func CheckCRAMMD5(secret, challenge, digest string) bool {
	innerHex, outerHex, ok := strings.Cut(secret, ":")
	if !ok {
		return false
	}
	resume := func(stateHex string, data []byte) []byte {
		st, err := hex.DecodeString(stateHex)
		if err != nil {
			return nil
		}
		h := md5.New()
		if h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st) != nil {
			return nil
		}
		var w hash.Hash = h
		w.Write(data)
		return w.Sum(nil)
	}
	inner := resume(innerHex, []byte(challenge))
	want := resume(outerHex, inner)
	got, err := hex.DecodeString(digest)
	return inner != nil && want != nil && err == nil && hmac.Equal(want, got)
}
