// Package httpapi serves Tako's HTTP API (CONTRACT.md, "HTTP API") over a
// Backend: the same handler runs on every node's HTTP port and on the proxy.
//
//	POST|PUT /values/KEY   body = value, optional X-Timestamp: MICROS, optional
//	                       X-TTL: SECONDS or X-Expires-At: MICROS (the value expires)
//	                       200 + X-Timestamp (and X-Expires-At for a value
//	                       that expires) once durable; 409 + X-Timestamp of
//	                       the newer version when the write lost; 503 when too
//	                       few replicas answered, or with Retry-After when the
//	                       body did not fit in the Budget within its wait; 507
//	                       when replicas refused it for want of disk space
//	GET|HEAD /values/KEY   200, value, X-Timestamp, Last-Modified, X-Expires-At
//	                       when it expires; 404 (also once expired); 503
//	DELETE /values/KEY     204 + X-Timestamp of the tombstone; 409 as for POST
//	GET /stat/KEY          200, body = timestamp in decimal; 404 (with the
//	                       tombstone's X-Timestamp when deleted, and the
//	                       version's X-Timestamp and X-Expires-At when expired)
//	GET|HEAD /where/KEY    200, JSON Placement: the key's replicas and what
//	                       each holds; 404 when the Backend is no Locator
//	GET /health            200 when Backend.Ready, else 503
//	GET /metrics           Prometheus text format
//
// KEY is the rest of the path after /values/, /stat/ or /where/,
// percent-decoded and otherwise taken as written: no path cleaning, so "a//b"
// and "./x" are keys like any other, and "+" is a plus. Keys are 1 byte to
// MaxKeySize bytes.
// Every refusal carries a one-line reason in its body, and changes nothing.
//
// The package imports no other Tako package but the vocabulary (record,
// whose errors it maps to status codes): it declares the Backend it needs,
// and nodes and the proxy implement it.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/record"
)

// MaxKeySize is the largest key in bytes, after percent-decoding.
const MaxKeySize = 4096

// Sentinel errors a Backend returns; the handler maps them to status codes.
var (
	// ErrNotFound: the key has no record on any replica that answered (404).
	ErrNotFound = errors.New("httpapi: not found")
	// ErrUnavailable: too few replicas answered (503 with Retry-After).
	ErrUnavailable = record.ErrUnavailable
	// ErrBadRequest: the request is invalid, for example a timestamp too far
	// in the future (400). Wrap it with the reason.
	ErrBadRequest = errors.New("httpapi: bad request")
	// ErrInsufficientStorage: a write failed because replicas of the key
	// lack disk space and refuse writes, while they keep serving reads
	// (507 Insufficient Storage). Wrap it with the reason. It takes
	// precedence over ErrUnavailable in the same error: retrying soon, or
	// elsewhere, does not help until space is freed.
	ErrInsufficientStorage = record.ErrInsufficientStorage
)

// Version is one version of a key as a Backend reports it.
type Version struct {
	Timestamp int64 // microseconds since the Unix epoch
	Deleted   bool  // a tombstone: the key was deleted at Timestamp
	Value     []byte
	// ExpiresAt is when the value expires (microseconds since the Unix
	// epoch); 0: never.
	ExpiresAt int64
	// Expired says the value has expired by the Backend's clock: the key
	// is answered as absent.
	Expired bool
}

// Expiry is what a write asks of its value's life: at most one of TTL and
// At is set; neither means the value never expires.
type Expiry struct {
	// TTL is how long the value lives from the write (X-TTL).
	TTL time.Duration
	// At is when the value expires, microseconds since the Unix epoch
	// (X-Expires-At).
	At int64
}

// WriteResult is the outcome of a write or delete that the Backend carried out.
type WriteResult struct {
	// Timestamp is the stored version's timestamp, or, when Superseded, the
	// timestamp of the newer version that won.
	Timestamp int64
	// Superseded reports that a newer write or delete of the key already
	// existed: the write lost and nothing changed.
	Superseded bool
	// ExpiresAt is when the stored value expires (microseconds since the
	// Unix epoch; X-Expires-At of the answer); 0 when it never does, and
	// when Superseded.
	ExpiresAt int64
}

