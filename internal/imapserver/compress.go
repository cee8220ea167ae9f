package imapserver

import (
	"strings"

	"github.com/klauspost/compress/flate"

	"mailroom/internal/imapwire"
)

func init() {
	commands["COMPRESS"] = command{states: stateIn, run: cmdCompress}
}

// cmdCompress turns on DEFLATE compression both ways (RFC 4978) right
// after its OK.
//
// The server's side compresses each flush on its own (klauspost's
// stateless writer: no history kept between responses), so an idle
// compressed session holds no compressor; a responses' batch still
// compresses within itself. The client's side needs the decompressor's
// 32 KiB window for as long as the session lasts: DEFLATE's
// back-references reach that far.
func cmdCompress(s *session, _ string, p *imapwire.Parser) error {
	if err := p.SP(); err != nil {
		return err
	}
	alg, err := p.Atom()
	if err != nil {
		return err
	}
	if err := p.End(); err != nil {
		return err
	}
	if s.compressed {
		return no("[COMPRESSIONACTIVE]", "Compression is already on")
	}
	if !strings.EqualFold(alg, "DEFLATE") {
		return bad("Unknown compression: only DEFLATE is offered")
	}
	if s.r.Buffered() > 0 {
		// Whatever follows the command comes compressed, after the OK.
		return bad("Commands were pipelined after COMPRESS: send nothing until its response")
	}
	s.tagged(s.tag, "OK DEFLATE active")
	if !s.flush() {
		return errConnection
	}
	s.compressed = true
	// Every block's data as soon as it ends: zlib's Z_PARTIAL_FLUSH (which
	// mbsync uses) ends a command with an empty block that does not
	// realign the stream, and a reader waiting for the next one never
	// gave the command.
	s.r.Reset(flate.NewReaderOpts(s.c, flate.WithPartialBlock()))
	s.w.Reset(flate.NewStatelessWriter(s.c))
	return errSilent
}
