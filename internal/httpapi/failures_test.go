package httpapi

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFailuresAreNotLoggedPerRequest: an outage logs one warning per
// interval with the count, and each request only at debug level.
func TestFailuresAreNotLoggedPerRequest(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f := &failureLog{logger: logger, interval: 50 * time.Millisecond}
	r := httptest.NewRequest("GET", "/values/k", nil)
	for range 100 {
		f.unavailable(r, errors.New("2 of 4 replicas answered"))
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings for 100 failures at once, want 1:\n%s", n, buf.String())
	}
	time.Sleep(60 * time.Millisecond)
	f.unavailable(r, errors.New("2 of 4 replicas answered"))
	if n := strings.Count(buf.String(), "level=WARN"); n != 2 {
		t.Fatalf("%d warnings after the interval, want 2:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "failed=100") {
		t.Errorf("the second warning does not count the 100 failures since the first:\n%s", buf.String())
	}
}
