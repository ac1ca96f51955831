package auth

import (
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	reader, readerHash, _ := Generate()
	writer, writerHash, _ := Generate()
	admin, adminHash, _ := Generate()
	var ts []Token
	for _, x := range []struct {
		name, hash string
		role       Role
	}{{"r", readerHash, Read}, {"w", writerHash, Write}, {"a", adminHash, Admin}} {
		h, err := ParseHash(x.hash)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, Token{Name: x.name, Hash: h, Role: x.role})
	}
	tokens := New(ts)
	tests := []struct {
		header string
		need   Role
		want   int
	}{
		{"", Read, 401},
		{"Bearer ", Read, 401},
		{"Basic abc", Read, 401},
		{"Bearer nope", Read, 401},
		{"Bearer " + reader, Read, 0},
		{"bearer " + reader, Read, 0},
		{"Bearer " + reader, Write, 403},
		{"Bearer " + writer, Write, 0},
		{"Bearer " + writer, Admin, 403},
		{"Bearer " + admin, Admin, 0},
		{"Bearer " + admin, Read, 0},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/values/k", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		if got, reason := tokens.Check(r, tt.need); got != tt.want {
			t.Errorf("%q needing %s: %d %q, want %d", tt.header, tt.need, got, reason, tt.want)
		}
	}
	var off *Tokens
	if got, _ := off.Check(httptest.NewRequest("GET", "/", nil), Admin); got != 0 {
		t.Errorf("auth off refused a request: %d", got)
	}
	if New(nil) != nil {
		t.Error("New of no tokens is not nil (auth off)")
	}
}

func TestGenerateAndParse(t *testing.T) {
	token, h, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "tako_") || len(h) != 64 {
		t.Fatalf("token %q, hash %q", token, h)
	}
	parsed, err := ParseHash(h)
	if err != nil || parsed != Hash(token) || hex.EncodeToString(parsed[:]) != h {
		t.Fatalf("ParseHash(%q) = %x, %v", h, parsed, err)
	}
	for _, bad := range []string{"", "zz", strings.Repeat("a", 63), strings.Repeat("g", 64)} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
	for _, s := range []string{"read", "write", "admin"} {
		if r, err := ParseRole(s); err != nil || r.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v", s, r, err)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole(root) accepted")
	}
}

func TestDenySays401WithAChallenge(t *testing.T) {
	w := httptest.NewRecorder()
	Deny(w, http.StatusUnauthorized, "unauthorized")
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("%d %v", w.Code, w.Header())
	}
}

// TestNewSection: one line per role, named after it, listing the hash of
// the token returned for it.
func TestNewSection(t *testing.T) {
	section, tokens, err := NewSection(Read, Admin)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(section, "auth:\n  tokens:\n") || strings.Count(section, "\n") != 4 || len(tokens) != 2 {
		t.Fatalf("section %q, tokens %v", section, tokens)
	}
	for _, role := range []Role{Read, Admin} {
		h := Hash(tokens[role.String()])
		want := "    " + ConfigLine(role.String()+"-token", hex.EncodeToString(h[:]), role) + "\n"
		if !strings.Contains(section, want) {
			t.Errorf("section %q lacks %q", section, want)
		}
	}
}
