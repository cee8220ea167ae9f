// Package downgrade converts a message with 8-bit content into one that is
// 7bit data (RFC 2045 2.7), for a next hop that does not offer 8BITMIME
// (RFC 6152 3: a message with 8-bit content must then be converted, returned
// or, failing both, bounced).
//
// Convert walks the MIME structure (RFC 2045, RFC 2046): multipart bodies
// part by part, using the boundary from their Content-Type, and the message
// inside a message/rfc822 part as a message of its own. Every other part is a
// leaf. A leaf whose body is 7bit data is copied byte for byte; any other is
// re-encoded, text/* as quoted-printable and the rest as base64, and its
// Content-Transfer-Encoding set to match. A multipart or message/rfc822
// entity may not be encoded (RFC 2045 6.4, RFC 2046 5.2.1): once its
// contents are converted, its Content-Transfer-Encoding, if 8bit or binary,
// becomes 7bit. An entity that is 7bit data as a whole, header included, is
// copied byte for byte without being looked into, so a message that needs no
// conversion comes out unchanged.
//
// Choices where the RFCs leave room:
//
//   - A header field with 8-bit octets cannot be downgraded without SMTPUTF8
//     or an RFC 2047 rewrite that could change what it means: Convert fails
//     with ErrHeaders8Bit, and with ErrHeaderLine for a header line that no
//     SMTP hop may carry (a NUL, a CR or LF outside CRLF, over 998 octets).
//     Permanent gives the text to fail the delivery with.
//   - A message, or a part, without Content-Type whose body must be encoded
//     is given "MIME-Version: 1.0" (messages only) and
//     "Content-Type: text/plain; charset=X", where X is utf-8 if the body is
//     valid UTF-8 (a near-certain sign, as other 8-bit text seldom is) and
//     otherwise unknown-8bit, as RFC 1428 3 asks when the charset is not
//     known. A message that has a Content-Type but no MIME-Version, and whose
//     header is changed, gets "MIME-Version: 1.0" too.
//   - A preamble or epilogue (RFC 2046 5.1.1) that is not 7bit data is
//     dropped. MIME readers ignore them and there is no encoding for them;
//     replacing octets could forge a boundary delimiter line.
//   - A multipart body in which no boundary delimiter line is found, a
//     Content-Type that does not parse (RFC 2045 5.2 then has it read as
//     text/plain), or nesting deeper than maxDepth: the body is encoded
//     whole as quoted-printable, its Content-Type left as it was. A
//     multipart without its close delimiter gets one after its last part.
//   - A leaf labelled quoted-printable that is not 7bit data is decoded as
//     Go's mime/quotedprintable would and encoded again; one labelled base64
//     keeps only the characters of the base64 alphabet, which are all that
//     RFC 2045 6.8 decoders read, wrapped at 76 columns. Any other label
//     (7bit, 8bit, binary or one we do not know) is taken to mean the body
//     is not encoded.
//   - Quoted-printable output encodes a '-' that starts a line followed by
//     another, so that no line can be taken for a boundary delimiter, and
//     the 'F' of a line starting "From " (RFC 2049 4, item 8).
//
// The header block of an entity is everything up to its first empty line;
// an entity without one is all header. Header fields other than
// Content-Transfer-Encoding keep their order and bytes.
//
// A converted body no longer matches a DKIM signature's body hash (RFC 6376
// 5.3 asks signers to sign a 7-bit form for this reason); nothing here
// re-signs.
package downgrade