// Backend is what the handler serves. Its methods are called concurrently.
type Backend interface {
	// Get returns the newest version of key. A deleted key is returned with
	// Deleted set; a key with no record gives ErrNotFound.
	Get(ctx context.Context, key []byte) (Version, error)
	// Stat is Get without the need for the value (Value may be nil).
	Stat(ctx context.Context, key []byte) (Version, error)
	// Put stores value under key at timestamp ts, or at a timestamp of the
	// backend's choosing when ts is 0, to expire as exp says (by the
	// backend's clock): an expiry beyond the deployment's max_ttl, or
	// not in the future, is an error wrapping ErrBadRequest.
	Put(ctx context.Context, key, value []byte, ts int64, exp Expiry) (WriteResult, error)
	// Delete stores a tombstone for key at ts, or at a timestamp of the
	// backend's choosing when ts is 0.
	Delete(ctx context.Context, key []byte, ts int64) (WriteResult, error)
	// Ready reports whether the backend has a configuration and can serve.
	Ready() bool
	// MaxValueSize is the largest value in bytes that Put accepts.
	MaxValueSize() int64
}

// HealthDetailer is what a Backend may implement to say more on /health
// than "ok", for example that it serves but is still recovering data. The
// detail follows "ok: " on the one line of a 200 answer.
type HealthDetailer interface {
	HealthDetail() string
}

// Options configure a Handler.
type Options struct {
	// Backend serves the requests. Required.
	Backend Backend
	// Registry receives the handler's metrics and is served on /metrics.
	// If nil, a new registry is used.
	Registry *prometheus.Registry
	// Logger receives one line per failed request (5xx). If nil, logs are
	// discarded.
	Logger *slog.Logger
	// Auth returns the tokens requests are checked against, at the time
	// of each request (so that a new configuration's tokens apply at
	// once); nil, or a nil result, means no authentication. GET and HEAD
	// of keys and /metrics need the read role; POST, PUT and DELETE the
	// write role; /health is open.
	Auth func() *auth.Tokens
	// MaxInFlight is how many requests for keys (/values/, /stat/,
	// /where/) the handler works on at once; beyond it a request is
	// answered 503 with Retry-After at once (load shedding) instead of
	// queueing, so that an overloaded process neither grows its memory
	// nor makes every client wait. Zero means no limit.
	MaxInFlight int
	// Budget, when not nil, bounds the bytes of request bodies held at
	// once, with the process's other ports: a write reserves its body's
	// Content-Length before reading it (a body of unknown length reserves
	// as its buffer grows), and keeps it until it is answered; one that
	// does not fit within Budget's wait is answered 503 with Retry-After.
	// Nil bounds each body by Backend.MaxValueSize only.
	Budget Budget
}

// Budget is what a Handler reserves the bytes of request bodies from, a
// budget it shares with the process's other ports (package budget
// implements it). Acquire reserves n bytes, waiting a bounded time while
// they do not fit, and returns what it reserved (at most n), or an error
// when they did not fit in time or ctx ended; Release gives back what
// Acquire reserved. Both are called concurrently.
type Budget interface {
	Acquire(ctx context.Context, n int64) (int64, error)
	Release(n int64)
}

// Handler is the http.Handler of the HTTP API.
type Handler struct {
	backend  Backend
	logger   *slog.Logger
	metrics  http.Handler
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	failures *failureLog
	auth     func() *auth.Tokens
	inFlight chan struct{} // a slot per request for a key; nil: no limit
	shed     prometheus.Counter
	budget   Budget       // nil: no limit
	reserved atomic.Int64 // bytes reserved from budget for bodies being read or written
	// overBudget counts the writes answered 503 because their body did
	// not fit in the budget.
	overBudget prometheus.Counter
}

