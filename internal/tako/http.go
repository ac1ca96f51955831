package tako

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/takodb/tako/internal/tlsconf"
)

// baseURL is the server as a URL without a trailing slash: -s takes
// HOST:PORT, or a URL. HOST:PORT is reached over https when -ca is given,
// over http otherwise.
func (r *runner) baseURL() (string, error) {
	s := strings.TrimRight(r.server, "/")
	if !strings.Contains(s, "://") {
		scheme := "http://"
		if r.ca != "" {
			scheme = "https://"
		}
		s = scheme + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", &codedError{code: exitError, err: fmt.Errorf("-s %q: want HOST:PORT, http://HOST:PORT or https://HOST:PORT", r.server)}
	}
	return s, nil
}

// loadCA makes the client verify HTTPS servers against the CA certificate
// of -ca, once; without -ca the system's roots verify them.
func (r *runner) loadCA() error {
	if r.ca == "" || r.caLoaded {
		return nil
	}
	c, err := tlsconf.CAClientConfig(r.ca)
	if err != nil {
		return &codedError{code: exitError, err: fmt.Errorf("-ca: %w", err)}
	}
	tr, ok := r.client.Transport.(*http.Transport)
	if !ok {
		return &codedError{code: exitError, err: errors.New("-ca: the HTTP client cannot take a CA")}
	}
	tr.TLSClientConfig = c
	r.caLoaded = true
	return nil
}

// escapeKey percent-encodes key for a URL path: every byte but the
// unreserved characters of RFC 3986 (letters, digits, "-._~") and "/",
// which the API takes as part of the key. Unlike url.PathEscape it keeps
// "/" as written, and unlike url.URL it encodes "+", ";", "=" and the like
// whatever they mean elsewhere.
func escapeKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if unreserved(c) || c == '/' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// request is one HTTP request to the server.
type request struct {
	method string
	path   string // escaped, from the root: "/values/" + escapeKey(key)
	body   io.Reader
	header http.Header
}

// exchange sends req to the server and hands the answer to handle, all
// within the timeout; it closes the answer's body.
func (r *runner) exchange(ctx context.Context, req request, handle func(*http.Response) error) error {
	base, err := r.baseURL()
	if err != nil {
		return err
	}
	if err := r.loadCA(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, req.method, base+req.path, req.body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.method, req.path, err)
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.client.Do(hr)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", r.server, transportError(err))
	}
	defer resp.Body.Close()
	if err := handle(resp); err != nil {
		return err
	}
	// Drain what the handler left, so that the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

// transportError strips the "Get URL:" that net/http puts before the cause.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if errors.Is(ue.Err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer in time (-timeout): %w", ue.Err)
		}
		return ue.Err
	}
	return err
}

// unexpected is the error for an answer a command does not expect (a 5xx,
// a 400): the status and the server's one-line reason. It exits 2.
func (r *runner) unexpected(resp *http.Response) error {
	return fmt.Errorf("%s answered %s: %s", r.server, resp.Status, reason(resp))
}

// reason is the first line of an answer's body, the API's one-line reason.
func reason(resp *http.Response) string {
	line, _ := bufio.NewReader(io.LimitReader(resp.Body, 1024)).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "" {
		return "(no reason given)"
	}
	return line
}

// timestampOf parses the answer's X-Timestamp; 0 when absent or malformed.
func timestampOf(resp *http.Response) int64 {
	ts, err := strconv.ParseInt(resp.Header.Get("X-Timestamp"), 10, 64)
	if err != nil {
		return 0
	}
	return ts
}

// formatTime is a timestamp (microseconds since the Unix epoch) as UTC time.
func formatTime(ts int64) string {
	return time.UnixMicro(ts).UTC().Format("2006-01-02 15:04:05.000000 UTC")
}
