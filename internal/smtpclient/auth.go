package smtpclient

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
)

// auth logs in with AUTH PLAIN, or LOGIN when PLAIN is not offered
// (RFC 4954, RFC 4616). Credentials never travel in plaintext: TLS must
// be up.
func (c *Client) auth() error {
	if c.TLS == nil {
		return &Error{Stage: "auth", Err: errors.New("refusing to send credentials without TLS")}
	}
	mechs := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	has := func(m string) bool { return slices.Contains(mechs, m) }
	enc := base64.StdEncoding.EncodeToString
	switch {
	case has("PLAIN"):
		rep, err := c.cmd("auth", "AUTH PLAIN "+enc([]byte("\x00"+c.opts.Username+"\x00"+c.opts.Password)))
		if err != nil {
			return err
		}
		if rep.Code != 235 {
			return &Error{Stage: "auth", Reply: rep}
		}
		return nil
	case has("LOGIN"):
		steps := []string{"AUTH LOGIN", enc([]byte(c.opts.Username)), enc([]byte(c.opts.Password))}
		for i, line := range steps {
			rep, err := c.cmd("auth", line)
			if err != nil {
				return err
			}
			if i < len(steps)-1 && rep.Code != 334 || i == len(steps)-1 && rep.Code != 235 {
				if rep.Code == 334 {
					c.cmd("auth", "*") // cancel the exchange (RFC 4954 4)
				}
				return &Error{Stage: "auth", Reply: rep}
			}
		}
		return nil
	}
	return &Error{Stage: "auth", Err: errors.New("the server offers neither AUTH PLAIN nor AUTH LOGIN")}
}
