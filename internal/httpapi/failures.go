package httpapi

import (
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// failureLog logs requests that failed for want of replicas without
// flooding the log during an outage: every one at debug level, and at most
// one warning per interval that counts them and shows the latest.
type failureLog struct {
	logger   *slog.Logger
	interval time.Duration

	mu     sync.Mutex
	last   time.Time // of the last warning
	count  int       // failures since the last warning
	latest error
}

func (f *failureLog) unavailable(r *http.Request, err error) {
	f.logger.Debug("request failed: too few replicas", "method", r.Method, "path", r.URL.Path, "err", err)
	now := time.Now()
	f.mu.Lock()
	f.count++
	f.latest = err
	if now.Sub(f.last) < f.interval {
		f.mu.Unlock()
		return
	}
	count, latest := f.count, f.latest
	f.count, f.last = 0, now
	f.mu.Unlock()
	f.logger.Warn("requests failed: too few replicas answered; see tako_peer_up and the peer logs for which are down (-d logs every request)",
		"failed", count, "since", f.interval, "latest", latest)
}
