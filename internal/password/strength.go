package password

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
)

// Password policy: NIST SP 800-63B 5.1.1 asks for a minimum length and a
// check against known and guessable passwords rather than composition
// rules. zxcvbn (Dropbox's estimator) counts the guesses a cracker who
// knows common passwords, words, names, dates, keyboard patterns and the
// user's own address would need.
const (
	// MinLength is the fewest characters a password may have.
	MinLength = 10
	// MaxLength bounds what is hashed.
	MaxLength = 1024
	// minScore is zxcvbn's score (0-4) a password needs: 3 is at least
	// 10^8 guesses, which argon2id makes a long offline attack.
	minScore = 3
)

// CheckStrength says why pw is too weak to be a login password, or returns
// nil. hints are words the password must not lean on (the user's address,
// its parts, the domain).
func CheckStrength(pw string, hints ...string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinLength:
		return fmt.Errorf("the password is too short (%d characters): use at least %d, for example a passphrase of four random words, or let mailroom make one with --generate", n, MinLength)
	case len(pw) > MaxLength:
		return fmt.Errorf("the password is too long (over %d bytes)", MaxLength)
	}
	var inputs []string
	for _, h := range hints {
		if h != "" && strings.Contains(strings.ToLower(pw), strings.ToLower(h)) {
			return fmt.Errorf("the password contains %q: choose one that does not, or let mailroom make one with --generate", h)
		}
		inputs = append(inputs, strings.ToLower(h))
		inputs = append(inputs, strings.FieldsFunc(strings.ToLower(h), func(r rune) bool { return r == '@' || r == '.' || r == '+' || r == '-' })...)
	}
	r := zxcvbn.PasswordStrength(pw, inputs)
	if r.Score < minScore {
		return fmt.Errorf("the password is too easy to guess (about 10^%d guesses: a common word, name, date, keyboard pattern or your address makes it weak): use a longer passphrase of random words, or let mailroom make one with --generate", int(math.Log10(max(r.Guesses, 1))))
	}
	return nil
}
