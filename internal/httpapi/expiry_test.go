package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWritesThatExpire(t *testing.T) {
	f := newFake()
	h := NewHandler(Options{Backend: f})

	// X-TTL: the value lives that long, and reads show when it expires.
	resp := do(t, h, request{method: "POST", path: "/values/k", body: "v", header: map[string]string{"X-TTL": "30"}})
	wantAt := strconv.FormatInt(1_000_000+30*time.Second.Microseconds(), 10)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Expires-At") != wantAt {
		t.Fatalf("POST with X-TTL: %d, X-Expires-At %q; want 200, %s", resp.StatusCode, resp.Header.Get("X-Expires-At"), wantAt)
	}
	for _, path := range []string{"/values/k", "/stat/k"} {
		resp = do(t, h, request{method: "GET", path: path})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Expires-At") != wantAt {
			t.Errorf("GET %s: %d, X-Expires-At %q; want 200, %s", path, resp.StatusCode, resp.Header.Get("X-Expires-At"), wantAt)
		}
	}
	resp = do(t, h, request{method: "HEAD", path: "/values/k"})
	if resp.Header.Get("X-Expires-At") != wantAt {
		t.Errorf("HEAD: X-Expires-At %q, want %s", resp.Header.Get("X-Expires-At"), wantAt)
	}

	// Once expired: 404 everywhere, with the version's headers.
	f.mu.Lock()
	f.now += 31 * time.Second.Microseconds()
	f.mu.Unlock()
	for _, path := range []string{"/values/k", "/stat/k"} {
		resp = do(t, h, request{method: "GET", path: path})
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "expired") || resp.Header.Get("X-Expires-At") != wantAt || resp.Header.Get("X-Timestamp") == "" {
			t.Errorf("GET %s after the expiry: %d %q, X-Expires-At %q, X-Timestamp %q; want 404 \"expired\" with both", path, resp.StatusCode, body, resp.Header.Get("X-Expires-At"), resp.Header.Get("X-Timestamp"))
		}
	}

	// X-Expires-At is passed on as it is; a write without either makes the
	// key permanent.
	do(t, h, request{method: "POST", path: "/values/a", body: "v", header: map[string]string{"X-Expires-At": "99000000000"}})
	if got := f.records["a"].ExpiresAt; got != 99000000000 {
		t.Errorf("X-Expires-At 99000000000 reached the backend as %d", got)
	}
	do(t, h, request{method: "POST", path: "/values/a", body: "w"})
	resp = do(t, h, request{method: "GET", path: "/values/a"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Expires-At") != "" {
		t.Errorf("GET after a write without a TTL: %d, X-Expires-At %q; want 200 and none", resp.StatusCode, resp.Header.Get("X-Expires-At"))
	}
}

func TestBadExpiriesAreRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		header map[string]string
		reason string
	}{
		{"TTL 0", map[string]string{"X-TTL": "0"}, "positive"},
		{"negative TTL", map[string]string{"X-TTL": "-5"}, "malformed X-TTL"},
		{"TTL with a unit", map[string]string{"X-TTL": "10s"}, "malformed X-TTL"},
		{"fractional TTL", map[string]string{"X-TTL": "1.5"}, "malformed X-TTL"},
		{"empty TTL", map[string]string{"X-TTL": ""}, "malformed X-TTL"},
		{"TTL beyond a duration", map[string]string{"X-TTL": "99999999999999999999"}, "too large"},
		{"expiry 0", map[string]string{"X-Expires-At": "0"}, "malformed X-Expires-At"},
		{"expiry not a number", map[string]string{"X-Expires-At": "soon"}, "malformed X-Expires-At"},
		{"both", map[string]string{"X-TTL": "5", "X-Expires-At": "99000000000"}, "together"},
	} {
		f := newFake()
		h := NewHandler(Options{Backend: f})
		resp := do(t, h, request{method: "POST", path: "/values/k", body: "v", header: c.header})
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), c.reason) || strings.Count(strings.TrimSpace(string(body)), "\n") != 0 {
			t.Errorf("%s: %d %q; want 400 with one line saying %q", c.name, resp.StatusCode, body, c.reason)
		}
		if f.puts != 0 {
			t.Errorf("%s: the backend got %d writes, want none", c.name, f.puts)
		}
	}
}

func TestWithoutSentinelKeepsTheReason(t *testing.T) {
	other := errors.New("tako: bad request")
	for _, tc := range []struct{ in, want string }{
		{"X-Timestamp: hlc: too far ahead: httpapi: bad request", "X-Timestamp: hlc: too far ahead"},
		{"httpapi: bad request: tako: bad request: hlc: expiry out of range", "hlc: expiry out of range"},
		{"the key is empty", "the key is empty"},
	} {
		got := WithoutSentinel(WithoutSentinel(tc.in, ErrBadRequest), other)
		if got != tc.want {
			t.Errorf("WithoutSentinel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
