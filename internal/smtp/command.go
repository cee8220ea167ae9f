package smtp

import (
	"bytes"
	"strings"
)

// Command is one parsed command line: the verb in upper case and the rest
// of the line after the first space, unchanged.
type Command struct {
	Verb string
	Arg  string
}

// Errors for command lines, each with the reply RFC 5321 asks for.
var (
	ErrBareLineEnding = &Reply{Code: 500, Enhanced: "5.5.2", Text: "Syntax error: commands must end with CRLF; a bare CR or LF is not allowed"}
	ErrLineTooLong    = &Reply{Code: 500, Enhanced: "5.5.2", Text: "Line too long"}
	ErrEmptyCommand   = &Reply{Code: 500, Enhanced: "5.5.2", Text: "Syntax error: empty command"}
	ErrBadCommand     = &Reply{Code: 500, Enhanced: "5.5.1", Text: "Command not recognized"}
)

// ParseCommand parses one command line including its CRLF (RFC 5321 4.1.1).
// A line that does not end in CRLF, or holds a CR or LF anywhere else, is
// refused: lenient line endings are how SMTP smuggling starts.
func ParseCommand(line []byte) (Command, error) {
	if len(line) < 2 || line[len(line)-1] != '\n' || line[len(line)-2] != '\r' {
		return Command{}, ErrBareLineEnding
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, '\r') >= 0 || bytes.IndexByte(line, '\n') >= 0 {
		return Command{}, ErrBareLineEnding
	}
	if len(line) == 0 {
		return Command{}, ErrEmptyCommand
	}
	verb, arg := line, []byte(nil)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		verb, arg = line[:i], line[i+1:]
	}
	if len(verb) == 0 || len(verb) > 10 {
		return Command{}, ErrBadCommand
	}
	for _, c := range verb {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return Command{}, ErrBadCommand
		}
	}
	return Command{Verb: strings.ToUpper(string(verb)), Arg: string(arg)}, nil
}

// CutPrefixFold is strings.CutPrefix ignoring ASCII case, for "FROM:" and
// "TO:" after MAIL and RCPT.
func CutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}