// NewHandler returns the API handler over opts.Backend. It registers its
// metrics with opts.Registry and panics if they are registered there already
// (a programmer error: one registry per handler).
func NewHandler(opts Options) *Handler {
	if opts.Backend == nil {
		panic("httpapi: Options.Backend is nil")
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		backend:  opts.Backend,
		logger:   logger,
		failures: &failureLog{logger: logger, interval: 10 * time.Second},
		metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_http_requests_total",
			Help: "HTTP requests answered, by operation and status code.",
		}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tako_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op"}),
	}
	h.shed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_http_shed_total",
		Help: "Requests answered 503 at once because limits.max_requests_in_flight were under way.",
	})
	reg.MustRegister(h.shed)
	h.budget = opts.Budget
	h.overBudget = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_http_budget_refused_total",
		Help: "Writes answered 503 because their body did not fit in limits.max_bytes_in_flight within 1 s.",
	})
	reg.MustRegister(h.overBudget, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tako_http_bytes_reserved",
		Help: "Bytes of request bodies that the HTTP port holds reserved in limits.max_bytes_in_flight.",
	}, func() float64 { return float64(h.reserved.Load()) }))
	if opts.MaxInFlight > 0 {
		h.inFlight = make(chan struct{}, opts.MaxInFlight)
	}
	h.auth = opts.Auth
	reg.MustRegister(h.requests, h.latency)
	return h
}

// Operation names used in metric labels.
const (
	opGet      = "get"
	opHead     = "head"
	opPut      = "put"
	opDelete   = "delete"
	opStat     = "stat"
	opWhere    = "where"
	opPurge    = "purge"
	opSnapshot = "snapshot"
	opHealth   = "health"
	opMetrics  = "metrics"
	opOther    = "other"
	opShed     = "shed"
	opDenied   = "denied"
)

// ServeHTTP routes a request by hand rather than through http.ServeMux,
// whose path cleaning would turn the key "a//b" into a redirect.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	if h.auth != nil && r.URL.Path != "/health" {
		if status, reason := h.auth().Check(r, neededRole(r)); status != 0 {
			auth.Deny(rec, status, reason)
			h.requests.WithLabelValues(opDenied, strconv.Itoa(rec.code)).Inc()
			return
		}
	}
	if h.inFlight != nil && keyPath(r.URL.Path) {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			h.shed.Inc()
			w.Header().Set("Retry-After", "1")
			textReply(rec, http.StatusServiceUnavailable, "overloaded: too many requests under way (limits.max_requests_in_flight); retry shortly")
			h.requests.WithLabelValues(opShed, strconv.Itoa(rec.code)).Inc()
			return
		}
	}
	op := h.route(rec, r)
	h.requests.WithLabelValues(op, strconv.Itoa(rec.code)).Inc()
	h.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (h *Handler) route(w *statusRecorder, r *http.Request) string {
	path := r.URL.Path
	switch {
	case keyPath(path) && !h.backend.Ready():
		w.Header().Set("Retry-After", "1")
		textReply(w, http.StatusServiceUnavailable, "not serving: this process has no configuration that names it (see its log)")
		return opOther
	case strings.HasPrefix(path, "/values/"):
		key := path[len("/values/"):]
		switch r.Method {
		case http.MethodGet:
			h.serveGet(w, r, key, true)
			return opGet
		case http.MethodHead:
			h.serveGet(w, r, key, false)
			return opHead
		case http.MethodPost, http.MethodPut:
			h.servePut(w, r, key)
			return opPut
		case http.MethodDelete:
			h.serveDelete(w, r, key)
			return opDelete
		}
		methodNotAllowed(w, "GET, HEAD, POST, PUT, DELETE")
		return opOther
	case strings.HasPrefix(path, "/stat/"):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return opOther
		}
		h.serveStat(w, r, path[len("/stat/"):])
		return opStat
	case strings.HasPrefix(path, "/where/"):
		h.routeWhere(w, r, path[len("/where/"):])
		return opWhere
	case strings.HasPrefix(path, "/purge/"):
		h.routePurge(w, r, path[len("/purge/"):])
		return opPurge
	case path == "/snapshot":
		h.routeSnapshot(w, r)
		return opSnapshot
	case path == "/health":
		if h.backend.Ready() {
			body := "ok"
			if d, ok := h.backend.(HealthDetailer); ok {
				if detail := d.HealthDetail(); detail != "" {
					body += ": " + detail
				}
			}
			textReply(w, http.StatusOK, body)
		} else {
			textReply(w, http.StatusServiceUnavailable, "not ready: no configuration that names this process yet")
		}
		return opHealth
	case path == "/metrics":
		h.metrics.ServeHTTP(w, r)
		return opMetrics
	}
	textReply(w, http.StatusNotFound, "no such endpoint: use /values/KEY, /stat/KEY, /where/KEY, /purge/KEY, /snapshot, /health or /metrics")
	return opOther
}

