package imapserver

import (
	"io"
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
	s.r.Reset(newInflater(s.c))
	s.w.Reset(flate.NewStatelessWriter(s.c))
	return errSilent
}

// newInflater reads the client's compressed side, handing over every
// block's data as soon as the block ends. zlib's Z_PARTIAL_FLUSH (which
// mbsync uses) ends a flush with an empty block of 10 bits of which up
// to 7 stay with the client until its next flush: a reader that waits
// for the next block, or that reads beyond a block's end before handing
// it over, never gives the command. The decoder is klauspost's with one
// change of ours (third_party/klauspost-compress/README.md): it read 10
// bits past the end of a block with dynamic codes before ending it.
func newInflater(r io.Reader) io.Reader {
	return flate.NewReaderOpts(r, flate.WithPartialBlock())
}
