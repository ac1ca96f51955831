package tako

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/takodb/tako/internal/auth"
)

// TestTokenIsSent: -token, or $TAKO_TOKEN, goes as a bearer token with
// every request; a 401 exits 2 with the server's reason.
func TestTokenIsSent(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") == "" {
			auth.Deny(w, http.StatusUnauthorized, "unauthorized: this cluster needs a token")
			return
		}
		w.Header().Set("X-Timestamp", "1")
		w.Write([]byte("v"))
	}))
	defer srv.Close()
	server := strings.TrimPrefix(srv.URL, "http://")
	run(t, server, "", "get", "-token", "secret", "k").want(t, 0, "get -token")
	var stdout, stderr bytes.Buffer
	env := func(name string) string {
		return map[string]string{"TAKO_SERVER": server, "TAKO_TOKEN": "from-env"}[name]
	}
	if code := Main([]string{"get", "k"}, env, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("get with $TAKO_TOKEN: exit %d: %s", code, stderr.String())
	}
	r := run(t, server, "", "get", "k").want(t, 2, "get without a token")
	if !strings.Contains(r.stderr, "unauthorized") {
		t.Errorf("a 401 does not say so: %q", r.stderr)
	}
	want := []string{"Bearer secret", "Bearer from-env", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization headers %q, want %q", got, want)
	}
}

func TestTokenCommand(t *testing.T) {
	r := run(t, "", "", "token", "write", "app").want(t, 0, "token write app")
	token, _, _ := strings.Cut(strings.TrimPrefix(r.stdout, "token: "), "\n")
	h := auth.Hash(token)
	if !strings.Contains(r.stdout, "app: {sha256: ") || !strings.Contains(r.stdout, "role: write}") ||
		!strings.Contains(r.stdout, strings.ToLower(strings.TrimSpace(hexOf(h[:])))) {
		t.Errorf("tako token output: %q", r.stdout)
	}
	run(t, "", "", "token", "root", "app").want(t, 2, "token with a bad role")
	run(t, "", "", "token", "read").want(t, 2, "token without a name")
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}
