package password

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
)

func TestHashAndCheck(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Errorf("unexpected hash format %q", h)
	}
	h2, _ := Hash("correct horse")
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	cases := []struct {
		name, pw string
		want     bool
	}{
		{"the right password matches", "correct horse", true},
		{"a wrong password does not", "correct horsE", false},
		{"an empty password does not", "", false},
		{"a prefix does not", "correct", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ok, err := Check(h, c.pw)
			if err != nil || ok != c.want {
				t.Errorf("Check = %v, %v; want %v", ok, err, c.want)
			}
		})
	}
}

func TestCheckRejectsMalformedHashes(t *testing.T) {
	for _, h := range []string{"", "plain", "$bcrypt$x", "$argon2id$v=19$m=x$a$b", "$argon2id$v=19$m=1,t=1,p=1$!!$!!"} {
		if ok, err := Check(h, "pw"); ok || err == nil {
			t.Errorf("Check(%q) = %v, %v; want an error", h, ok, err)
		}
	}
}

func TestHashRefusesEmpty(t *testing.T) {
	if _, err := Hash(""); err == nil {
		t.Error("an empty password was hashed")
	}
}

func TestAppPasswords(t *testing.T) {
	a, b := NewApp(), NewApp()
	if a == b || len(a) != 24 || strings.Count(a, "-") != 4 {
		t.Errorf("NewApp gave %q and %q", a, b)
	}
	if AppHash(a) != AppHash(strings.ToUpper(strings.ReplaceAll(a, "-", " "))) {
		t.Error("the hash depends on case or separators")
	}
	if AppHash(a) == AppHash(b) {
		t.Error("two app passwords share a hash")
	}
}

func TestSCRAMVerifiers(t *testing.T) {
	v, err := SCRAM("pencil")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseSCRAM(v)
	if err != nil || c.Iters != scramIterations || len(c.Salt) != 16 || len(c.StoredKey) != 32 || len(c.ServerKey) != 32 {
		t.Fatalf("ParseSCRAM(%q) = %+v, %v", v, c, err)
	}
	if v2, _ := SCRAM("pencil"); v2 == v {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	for _, bad := range []string{"", "1:2:3", "x:AA==:AA==:AA==", "4096:!!:AA==:AA=="} {
		if _, err := ParseSCRAM(bad); err == nil {
			t.Errorf("ParseSCRAM(%q) accepted", bad)
		}
	}
	a, b := FakeSCRAM([]byte("k"), "ann"), FakeSCRAM([]byte("k"), "ann")
	if a.Salt != b.Salt || FakeSCRAM([]byte("k"), "bob").Salt == a.Salt {
		t.Error("fake verifiers are not stable per name")
	}
}

func TestCRAMMD5(t *testing.T) {
	// RFC 2195 2's example: user tim, password tanstaaftanstaaf.
	const challenge = "<1896.697170952@postoffice.reston.mci.net>"
	secret, err := CRAMMD5("tanstaaftanstaaf")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckCRAMMD5(secret, challenge, "b913a602c7eda7a495b4e6e7334d3890") {
		t.Error("the RFC 2195 example does not verify")
	}
	if CheckCRAMMD5(secret, challenge, "b913a602c7eda7a495b4e6e7334d3891") || CheckCRAMMD5(secret, challenge+"x", "b913a602c7eda7a495b4e6e7334d3890") {
		t.Error("a wrong digest or challenge verifies")
	}
	if strings.Contains(secret, "tanstaaf") {
		t.Error("the password is stored")
	}
	long := strings.Repeat("p", 100)
	s2, _ := CRAMMD5(long)
	mac := hmac.New(md5.New, []byte(long))
	mac.Write([]byte(challenge))
	if !CheckCRAMMD5(s2, challenge, hex.EncodeToString(mac.Sum(nil))) {
		t.Error("a password longer than a block does not verify")
	}
	if CheckCRAMMD5("garbage", challenge, "00") || CheckCRAMMD5("zz:zz", challenge, "00") {
		t.Error("malformed secrets verify")
	}
}

func TestCheckStrength(t *testing.T) {
	cases := []struct {
		name string
		pw   string
		ok   bool
	}{
		{"a one-character password is refused", "x", false},
		{"nine characters are too short", "k3#Vq9!zM", false},
		{"a common password padded to length is refused", "password123", false},
		{"a keyboard row is refused", "qwertyuiop", false},
		{"a repeated character is refused", "aaaaaaaaaaaa", false},
		{"the user's own address is refused", "alice@example.test", false},
		{"the address inside a longer password is refused", "my-alice@example.test-pw", false},
		{"a passphrase of random words is accepted", "correct horse battery staple", true},
		{"a random string is accepted", "mx7Kq2pLz9Rw", true},
		{"a generated app password is accepted", NewApp(), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckStrength(c.pw, "alice@example.test")
			if (err == nil) != c.ok {
				t.Errorf("CheckStrength(%q) = %v, want ok=%v", c.pw, err, c.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "--generate") && !strings.Contains(err.Error(), "too long") {
				t.Errorf("the refusal does not say what to do: %v", err)
			}
		})
	}
}

// TestDummy: the dummy hash has Hash's format and parameters, so checking
// against it costs a real check, and it matches nothing.
func TestDummy(t *testing.T) {
	d, real := Dummy(), mustHash(t, "x")
	if strings.Join(strings.Split(d, "$")[:4], "$") != strings.Join(strings.Split(real, "$")[:4], "$") {
		t.Errorf("Dummy() = %q does not have Hash's parameters (%q)", d, real)
	}
	for _, pw := range []string{"", "x", "mailroom-dummy-password"} {
		if ok, err := Check(d, pw); ok || err != nil {
			t.Errorf("Check(Dummy(), %q) = %v, %v; want false, nil", pw, ok, err)
		}
	}
	if Dummy() == d {
		t.Error("two dummy hashes are the same")
	}
}

func mustHash(t *testing.T, pw string) string {
	h, err := Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