// keyPath reports whether path names a key: the endpoints that need a
// configuration to answer.
// neededRole is the role a request needs when authentication is on.
func neededRole(r *http.Request) auth.Role {
	if strings.HasPrefix(r.URL.Path, "/purge/") || r.URL.Path == "/snapshot" {
		return auth.Admin
	}
	if strings.HasPrefix(r.URL.Path, "/values/") {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodDelete:
			return auth.Write
		}
	}
	return auth.Read
}

func keyPath(path string) bool {
	return strings.HasPrefix(path, "/values/") || strings.HasPrefix(path, "/stat/") || strings.HasPrefix(path, "/where/") || strings.HasPrefix(path, "/purge/")
}

func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request, key string, withBody bool) {
	if !validKey(w, key) {
		return
	}
	v, err := h.backend.Get(r.Context(), []byte(key))
	if err != nil {
		h.backendError(w, r, err)
		return
	}
	setVersionHeaders(w, v.Timestamp)
	setExpiryHeader(w, v)
	switch {
	case v.Deleted:
		textReply(w, http.StatusNotFound, "not found: deleted")
		return
	case v.Expired:
		textReply(w, http.StatusNotFound, "not found: expired")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(v.Value)))
	w.WriteHeader(http.StatusOK)
	if withBody {
		w.Write(v.Value)
	}
}

func (h *Handler) serveStat(w http.ResponseWriter, r *http.Request, key string) {
	if !validKey(w, key) {
		return
	}
	v, err := h.backend.Stat(r.Context(), []byte(key))
	if err != nil {
		h.backendError(w, r, err)
		return
	}
	setVersionHeaders(w, v.Timestamp)
	setExpiryHeader(w, v)
	switch {
	case v.Deleted:
		textReply(w, http.StatusNotFound, "not found: deleted")
		return
	case v.Expired:
		textReply(w, http.StatusNotFound, "not found: expired")
		return
	}
	body := strconv.FormatInt(v.Timestamp, 10)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, body)
}

