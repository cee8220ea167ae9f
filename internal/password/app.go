package password

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// appAlphabet avoids letters easily confused when a person types an app
// password into a phone (no 0/o, 1/l/i).
const appAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"

// NewApp returns a new application password: 20 random characters (about
// 99 bits) in groups of four, e.g. "k3mz-8qta-vw2x-p9rn-c4hd".
func NewApp() string {
	b := make([]byte, 20)
	rand.Read(b)
	var out strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			out.WriteByte('-')
		}
		out.WriteByte(appAlphabet[int(c)%len(appAlphabet)])
	}
	return out.String()
}

// AppHash is what is stored of an application password: SHA-256 of its
// characters without dashes or spaces, lower case. A fast hash is enough
// for a long random secret, and it lets a login find the password by its
// hash.
func AppHash(pw string) string {
	norm := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(pw))
	sum := sha256.Sum256([]byte("mailroom-app-password:" + norm))
	return hex.EncodeToString(sum[:])
}
