// Package dmarcreport reads the DMARC aggregate reports mailbox providers
// send to a domain's rua address (RFC 7489 7.2, its appendix C schema): an
// XML document, usually zipped or gzipped, attached to a message. What it
// reads is bounded (the document's size once decompressed, its rows), so
// a crafted attachment cannot exhaust memory.
package dmarcreport

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mailroom/internal/message"
	"mailroom/internal/store"
)

// Limits on what one message's reports may be, all together: the XML
// once decompressed, the rows, the attachments read.
const (
	MaxXML     = 16 << 20
	MaxRows    = 100_000
	MaxReports = 5
)

var errTooLarge = errors.New("dmarcreport: the report is larger than Mailroom reads")

// Parse reads one report's XML.
func Parse(r io.Reader) (store.DMARCReport, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxXML+1))
	if err != nil {
		return store.DMARCReport{}, fmt.Errorf("dmarcreport: %w", err)
	}
	if len(data) > MaxXML {
		return store.DMARCReport{}, errTooLarge
	}
	var f feedback
	if err := xml.Unmarshal(data, &f); err != nil {
		return store.DMARCReport{}, fmt.Errorf("dmarcreport: not a DMARC report: %w", err)
	}
	m := f.Metadata
	rep := store.DMARCReport{Org: clean(m.Org), Email: clean(m.Email), ReportID: clean(m.ReportID),
		Begin: time.Unix(m.DateRange.Begin, 0), End: time.Unix(m.DateRange.End, 0),
		Domain: strings.ToLower(clean(f.Policy.Domain)), Policy: clean(f.Policy.P)}
	if rep.Org == "" || rep.ReportID == "" || rep.Domain == "" {
		return store.DMARCReport{}, errors.New("dmarcreport: the report names no reporter, report ID or domain")
	}
	if len(f.Records) > MaxRows { // (Find counts them before decoding)
		return store.DMARCReport{}, errTooLarge
	}
	for _, rec := range f.Records {
		row := store.DMARCRow{SourceIP: clean(rec.Row.SourceIP), Count: max(rec.Row.Count, 0),
			Disposition: clean(rec.Row.Evaluated.Disposition), DKIM: clean(rec.Row.Evaluated.DKIM), SPF: clean(rec.Row.Evaluated.SPF),
			HeaderFrom: strings.ToLower(clean(rec.Identifiers.HeaderFrom))}
		if len(rec.Auth.DKIM) > 0 {
			row.DKIMDomain = strings.ToLower(clean(rec.Auth.DKIM[0].Domain))
		}
		if len(rec.Auth.SPF) > 0 {
			row.SPFDomain = strings.ToLower(clean(rec.Auth.SPF[0].Domain))
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

// clean trims a value and keeps it short and printable: it comes from
// anyone who can send mail.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 256 {
		s = s[:256]
	}
	return s
}

// Looks reports whether a message with this Subject is meant as an
// aggregate report (RFC 7489 7.2.1.1: "Report Domain: ... Submitter: ...").
func Looks(subject string) bool {
	return strings.Contains(strings.ToLower(subject), "report domain:")
}

// Find returns the reports attached to a message: each part that is a
// zip file, a gzip file or XML (by type or file name) and parses as one,
// within the limits for the whole message.
func Find(msg []byte) ([]store.DMARCReport, error) {
	var out []store.DMARCReport
	var errs []error
	budget, rows, tried := MaxXML, MaxRows, 0
	var walk func(p *message.Part, depth int)
	walk = func(p *message.Part, depth int) {
		if depth > 8 {
			return
		}
		for _, c := range p.Parts {
			walk(c, depth+1)
		}
		if len(p.Parts) > 0 || p.BodyStart > int64(len(msg)) || p.End > int64(len(msg)) || p.BodyStart > p.End {
			return
		}
		kind := kindOf(p)
		if kind == "" || tried >= MaxReports {
			return
		}
		tried++
		raw := bytes.NewReader(msg[p.BodyStart:p.End])
		body, known := message.DecodeTransfer(raw, p.Encoding)
		switch {
		case !known:
			errs = append(errs, fmt.Errorf("dmarcreport: an attachment in an unknown transfer encoding %q", clean(p.Encoding)))
			return
		case body == nil: // 7bit, 8bit, binary: as it is
			body = raw
		}
		r, err := open(kind, body)
		var data []byte
		if err == nil {
			data, err = io.ReadAll(io.LimitReader(r, int64(budget)+1))
		}
		if err == nil {
			n := bytes.Count(data, []byte("<record"))
			if len(data) > budget || n > rows {
				err = errTooLarge
			}
			budget, rows = budget-len(data), rows-n
		}
		if err == nil {
			var rep store.DMARCReport
			if rep, err = Parse(bytes.NewReader(data)); err == nil {
				out = append(out, rep)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	walk(message.Parse(msg), 0)
	if len(out) == 0 && len(errs) > 0 {
		return nil, errs[0]
	}
	return out, nil
}

// kindOf says what an attachment holds: "zip", "gzip", "xml" or "".
func kindOf(p *message.Part) string {
	name := strings.ToLower(param(p.DispParams, "filename") + param(p.Params, "name"))
	t := p.Type + "/" + p.Subtype
	switch {
	case t == "application/tlsrpt+gzip" || t == "application/tlsrpt+json" || strings.HasSuffix(name, ".json.gz"):
		return "" // a TLS report (RFC 8460), whose subject looks the same
	case t == "application/zip" || t == "application/x-zip-compressed" || strings.HasSuffix(name, ".zip"):
		return "zip"
	case t == "application/gzip" || t == "application/x-gzip" || strings.HasSuffix(name, ".gz"):
		return "gzip"
	case t == "text/xml" || t == "application/xml" || strings.HasSuffix(name, ".xml"):
		return "xml"
	}
	return ""
}

func param(params []string, name string) string {
	for i := 0; i+1 < len(params); i += 2 {
		if params[i] == name {
			return params[i+1]
		}
	}
	return ""
}

// open returns the XML inside an attachment, bounded.
func open(kind string, body io.Reader) (io.Reader, error) {
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(io.LimitReader(body, MaxXML))
		if err != nil {
			return nil, fmt.Errorf("dmarcreport: gzip: %w", err)
		}
		return io.LimitReader(zr, MaxXML+1), nil
	case "zip":
		data, err := io.ReadAll(io.LimitReader(body, MaxXML+1))
		if err != nil {
			return nil, err
		}
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, fmt.Errorf("dmarcreport: zip: %w", err)
		}
		for _, f := range zr.File {
			if strings.HasSuffix(strings.ToLower(f.Name), ".xml") {
				rc, err := f.Open()
				if err != nil {
					return nil, fmt.Errorf("dmarcreport: zip: %w", err)
				}
				defer rc.Close()
				// Read here: the file closes when open returns.
				xmlData, err := io.ReadAll(io.LimitReader(rc, MaxXML+1))
				if err != nil {
					return nil, fmt.Errorf("dmarcreport: zip: %w", err)
				}
				return bytes.NewReader(xmlData), nil
			}
		}
		return nil, errors.New("dmarcreport: the zip file holds no .xml file")
	}
	return io.LimitReader(body, MaxXML+1), nil
}
