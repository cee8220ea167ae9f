package tracking

import (
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	s := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	tok := Token{Kind: "c", QueueID: "q1", Recipient: "a@b.example", Domain: "example.com", URL: "https://shop.example/x?a=1&b=2"}
	got, err := s.Verify(s.Sign(tok))
	if err != nil || got != tok {
		t.Fatalf("Verify(Sign) = %+v, %v", got, err)
	}
	text := s.Sign(tok)
	for name, bad := range map[string]string{
		"another key":     NewSigner([]byte("another")).Sign(tok),
		"changed body":    "x" + text[1:],
		"no mac":          strings.Split(text, ".")[0],
		"not base64":      "!!!.!!!",
		"a script link":   s.Sign(Token{Kind: "c", QueueID: "q", URL: "javascript:alert(1)"}),
		"an unknown kind": s.Sign(Token{Kind: "x", QueueID: "q"}),
	} {
		if _, err := s.Verify(bad); err != ErrToken {
			t.Errorf("%s: %v, want ErrToken", name, err)
		}
	}
}

func TestRewrite(t *testing.T) {
	s := NewSigner([]byte("k"))
	html := `<html><body><p><a href="https://shop.example/a?x=1&amp;y=2">shop</a> <a href='http://b.example/'>b</a>` +
		` <a href="mailto:x@y.example">mail</a> <a href="#top">top</a></p></body></html>`
	out := s.Rewrite(html, "https://mail.example.com:8443/", Token{QueueID: "q1", Domain: "example.com"}, true, true)
	if strings.Count(out, `href="https://mail.example.com:8443/t/c/`) != 2 || !strings.Contains(out, `href="mailto:x@y.example"`) || !strings.Contains(out, `href="#top"`) {
		t.Errorf("links: %s", out)
	}
	if !strings.Contains(out, `<img src="https://mail.example.com:8443/t/o/`) || !strings.HasSuffix(out, `style="display:none"></body></html>`) {
		t.Errorf("image: %s", out)
	}
	// The first link's token carries the URL unescaped.
	i := strings.Index(out, "/t/c/") + 5
	tok, err := s.Verify(out[i : i+strings.Index(out[i:], `"`)])
	if err != nil || tok.URL != "https://shop.example/a?x=1&y=2" || tok.Kind != "c" {
		t.Errorf("the first link's token: %+v, %v", tok, err)
	}
	if same := s.Rewrite(html, "https://m.example", Token{}, false, false); same != html {
		t.Errorf("nothing asked, something changed: %s", same)
	}
}

func TestRewriteEdges(t *testing.T) {
	s := NewSigner([]byte("k"))
	html := `<p>İİİ</p><a data-href="https://x.example/" href="HTTPS://Shop.example/">x</a></BODY>`
	out := s.Rewrite(html, "https://m.example", Token{QueueID: "q"}, true, true)
	if !strings.Contains(out, `data-href="https://x.example/"`) || strings.Count(out, "/t/c/") != 1 {
		t.Errorf("links: %s", out)
	}
	if !strings.HasPrefix(out, "<p>İİİ</p>") || !strings.HasSuffix(out, `style="display:none"></BODY>`) {
		t.Errorf("the image, before </BODY> whatever the text before it: %s", out)
	}
	long := `<a href="https://x.example/` + strings.Repeat("a", 3000) + `">x</a>`
	if got := s.Rewrite(long, "https://m.example", Token{QueueID: "q"}, false, true); got != long {
		t.Error("a link too long for a token was rewritten")
	}
}
