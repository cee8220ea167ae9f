package dashboard

import "testing"

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/messages?to=a@b.example": "/messages?to=a@b.example",
		"/":                        "/",
		"":                         "/",
		"//evil.example":           "/",
		"/\t/evil.example":         "/",
		"/\\evil.example":          "/",
		"https://evil.example/":    "/",
		"/%09/evil.example":        "/%09/evil.example", // stays a path here: the browser does not decode it into the host
		"javascript:alert(1)":      "/",
		"/x\r\nSet-Cookie: a=b":    "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
