package coordinator

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a Reload, the values of the result label of
// tako_coordinator_reloads_total.
const (
	reloadOK        = "ok"        // a changed file, served under a new epoch
	reloadUnchanged = "unchanged" // the same canonical JSON; the epoch stays
	reloadInvalid   = "invalid"   // an invalid file; the last good one stays
	reloadError     = "error"     // a valid, changed file whose epoch could not be persisted
	reloadRefused   = "refused"   // a valid change the migration safety rules refuse (see ForceFile); the last good one stays
)

// serverMetrics are a Server's metrics.
type serverMetrics struct {
	reloads  *prometheus.CounterVec
	requests *prometheus.CounterVec
}

// newServerMetrics registers the metrics of s with reg.
func newServerMetrics(reg prometheus.Registerer, s *Server) (*serverMetrics, error) {
	m := &serverMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_coordinator_reloads_total",
			Help: "Reloads of the configuration file, by result (ok: a new epoch; unchanged: same canonical JSON, same epoch; invalid: the last good configuration stays; error: it could not be persisted; refused: a valid change that would lose keys or that the migration has not converged for, the last good configuration stays).",
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_coordinator_requests_total",
			Help: "HTTP requests answered, by path (other for unknown paths) and status code.",
		}, []string{"path", "code"}),
	}
	for _, r := range []string{reloadOK, reloadUnchanged, reloadInvalid, reloadRefused} {
		m.reloads.WithLabelValues(r)
	}
	cs := []prometheus.Collector{
		m.reloads, m.requests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_config_epoch",
			Help: "Epoch of the configuration served, microseconds since the Unix epoch.",
		}, func() float64 { return float64(s.cur.Load().epoch) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_coordinator_longpolls_waiting",
			Help: "Long-polls of /configuration waiting for a newer configuration.",
		}, func() float64 { return float64(s.waiting.Load()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("coordinator: registering metrics: %w", err)
		}
	}
	return m, nil
}

// countRequests wraps h to count its answers in tako_coordinator_requests_total.
func (m *serverMetrics) countRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		path := r.URL.Path
		switch path {
		case "/configuration", "/health", "/metrics", "/migration", "/status", "/":
		default:
			path = "other"
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		m.requests.WithLabelValues(path, strconv.Itoa(code)).Inc()
	})
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

// WriteHeader records code and passes it on.
func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 and passes b on.
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