func (h *Handler) servePut(w http.ResponseWriter, r *http.Request, key string) {
	if !validKey(w, key) {
		return
	}
	ts, ok := requestTimestamp(w, r)
	if !ok {
		return
	}
	exp, err := RequestExpiry(r.Header)
	if err != nil {
		textReply(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := h.backend.MaxValueSize()
	if r.ContentLength > limit {
		textReply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value of %d bytes is larger than max_value_size (%d bytes)", r.ContentLength, limit))
		return
	}
	value, held, err := h.readValue(r, limit)
	defer h.release(held)
	switch {
	case errors.Is(err, errOverBudget):
		h.overBudget.Inc()
		w.Header().Set("Retry-After", "1")
		textReply(w, http.StatusServiceUnavailable, "overloaded: the requests under way hold limits.max_bytes_in_flight; retry shortly")
		return
	case errors.Is(err, errTooLarge):
		textReply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value is larger than max_value_size (%d bytes)", limit))
		return
	case err != nil:
		textReply(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	res, err := h.backend.Put(r.Context(), []byte(key), value, ts, exp)
	if err != nil {
		h.backendError(w, r, err)
		return
	}
	h.writeResult(w, res, http.StatusOK, "stored")
}

// Errors of readValue.
var (
	errOverBudget = errors.New("the body does not fit in the budget")
	errTooLarge   = errors.New("the body is larger than max_value_size")
)

// bodyChunk is the first reservation, and buffer, of a body of unknown
// length; both double as its bytes arrive.
const bodyChunk = 64 << 10

// readValue reads r's body, of at most limit bytes, holding its bytes in the
// budget: a body of known length reserves that length before any of it is
// read (so that a client that sends "Expect: 100-continue" is refused
// before it sends the body), and is read into a buffer of that length
// allocated once its first byte has arrived; a chunked body reserves each
// growth of its buffer before making it. It returns the value and what it
// reserved, to release once the request is answered, also on error.
// Refusals of the budget are errOverBudget, a body over limit errTooLarge.
func (h *Handler) readValue(r *http.Request, limit int64) (value []byte, held int64, err error) {
	ctx := r.Context()
	if n := r.ContentLength; n >= 0 {
		if n == 0 {
			return []byte{}, 0, nil
		}
		if held, err = h.reserve(ctx, n); err != nil {
			return nil, 0, err
		}
		var first [1]byte
		if _, err := io.ReadFull(r.Body, first[:]); err != nil {
			return nil, held, err
		}
		value = make([]byte, n)
		value[0] = first[0]
		if _, err := io.ReadFull(r.Body, value[1:]); err != nil {
			return nil, held, err
		}
		return value, held, nil
	}
	for {
		if len(value) == cap(value) {
			if int64(len(value)) > limit {
				return nil, held, errTooLarge
			}
			size := min(max(2*int64(cap(value)), bodyChunk), limit+1)
			more, err := h.reserve(ctx, size-int64(cap(value)))
			held += more
			if err != nil {
				return nil, held, err
			}
			grown := make([]byte, len(value), size)
			copy(grown, value)
			value = grown
		}
		m, err := r.Body.Read(value[len(value):cap(value)])
		value = value[:len(value)+m]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, held, err
		}
	}
	if int64(len(value)) > limit {
		return nil, held, errTooLarge
	}
	return value, held, nil
}

// reserve reserves n bytes of the budget for a body; an error is
// errOverBudget, or says that the client went away.
func (h *Handler) reserve(ctx context.Context, n int64) (int64, error) {
	if h.budget == nil {
		return 0, nil
	}
	held, err := h.budget.Acquire(ctx, n)
	switch {
	case err == nil:
		h.reserved.Add(held)
		return held, nil
	case ctx.Err() != nil:
		return 0, fmt.Errorf("waiting for room for the body: %w", ctx.Err())
	}
	return 0, fmt.Errorf("%w: %w", errOverBudget, err)
}

// release gives back what readValue reserved.
func (h *Handler) release(held int64) {
	if held > 0 {
		h.reserved.Add(-held)
		h.budget.Release(held)
	}
}

func (h *Handler) serveDelete(w http.ResponseWriter, r *http.Request, key string) {
	if !validKey(w, key) {
		return
	}
	ts, ok := requestTimestamp(w, r)
	if !ok {
		return
	}
	res, err := h.backend.Delete(r.Context(), []byte(key), ts)
	if err != nil {
		h.backendError(w, r, err)
		return
	}
	h.writeResult(w, res, http.StatusNoContent, "")
}

func (h *Handler) writeResult(w http.ResponseWriter, res WriteResult, okCode int, okBody string) {
	setVersionHeaders(w, res.Timestamp)
	if res.Superseded {
		textReply(w, http.StatusConflict, fmt.Sprintf("a newer version of the key exists (timestamp %d); nothing changed", res.Timestamp))
		return
	}
	setExpiryHeader(w, Version{ExpiresAt: res.ExpiresAt})
	if okCode == http.StatusNoContent {
		w.WriteHeader(okCode)
		return
	}
	textReply(w, okCode, okBody)
}

func (h *Handler) backendError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		textReply(w, http.StatusNotFound, "not found")
	case errors.Is(err, ErrBadRequest):
		textReply(w, http.StatusBadRequest, WithoutSentinel(err.Error(), ErrBadRequest))
	case errors.Is(err, ErrInsufficientStorage):
		textReply(w, http.StatusInsufficientStorage, err.Error())
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		textReply(w, http.StatusServiceUnavailable, err.Error())
		h.failures.unavailable(r, err)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		w.WriteHeader(499)
	default:
		textReply(w, http.StatusInternalServerError, err.Error())
		h.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}

// WithoutSentinel returns msg, an error's message, without the text of
// sentinel where it was wrapped in ("sentinel: ..." or "...: sentinel"):
// a 400's body gives the reason, and the status already says "bad
// request".
func WithoutSentinel(msg string, sentinel error) string {
	text := sentinel.Error()
	msg = strings.ReplaceAll(msg, text+": ", "")
	return strings.ReplaceAll(msg, ": "+text, "")
}

// validKey answers 400 and returns false when key breaks the limits.
func validKey(w http.ResponseWriter, key string) bool {
	switch {
	case key == "":
		textReply(w, http.StatusBadRequest, "the key is empty")
		return false
	case len(key) > MaxKeySize:
		textReply(w, http.StatusBadRequest, fmt.Sprintf("the key is %d bytes, larger than the limit of %d", len(key), MaxKeySize))
		return false
	}
	return true
}

// requestTimestamp parses the optional X-Timestamp header: 0 when absent.
func requestTimestamp(w http.ResponseWriter, r *http.Request) (int64, bool) {
	values := r.Header.Values("X-Timestamp")
	if len(values) == 0 {
		return 0, true
	}
	if len(values) > 1 {
		textReply(w, http.StatusBadRequest, "X-Timestamp given more than once")
		return 0, false
	}
	ts, err := ParseTimestamp(values[0])
	if err != nil {
		textReply(w, http.StatusBadRequest, err.Error())
		return 0, false
	}
	return ts, true
}

// ParseTimestamp parses an X-Timestamp value: a positive decimal count of
// microseconds since the Unix epoch, digits only.
func ParseTimestamp(s string) (int64, error) {
	if len(s) > 19 || !allDigits(s) {
		return 0, fmt.Errorf("malformed X-Timestamp %q: want microseconds since the Unix epoch, in decimal", s)
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ts <= 0 {
		return 0, fmt.Errorf("malformed X-Timestamp %q: want a positive count of microseconds since the Unix epoch", s)
	}
	return ts, nil
}

// RequestExpiry parses a write's optional X-TTL (seconds, a positive
// integer) or X-Expires-At (microseconds since the Unix epoch, positive):
// at most one of them, once. The error is the one-line reason of a 400.
func RequestExpiry(h http.Header) (Expiry, error) {
	ttls, ats := h.Values("X-TTL"), h.Values("X-Expires-At")
	switch {
	case len(ttls) > 0 && len(ats) > 0:
		return Expiry{}, errors.New("X-TTL and X-Expires-At given together; give one of them")
	case len(ttls) > 1:
		return Expiry{}, errors.New("X-TTL given more than once")
	case len(ats) > 1:
		return Expiry{}, errors.New("X-Expires-At given more than once")
	case len(ttls) == 1:
		ttl, err := ParseTTL(ttls[0])
		return Expiry{TTL: ttl}, err
	case len(ats) == 1:
		at, err := strconv.ParseInt(ats[0], 10, 64)
		if err != nil || at <= 0 || !allDigits(ats[0]) {
			return Expiry{}, fmt.Errorf("malformed X-Expires-At %q: want a positive count of microseconds since the Unix epoch, in decimal", ats[0])
		}
		return Expiry{At: at}, nil
	}
	return Expiry{}, nil
}

// maxTTLSeconds bounds what ParseTTL accepts before a deployment's
// max_ttl does: what a time.Duration holds.
const maxTTLSeconds = int64(math.MaxInt64 / int64(time.Second))

// ParseTTL parses an X-TTL value: a positive whole number of seconds,
// digits only.
func ParseTTL(s string) (time.Duration, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange) && allDigits(s), err == nil && n > maxTTLSeconds:
		return 0, fmt.Errorf("X-TTL %q is too large: want at most %d seconds", s, maxTTLSeconds)
	case err != nil || !allDigits(s):
		return 0, fmt.Errorf("malformed X-TTL %q: want a positive whole number of seconds", s)
	case n <= 0:
		return 0, fmt.Errorf("X-TTL %q: want a positive whole number of seconds (a value that expires at once is a delete)", s)
	}
	return time.Duration(n) * time.Second, nil
}

// allDigits reports whether s is one or more decimal digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// setExpiryHeader sets X-Expires-At for a value that expires.
func setExpiryHeader(w http.ResponseWriter, v Version) {
	if v.ExpiresAt != 0 && !v.Deleted {
		w.Header().Set("X-Expires-At", strconv.FormatInt(v.ExpiresAt, 10))
	}
}

func setVersionHeaders(w http.ResponseWriter, ts int64) {
	if ts <= 0 {
		return
	}
	w.Header().Set("X-Timestamp", strconv.FormatInt(ts, 10))
	w.Header().Set("Last-Modified", time.UnixMicro(ts).UTC().Format(http.TimeFormat))
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	textReply(w, http.StatusMethodNotAllowed, "method not allowed; allowed: "+allow)
}

// textReply writes a one-line plain-text answer.
func textReply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Del("Content-Length")
	w.WriteHeader(code)
	io.WriteString(w, strings.ReplaceAll(msg, "\n", "; ")+"\n")
}

// statusRecorder remembers the status code for the metrics.
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code = code
		s.wroteHeader = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
