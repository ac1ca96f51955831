package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeBackend is a map with the store's newest-wins rule, enough to test the
// handler alone. The real backends are tested by the node and e2e tests.
type fakeBackend struct {
	mu      sync.Mutex // guards records, now, puts
	records map[string]Version
	now     int64
	puts    int

	fail     error // returned by every call when set
	notReady bool
	maxValue int64
}

func newFake() *fakeBackend {
	return &fakeBackend{records: map[string]Version{}, now: 1_000_000, maxValue: 1 << 20}
}

func (f *fakeBackend) Get(_ context.Context, key []byte) (Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return Version{}, f.fail
	}
	v, ok := f.records[string(key)]
	if ok && v.ExpiresAt != 0 && v.ExpiresAt <= f.now {
		v.Expired, v.Value = true, nil
	}
	if !ok {
		return Version{}, ErrNotFound
	}
	return v, nil
}

func (f *fakeBackend) Stat(ctx context.Context, key []byte) (Version, error) { return f.Get(ctx, key) }

func (f *fakeBackend) write(key []byte, v Version) (WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return WriteResult{}, f.fail
	}
	if v.Timestamp == 0 {
		f.now++
		v.Timestamp = f.now
	}
	if old, ok := f.records[string(key)]; ok && old.Timestamp > v.Timestamp {
		return WriteResult{Timestamp: old.Timestamp, Superseded: true}, nil
	}
	f.puts++
	f.records[string(key)] = v
	return WriteResult{Timestamp: v.Timestamp}, nil
}

// Put stores the value; an expiry is kept as asked (TTL in seconds after
// the fake's clock), and the version reads as expired once the fake's
// clock, which every write moves on, passes it.
func (f *fakeBackend) Put(_ context.Context, key, value []byte, ts int64, exp Expiry) (WriteResult, error) {
	at := exp.At
	if exp.TTL > 0 {
		at = f.now + exp.TTL.Microseconds()
	}
	res, err := f.write(key, Version{Timestamp: ts, Value: bytes.Clone(value), ExpiresAt: at})
	if err == nil && !res.Superseded {
		res.ExpiresAt = at
	}
	return res, err
}

func (f *fakeBackend) Delete(_ context.Context, key []byte, ts int64) (WriteResult, error) {
	return f.write(key, Version{Timestamp: ts, Deleted: true})
}

func (f *fakeBackend) Ready() bool         { return !f.notReady }
func (f *fakeBackend) MaxValueSize() int64 { return f.maxValue }

type request struct {
	method, path, body string
	header             map[string]string
}

