package password

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
)

// scramIterations is the PBKDF2 count of new SCRAM-SHA-256 verifiers.
// RFC 7677 4 asks for at least 4096; the verifiers are the weakest stored
// form of a password (a copied database is attacked at this cost, not
// argon2id's), so more, at a few tens of milliseconds per client login.
const scramIterations = 65536

// SCRAM returns the SCRAM-SHA-256 verifiers of pw as stored with a user:
// "iterations:salt:stored-key:server-key", base64. The password itself
// cannot be recovered from them.
func SCRAM(pw string) (string, error) {
	client, err := scram.SHA256.NewClient("", pw, "")
	if err != nil {
		return "", fmt.Errorf("password: SCRAM: %w", err)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: scramIterations})
	if err != nil {
		return "", fmt.Errorf("password: SCRAM: %w", err)
	}
	return formatSCRAM(creds), nil
}

func formatSCRAM(c scram.StoredCredentials) string {
	b := base64.StdEncoding
	return strconv.Itoa(c.Iters) + ":" + b.EncodeToString([]byte(c.Salt)) + ":" +
		b.EncodeToString(c.StoredKey) + ":" + b.EncodeToString(c.ServerKey)
}

// ParseSCRAM reads verifiers written by SCRAM.
func ParseSCRAM(s string) (scram.StoredCredentials, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 4 {
		return scram.StoredCredentials{}, fmt.Errorf("password: malformed SCRAM verifiers")
	}
	iters, err := strconv.Atoi(parts[0])
	b := base64.StdEncoding
	salt, err1 := b.DecodeString(parts[1])
	stored, err2 := b.DecodeString(parts[2])
	server, err3 := b.DecodeString(parts[3])
	if err != nil || err1 != nil || err2 != nil || err3 != nil || iters < 1 {
		return scram.StoredCredentials{}, fmt.Errorf("password: malformed SCRAM verifiers")
	}
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters}, StoredKey: stored, ServerKey: server}, nil
}

// FakeSCRAM returns verifiers for a user that does not exist, the same for
// the same name and secret, so that a SCRAM exchange for an unknown name
// looks like one for a known name until the proof fails.
func FakeSCRAM(secret []byte, username string) scram.StoredCredentials {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(username))
	sum := mac.Sum(nil)
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(sum[:16]), Iters: scramIterations},
		StoredKey: sum, ServerKey: sum}
}

// Derive returns everything stored of a new main password: its argon2id
// hash, its SCRAM-SHA-256 verifiers, and, with withCRAM, its CRAM-MD5
// states (see CRAMMD5 for the trade-off).
func Derive(pw string, withCRAM bool) (hash, scramVerifiers, cram string, err error) {
	if hash, err = Hash(pw); err != nil {
		return "", "", "", err
	}
	if scramVerifiers, err = SCRAM(pw); err != nil {
		return "", "", "", err
	}
	if withCRAM {
		if cram, err = CRAMMD5(pw); err != nil {
			return "", "", "", err
		}
	}
	return hash, scramVerifiers, cram, nil
}
