package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// maxWait caps the wait of a long-poll that a Server accepts.
	maxWait = 60 * time.Second
	// defaultWait is how long a long-poll waits when not told otherwise.
	defaultWait = 30 * time.Second
	// requestSlack is how much longer than its wait a request to a
	// coordinator may take before it is given up.
	requestSlack = 5 * time.Second
	// maxConfigSize bounds the body of a configuration that is read.
	maxConfigSize = 32 << 20
	// minBackoff and maxBackoff bound the pause between failed requests to
	// one coordinator.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// answer is a coordinator's answer to GET /configuration.
type answer struct {
	// modified is true for a 200 that carries a configuration, false for
	// a 304.
	modified bool
	// epoch is the X-Timestamp of the answer (0 if a 304 had none).
	epoch int64
	// body is the configuration of a 200.
	body []byte
}

// fetch asks the coordinator at addr (HOST:PORT) for its configuration if
// newer than since, waiting up to wait for one (0: answer at once), over
// scheme ("http" or "https"). It gives up after wait plus requestSlack.
func fetch(ctx context.Context, client *http.Client, scheme, addr string, since int64, wait time.Duration) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+requestSlack)
	defer cancel()
	q := url.Values{"since": {strconv.FormatInt(since, 10)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	u := url.URL{Scheme: scheme, Host: addr, Path: "/configuration", RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return answer{}, fmt.Errorf("coordinator: asking %s: %w", addr, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("coordinator: asking %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxConfigSize+1))
	if err != nil {
		return answer{}, fmt.Errorf("coordinator: reading the answer of %s: %w", addr, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if len(body) > maxConfigSize {
			return answer{}, fmt.Errorf("coordinator: %s answered a configuration larger than %d bytes", addr, maxConfigSize)
		}
		epoch, err := strconv.ParseInt(resp.Header.Get("X-Timestamp"), 10, 64)
		if err != nil || epoch <= 0 {
			return answer{}, fmt.Errorf("coordinator: %s answered a configuration without a valid X-Timestamp (%q)",
				addr, resp.Header.Get("X-Timestamp"))
		}
		return answer{modified: true, epoch: epoch, body: body}, nil
	case http.StatusNotModified:
		epoch, _ := strconv.ParseInt(resp.Header.Get("X-Timestamp"), 10, 64)
		return answer{epoch: epoch}, nil
	default:
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if len(line) > 200 {
			line = line[:200]
		}
		return answer{}, fmt.Errorf("coordinator: %s answered %s: %s", addr, resp.Status, line)
	}
}

// newClient returns the HTTP client used to ask coordinators when none is
// given: connections are attempted for at most 5 s, and every request has a
// deadline of its own (its wait plus requestSlack), so the client itself has
// no overall timeout. Proxies from the environment are not used: the
// coordinators are the cluster's own. With tlsConfig, HTTPS servers are
// verified with it.
func newClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:       tlsConfig,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// backoff is the pause between failed requests to one coordinator: minBackoff
// doubling up to maxBackoff.
type backoff struct{ next time.Duration }

// sleep waits for the next pause, or until ctx is done; it reports whether
// the pause ended (false: ctx is done).
func (b *backoff) sleep(ctx context.Context) bool {
	d := max(b.next, minBackoff)
	b.next = min(2*d, maxBackoff)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reset makes the next pause the shortest again.
func (b *backoff) reset() { b.next = 0 }

// normalizeAddr checks that addr is HOST:PORT and returns it in the form
// that config.Coordinator.Addr gives, so that one coordinator reached under
// one spelling gets one loop.
func normalizeAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("coordinator: bad coordinator address %q: %w", addr, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || host == "" {
		return "", fmt.Errorf("coordinator: bad coordinator address %q: want HOST:PORT with a port 1-65535", addr)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.FormatUint(p, 10)), nil
}