func do(t *testing.T, h http.Handler, req request) *http.Response {
	t.Helper()
	r := httptest.NewRequest(req.method, "http://tako"+req.path, strings.NewReader(req.body))
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAPI(t *testing.T) {
	tests := []struct {
		name     string
		setup    []request // run first, each must answer 2xx
		req      request
		wantCode int
		wantBody string // exact body, or "" to skip
		wantTS   string // exact X-Timestamp, or "" to skip
		contains string // substring of the body
	}{
		{name: "post then get", setup: []request{{method: "POST", path: "/values/k", body: "v1", header: map[string]string{"X-Timestamp": "5000000"}}},
			req: request{method: "GET", path: "/values/k"}, wantCode: 200, wantBody: "v1", wantTS: "5000000"},
		{name: "put is post", setup: []request{{method: "PUT", path: "/values/k", body: "v2"}},
			req: request{method: "GET", path: "/values/k"}, wantCode: 200, wantBody: "v2"},
		{name: "head has no body", setup: []request{{method: "POST", path: "/values/k", body: "value"}},
			req: request{method: "HEAD", path: "/values/k"}, wantCode: 200, wantBody: ""},
		{name: "missing key", req: request{method: "GET", path: "/values/nope"}, wantCode: 404},
		{name: "empty value", setup: []request{{method: "POST", path: "/values/e", body: ""}},
			req: request{method: "GET", path: "/values/e"}, wantCode: 200, wantBody: ""},
		{name: "slashes are part of the key", setup: []request{{method: "POST", path: "/values/a//b/./c", body: "x"}},
			req: request{method: "GET", path: "/values/a//b/./c"}, wantCode: 200, wantBody: "x"},
		{name: "a//b is not a/b", setup: []request{{method: "POST", path: "/values/a//b", body: "x"}},
			req: request{method: "GET", path: "/values/a/b"}, wantCode: 404},
		{name: "percent-decoded", setup: []request{{method: "POST", path: "/values/caf%C3%A9%20au%20lait", body: "utf8"}},
			req: request{method: "GET", path: "/values/caf%c3%a9%20au%20lait"}, wantCode: 200, wantBody: "utf8"},
		{name: "plus is a plus", setup: []request{{method: "POST", path: "/values/a+b", body: "plus"}},
			req: request{method: "GET", path: "/values/a%2Bb"}, wantCode: 200, wantBody: "plus"},
		{name: "delete then get", setup: []request{{method: "POST", path: "/values/d", body: "x"}, {method: "DELETE", path: "/values/d"}},
			req: request{method: "GET", path: "/values/d"}, wantCode: 404},
		{name: "stat", setup: []request{{method: "POST", path: "/values/s", body: "x", header: map[string]string{"X-Timestamp": "1234567"}}},
			req: request{method: "GET", path: "/stat/s"}, wantCode: 200, wantBody: "1234567", wantTS: "1234567"},
		{name: "stat of deleted has tombstone timestamp", setup: []request{{method: "DELETE", path: "/values/s", header: map[string]string{"X-Timestamp": "7654321"}}},
			req: request{method: "GET", path: "/stat/s"}, wantCode: 404, wantTS: "7654321"},
		{name: "stat missing", req: request{method: "GET", path: "/stat/none"}, wantCode: 404},
		{name: "older write loses", setup: []request{{method: "POST", path: "/values/o", body: "new", header: map[string]string{"X-Timestamp": "9000000"}}},
			req: request{method: "POST", path: "/values/o", body: "old", header: map[string]string{"X-Timestamp": "8000000"}}, wantCode: 409, wantTS: "9000000", contains: "newer version"},
		{name: "older delete loses", setup: []request{{method: "POST", path: "/values/o", body: "new", header: map[string]string{"X-Timestamp": "9000000"}}},
			req: request{method: "DELETE", path: "/values/o", header: map[string]string{"X-Timestamp": "8000000"}}, wantCode: 409, wantTS: "9000000"},
		{name: "delete answers 204", req: request{method: "DELETE", path: "/values/x", header: map[string]string{"X-Timestamp": "42"}}, wantCode: 204, wantTS: "42"},
		{name: "empty key", req: request{method: "GET", path: "/values/"}, wantCode: 400, contains: "empty"},
		{name: "empty key post", req: request{method: "POST", path: "/values/", body: "x"}, wantCode: 400},
		{name: "key too long", req: request{method: "POST", path: "/values/" + strings.Repeat("k", MaxKeySize+1), body: "x"}, wantCode: 400, contains: "larger than the limit"},
		{name: "key at the limit", req: request{method: "POST", path: "/values/" + strings.Repeat("k", MaxKeySize), body: "x"}, wantCode: 200},
		{name: "value too large", req: request{method: "POST", path: "/values/big", body: strings.Repeat("v", 1<<20+1)}, wantCode: 413, contains: "max_value_size"},
		{name: "malformed timestamp", req: request{method: "POST", path: "/values/t", body: "x", header: map[string]string{"X-Timestamp": "12abc"}}, wantCode: 400, contains: "malformed X-Timestamp"},
		{name: "negative timestamp", req: request{method: "POST", path: "/values/t", body: "x", header: map[string]string{"X-Timestamp": "-5"}}, wantCode: 400},
		{name: "zero timestamp", req: request{method: "DELETE", path: "/values/t", header: map[string]string{"X-Timestamp": "0"}}, wantCode: 400},
		{name: "overflowing timestamp", req: request{method: "POST", path: "/values/t", body: "x", header: map[string]string{"X-Timestamp": "99999999999999999999"}}, wantCode: 400},
		{name: "bad method", req: request{method: "PATCH", path: "/values/k"}, wantCode: 405},
		{name: "bad method on stat", req: request{method: "POST", path: "/stat/k"}, wantCode: 405},
		{name: "unknown path", req: request{method: "GET", path: "/value/k"}, wantCode: 404, contains: "no such endpoint"},
		{name: "health", req: request{method: "GET", path: "/health"}, wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			h := NewHandler(Options{Backend: f})
			for _, s := range tt.setup {
				if resp := do(t, h, s); resp.StatusCode/100 != 2 {
					t.Fatalf("setup %s %s: %d %s", s.method, s.path, resp.StatusCode, body(t, resp))
				}
			}
			putsBefore := f.puts
			resp := do(t, h, tt.req)
			got := body(t, resp)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%s %s: code %d (%q), want %d", tt.req.method, tt.req.path, resp.StatusCode, got, tt.wantCode)
			}
			if tt.wantBody != "" || tt.wantCode == 200 && strings.HasPrefix(tt.req.path, "/values/") && (tt.req.method == "GET" || tt.req.method == "HEAD") {
				if got != tt.wantBody {
					t.Errorf("body %q, want %q", got, tt.wantBody)
				}
			}
			if tt.wantTS != "" && resp.Header.Get("X-Timestamp") != tt.wantTS {
				t.Errorf("X-Timestamp %q, want %q", resp.Header.Get("X-Timestamp"), tt.wantTS)
			}
			if tt.contains != "" && !strings.Contains(got, tt.contains) {
				t.Errorf("body %q does not contain %q", got, tt.contains)
			}
			if resp.StatusCode >= 400 {
				if f.puts != putsBefore {
					t.Errorf("a refused request changed the store")
				}
				if strings.Count(strings.TrimSuffix(got, "\n"), "\n") > 0 {
					t.Errorf("error body is not one line: %q", got)
				}
			}
		})
	}
}

