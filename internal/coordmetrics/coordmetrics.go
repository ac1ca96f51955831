// Package coordmetrics counts what the requests a process coordinates
// (coord.Coordinator) did, as Prometheus metrics: a node for the requests
// that come in through its ports, the proxy for all of its own. Both use
// the same names, so one dashboard reads either.
package coordmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is a coord.Observer that counts into Prometheus metrics.
type Metrics struct {
	reads, writes, readRepairs *prometheus.CounterVec
	latency                    *prometheus.HistogramVec
}

// New registers the metrics with reg; who names the process in their
// help ("node", "proxy").
func New(reg prometheus.Registerer, who string) *Metrics {
	m := &Metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_coordinated_writes_total",
			Help: "Writes and deletes this " + who + " coordinated, by outcome (ok, superseded, unavailable: the write quorum was not reached; no_space: not reached because replicas lack disk space (507); stamped_without_quorum counts writes the cluster stamped although too few replicas could say what they held, which are then ordered by the clocks alone: only with a read quorum that is not a majority).",
		}, []string{"outcome"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_coordinated_reads_total",
			Help: "Reads this " + who + " coordinated, by outcome (ok, unavailable: the read quorum was not reached).",
		}, []string{"outcome"}),
		readRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_read_repairs_total",
			Help: "Records the reads this " + who + " coordinated wrote back to a replica that was behind, by outcome.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tako_quorum_duration_seconds",
			Help:    "Time from sending a request to the replicas to reaching its quorum, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
	}
	reg.MustRegister(m.writes, m.reads, m.readRepairs, m.latency)
	return m
}

// Read counts a read, and its time when it succeeded.
func (m *Metrics) Read(outcome string, took time.Duration) { m.count(m.reads, "read", outcome, took) }

// Write counts a write, and its time when it succeeded.
func (m *Metrics) Write(outcome string, took time.Duration) {
	m.count(m.writes, "write", outcome, took)
}

// ReadRepair counts a record written back by a read.
func (m *Metrics) ReadRepair(outcome string) { m.readRepairs.WithLabelValues(outcome).Inc() }

func (m *Metrics) count(c *prometheus.CounterVec, op, outcome string, took time.Duration) {
	c.WithLabelValues(outcome).Inc()
	if outcome == "ok" {
		m.latency.WithLabelValues(op).Observe(took.Seconds())
	}
}
