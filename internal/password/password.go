// Package password hashes and checks login passwords with argon2id
// (RFC 9106), in the PHC string format "$argon2id$v=19$m=...,t=...,p=...$salt$hash".
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters of new hashes: RFC 9106 4's second recommended option,
// scaled to 64 MiB.
const (
	memoryKiB = 64 * 1024
	time      = 3
	threads   = 2
	keyLen    = 32
)

var b64 = base64.RawStdEncoding

// Hash returns the argon2id hash of pw with a new random salt.
func Hash(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("password: empty password")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, time, memoryKiB, threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memoryKiB, time, threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Dummy returns a hash in the format and with the parameters of Hash, of
// no password at all (its key is random): checking anything against it
// costs what a real check costs and never matches. It is checked when a
// user does not exist, so that the time to answer does not tell; made
// without hashing, it costs nothing at start.
func Dummy() string {
	salt, key := make([]byte, 16), make([]byte, keyLen)
	rand.Read(salt)
	rand.Read(key)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memoryKiB, time, threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Check reports whether pw matches hash, in time independent of where
// they differ.
func Check(hash, pw string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("password: not an argon2id hash")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, fmt.Errorf("password: bad parameters: %w", err)
	}
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err := errors.Join(err1, err2); err != nil {
		return false, fmt.Errorf("password: bad encoding: %w", err)
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}