func TestGetHeaders(t *testing.T) {
	f := newFake()
	h := NewHandler(Options{Backend: f})
	do(t, h, request{method: "POST", path: "/values/k", body: "\x00\xffbinary", header: map[string]string{"X-Timestamp": "1700000000000000"}})
	resp := do(t, h, request{method: "GET", path: "/values/k"})
	if got := body(t, resp); got != "\x00\xffbinary" {
		t.Errorf("body %q", got)
	}
	for k, want := range map[string]string{
		"Content-Type":   "application/octet-stream",
		"X-Timestamp":    "1700000000000000",
		"Last-Modified":  "Tue, 14 Nov 2023 22:13:20 GMT",
		"Content-Length": "8",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestBackendErrors(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{ErrUnavailable, 503},
		{fmt.Errorf("wrapped: %w", ErrUnavailable), 503},
		{fmt.Errorf("timestamp too far ahead: %w", ErrBadRequest), 400},
		{context.DeadlineExceeded, 503},
		{fmt.Errorf("n1 refused: %w", ErrInsufficientStorage), 507},
		{fmt.Errorf("1 of 2 replicas answered: %w: %w", ErrInsufficientStorage, ErrUnavailable), 507},
		{fmt.Errorf("disk on fire"), 500},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			f := newFake()
			f.fail = tt.err
			h := NewHandler(Options{Backend: f})
			for _, req := range []request{{method: "GET", path: "/values/k"}, {method: "POST", path: "/values/k", body: "x"}, {method: "DELETE", path: "/values/k"}, {method: "GET", path: "/stat/k"}} {
				resp := do(t, h, req)
				if resp.StatusCode != tt.code {
					t.Errorf("%s %s: %d, want %d", req.method, req.path, resp.StatusCode, tt.code)
				}
				if tt.code == 503 && resp.Header.Get("Retry-After") == "" {
					t.Errorf("503 without Retry-After")
				}
				if b := body(t, resp); tt.code >= 500 && !strings.Contains(b, tt.err.Error()) {
					t.Errorf("%s %s: body %q does not give the reason %q", req.method, req.path, b, tt.err)
				}
			}
		})
	}
}

func TestHealthNotReady(t *testing.T) {
	f := newFake()
	f.notReady = true
	resp := do(t, NewHandler(Options{Backend: f}), request{method: "GET", path: "/health"})
	if resp.StatusCode != 503 {
		t.Fatalf("health %d, want 503", resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	f := newFake()
	h := NewHandler(Options{Backend: f})
	do(t, h, request{method: "POST", path: "/values/k", body: "x"})
	do(t, h, request{method: "GET", path: "/values/k"})
	do(t, h, request{method: "GET", path: "/values/missing"})
	got := body(t, do(t, h, request{method: "GET", path: "/metrics"}))
	for _, want := range []string{
		`tako_http_requests_total{code="200",op="put"} 1`,
		`tako_http_requests_total{code="200",op="get"} 1`,
		`tako_http_requests_total{code="404",op="get"} 1`,
		`tako_http_request_duration_seconds_count{op="get"} 2`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"1", "1700000000000000", "", "-1", "0", "9223372036854775807", "9223372036854775808", "1e6", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTimestamp(s)
		if err == nil && (ts <= 0 || fmt.Sprint(ts) != strings.TrimLeft(s, "0")) {
			t.Fatalf("ParseTimestamp(%q) = %d without error", s, ts)
		}
	})
}
