// Package smtp holds the SMTP wire format shared by Mailroom's server and,
// later, its delivery client: command lines (RFC 5321 4.1.1), paths and
// mailbox addresses (RFC 5321 4.1.2, RFC 6531), ESMTP parameters (RFC 1870,
// RFC 3461, RFC 6152, RFC 6531), replies with enhanced status codes
// (RFC 3463), and the strict DATA reader that is the defence against SMTP
// smuggling (RFC 5321 4.1.1.4, 4.5.2).
//
// Nothing here knows about sessions, policy or storage.
package smtp
