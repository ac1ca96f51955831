// Package auth checks the bearer tokens of HTTP requests against the
// tokens a configuration lists, each with a role.
//
// A configuration lists the SHA-256 of each token, never the token: a token
// is 32 random bytes (Generate), so a plain hash is as good as a password
// hash for it, and the file, the coordinator's JSON and every cache hold
// nothing that lets anyone in. A request presents the token in
// "Authorization: Bearer TOKEN"; its hash is looked up.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Role is what a token may do; each role may do what the ones before it may.
type Role int

// The roles.
const (
	// Read: GET and HEAD of /values/, /stat/, /where/, and /metrics.
	Read Role = iota + 1
	// Write: also POST, PUT and DELETE of /values/.
	Write
	// Admin: also the coordinator's configuration and status endpoints.
	Admin
)

// String returns the role's name in configurations: read, write or admin.
func (r Role) String() string {
	switch r {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole parses read, write or admin.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{Read, Write, Admin} {
		if s == r.String() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: want read, write or admin", s)
}

// Token is one token a configuration lists.
type Token struct {
	Name string   // for logs and errors
	Hash [32]byte // SHA-256 of the token
	Role Role
}

// ParseHash parses the hex SHA-256 of a token.
func ParseHash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("invalid sha256 %q: want the 64 hex digits of a token's SHA-256 (tako token prints one)", s)
	}
	copy(h[:], b)
	return h, nil
}

// Hash returns the SHA-256 of a token.
func Hash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// Generate returns a new random token and the hex SHA-256 to list in a
// configuration.
func Generate() (token, sha256Hex string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("auth: generating a token: %w", err)
	}
	token = "tako_" + base64.RawURLEncoding.EncodeToString(b[:])
	h := Hash(token)
	return token, hex.EncodeToString(h[:]), nil
}

// ConfigLine returns the entry that lists a token under auth: tokens: in a
// configuration, without indentation: NAME: {sha256: HEX, role: ROLE}.
func ConfigLine(name, sha256Hex string, role Role) string {
	return fmt.Sprintf("%s: {sha256: %s, role: %s}", name, sha256Hex, role)
}

// NewSection makes a new token for each of roles and the auth section of a
// configuration that lists them, each named after its role ("read-token",
// ...), one line each: for tests and trials. It returns the section, ending
// with a newline, and the tokens by role name ("read", ...).
func NewSection(roles ...Role) (section string, tokens map[string]string, err error) {
	var b strings.Builder
	b.WriteString("auth:\n  tokens:\n")
	tokens = make(map[string]string, len(roles))
	for _, role := range roles {
		token, hash, err := Generate()
		if err != nil {
			return "", nil, err
		}
		tokens[role.String()] = token
		b.WriteString("    " + ConfigLine(role.String()+"-token", hash, role) + "\n")
	}
	return b.String(), tokens, nil
}

// Tokens is the set of tokens of a configuration. A nil *Tokens means
// authentication is off: every request is allowed.
type Tokens struct {
	byHash map[[32]byte]Token
}

// New returns the set of ts; nil when ts is empty (auth off).
func New(ts []Token) *Tokens {
	if len(ts) == 0 {
		return nil
	}
	t := &Tokens{byHash: make(map[[32]byte]Token, len(ts))}
	for _, tok := range ts {
		t.byHash[tok.Hash] = tok
	}
	return t
}

// List returns the tokens, in no particular order.
func (t *Tokens) List() []Token {
	if t == nil {
		return nil
	}
	out := make([]Token, 0, len(t.byHash))
	for _, tok := range t.byHash {
		out = append(out, tok)
	}
	return out
}

// Lookup returns the listed token whose hash is token's hash, and whether
// there is one.
func (t *Tokens) Lookup(token string) (Token, bool) {
	if t == nil {
		return Token{}, false
	}
	tok, ok := t.byHash[Hash(token)]
	return tok, ok
}

// Holds says whether token is a listed token of the role need at least:
// nil when it is (or auth is off), else why not. A process of the cluster
// checks its own token with it, to fail at once rather than be refused by
// its peers.
func (t *Tokens) Holds(token string, need Role) error {
	if t == nil {
		return nil
	}
	if token == "" {
		return fmt.Errorf("the configuration has an auth section, and no token was given (it needs one of the role %s)", need)
	}
	tok, ok := t.Lookup(token)
	switch {
	case !ok:
		return errors.New("the token given is not one the configuration's auth section lists")
	case tok.Role < need:
		return fmt.Errorf("the token given (%q) has the role %s; it needs %s", tok.Name, tok.Role, need)
	}
	return nil
}

// Bearer returns the token of an "Authorization: Bearer TOKEN" header.
func Bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// Check says whether r may do what needs the role need: 0 when it may (or
// auth is off), else the status to answer (401 without a valid token, 403
// with a token of a lesser role) and a one-line reason.
func (t *Tokens) Check(r *http.Request, need Role) (status int, reason string) {
	if t == nil {
		return 0, ""
	}
	token, ok := Bearer(r)
	if !ok {
		return http.StatusUnauthorized, "unauthorized: this cluster needs a token (Authorization: Bearer TOKEN)"
	}
	tok, ok := t.Lookup(token)
	if !ok {
		return http.StatusUnauthorized, "unauthorized: unknown token"
	}
	if tok.Role < need {
		return http.StatusForbidden, fmt.Sprintf("forbidden: token %q has the role %s; this needs %s", tok.Name, tok.Role, need)
	}
	return 0, ""
}

// Deny answers a request that Check refused.
func Deny(w http.ResponseWriter, status int, reason string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tako"`)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, reason)
}

// Require returns h behind a check that the request's token has the role
// need, with the tokens tokens() returns at the time of the request.
func Require(tokens func() *Tokens, need Role, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, reason := tokens().Check(r, need); status != 0 {
			Deny(w, status, reason)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Transport is an http.RoundTripper that sends Token as a bearer token with
// every request: the HTTP client of a process that talks to another
// process of a cluster with authentication on.
type Transport struct {
	Token string
	// Base makes the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if t.Token == "" {
		return base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.Token)
	return base.RoundTrip(r)
}

// WithToken returns c with a Transport that sends token; c itself when
// token is empty.
func WithToken(c *http.Client, token string) *http.Client {
	if token == "" {
		return c
	}
	cc := *c
	cc.Transport = &Transport{Token: token, Base: c.Transport}
	return &cc
}

// CloseIdleConnections closes the idle connections of Base, if it can.
func (t *Transport) CloseIdleConnections() {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if c, ok := base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
