package tests

import (
	"os/exec"
	"strings"
	"testing"
)

// pythonPartialFlush is an IMAP client that compresses as mbsync does:
// zlib, each flush a Z_PARTIAL_FLUSH, whose last bits stay with the
// client until its next flush.
const pythonPartialFlush = `
import socket, ssl, sys, zlib
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10))
buf = b""
def line():
    global buf
    while b"\r\n" not in buf:
        d = s.recv(65536)
        if not d: raise SystemExit("connection closed")
        buf += inflate(d) if z else d
    l, buf = buf.split(b"\r\n", 1)
    return l.decode()
def until(tag):
    while True:
        l = line()
        if l.startswith(tag + " "): return l
z = None
comp = zlib.compressobj(6, zlib.DEFLATED, -15)
dec = zlib.decompressobj(-15)
inflate = dec.decompress
def send(b):
    if z: s.sendall(comp.compress(b) + comp.flush(zlib.Z_PARTIAL_FLUSH))
    else: s.sendall(b)
line()
send(b"a LOGIN alice@example.test secret-alice\r\n"); print(until("a"))
send(b"b COMPRESS DEFLATE\r\n"); print(until("b"))
z = True
send(b"c SELECT INBOX\r\n"); print("select", until("c"))
# Six APPENDs in one flush: enough text for a block with dynamic codes.
batch = b""
for i in range(6):
    msg = ("Message-ID: <p%d@partial.example>\r\nSubject: partial flush %d\r\n\r\nbody %d of the batch\r\n" % (i, i, i)).encode()
    batch += b"p%d APPEND INBOX (\\Seen) {%d+}\r\n" % (i, len(msg)) + msg + b"\r\n"
send(batch)
print("batch", " ".join(until("p%d" % i).split()[1] for i in range(6)))
# Short commands, each its own flush (blocks with the fixed codes).
for i in range(20):
    send(b"n%d NOOP\r\n" % i)
    until("n%d" % i)
print("noops OK")
# A large message in many flushes, as a client streams a literal.
big = b"".join(b"line %06d of a large message, compressed as it is sent\r\n" % i for i in range(4000))
big = b"Subject: large\r\n\r\n" + big
send(b"g APPEND INBOX {%d+}\r\n" % len(big))
for i in range(0, len(big), 8192):
    send(big[i:i+8192])
send(b"\r\n"); print("large", until("g").split()[1])
send(b"h STATUS INBOX (MESSAGES)\r\n"); print(line()); until("h")
send(b"z LOGOUT\r\n"); print(until("z"))
`

// TestIMAPCompressPartialFlush: a client whose zlib ends each flush with
// Z_PARTIAL_FLUSH (mbsync's) has every command answered: pipelined
// APPENDs in one block with dynamic codes, short commands in blocks with
// fixed codes, a large literal over many flushes.
func TestIMAPCompressPartialFlush(t *testing.T) {
	py := requireTool(t, "python3")
	s, _ := accessServer(t)
	host, port, _ := strings.Cut(s.imapsAddr, ":")
	out, err := exec.Command(py, "-c", pythonPartialFlush, host, port).CombinedOutput()
	got := string(out)
	if err != nil {
		t.Fatalf("python: %v\n%s\n%s", err, got, s.logs())
	}
	for _, want := range []string{
		"b OK DEFLATE active", "select c OK", "batch OK OK OK OK OK OK", "noops OK", "large OK",
		"* STATUS INBOX (MESSAGES 9)", "z OK",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the client did not get %q:\n%s", want, got)
		}
	}
}
